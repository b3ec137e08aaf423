"""``instance:<host:pid>``: a ``ledger serve`` process's own lifecycle, for instance_metadata.

Not trading: the service records that a process started (host, port, version) and that it
stopped cleanly. These are facts worth keeping in the log (when did which instance run,
which version decided what); heartbeats are not: they change every few seconds and live in
the coordinator's operational table, never in the log.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event

from ledger.domain.values import stream_id, topic

if TYPE_CHECKING:
    from ledger.application import Ledger


class Instance(Aggregate):
    """A `ledger serve` process: started, and stopped cleanly. A process that never records
    InstanceStopped stopped uncleanly (or still runs)."""

    TOPIC = topic("Instance")

    class Created(Aggregate.Created):  # the library's base of the first event; never stored
        TOPIC = topic("Instance.Created")

    @staticmethod
    def create_id(instance_id: str) -> UUID:
        return stream_id("instance", instance_id)

    @event("InstanceStarted", topic=topic("Instance.InstanceStarted"))
    def __init__(self, instance_id: str, hostname: str, port: int | None, software_version: str,
                 started_at: datetime) -> None:
        self.instance_id = instance_id
        self.hostname = hostname
        self.port = port
        self.software_version = software_version
        self.started_at = started_at
        self.stopped_at: datetime | None = None

    def stop(self, at: datetime) -> None:
        if self.stopped_at is None:
            self._stopped(at=at)

    @event("InstanceStopped", topic=topic("Instance.InstanceStopped"))
    def _stopped(self, at: datetime) -> None:
        self.stopped_at = at


def record_started(ledger: Ledger, port: int | None, software_version: str) -> None:
    """InstanceStarted for the ledger's process; host and pid are in its instance id."""
    ledger.save(Instance(instance_id=ledger.instance_id, hostname=socket.gethostname(),
                         port=port, software_version=software_version,
                         started_at=datetime.now(UTC)))


def record_stopped(ledger: Ledger) -> None:
    """InstanceStopped for the ledger's process (nothing if it never recorded a start)."""
    try:
        instance = ledger.repository.get(Instance.create_id(ledger.instance_id))
    except AggregateNotFoundError:
        return
    instance.stop(datetime.now(UTC))
    ledger.save(instance)
