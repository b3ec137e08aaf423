"""``signal:<fingerprint>``: the receipt that makes a signal unique.

Version 1 (SignalDecided) is written in the same transaction as the decision's events; the
store's unique key on (stream, version) lets it be written once, ever, across all instances.
Every later delivery is answered with the decision it holds and counted (SignalRedelivered).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.domain.values import stream_id, topic


class SignalRecord(Aggregate):
    """Version 1 of ``signal:<fingerprint>``: the first decision, returned to every retry."""

    TOPIC = topic("SignalRecord")

    class Created(Aggregate.Created):  # the library's base of the first event; never stored
        TOPIC = topic("SignalRecord.Created")

    @staticmethod
    def create_id(fingerprint: str) -> UUID:
        return stream_id("signal", fingerprint)

    class SignalDecided(Aggregate.Created):
        """The first delivery, decided. ``raw`` (the alert's JSON text as received, its
        secret's member cut out) and ``request_id`` (the HTTP request that delivered it) came
        later: events stored before lack them and read them as None (the library rebuilds an
        event from its stored dict without calling ``__init__``, so the class defaults stand
        in), and an earlier version of this code ignores them (an aggregate's ``__init__``
        gets only the attributes it names)."""

        TOPIC = topic("SignalRecord.SignalDecided")
        fingerprint: str
        portfolio: str
        signal_type: str
        instrument: str
        position: str | None
        signal_timestamp: datetime
        payload: dict[str, Any]
        decision: dict[str, Any]
        received_at: datetime
        instance_id: str
        raw: str | None = None
        request_id: str | None = None

    @event(SignalDecided)
    def __init__(self, fingerprint: str, portfolio: str, signal_type: str, instrument: str,
                 position: str | None, signal_timestamp: datetime, payload: dict[str, Any],
                 decision: dict[str, Any], received_at: datetime, instance_id: str,
                 raw: str | None = None, request_id: str | None = None) -> None:
        self.fingerprint = fingerprint
        self.portfolio = portfolio
        self.signal_type = signal_type
        self.instrument = instrument
        self.position = position
        self.signal_timestamp = signal_timestamp
        self.payload = payload
        self.raw = raw
        self.decision = decision
        self.received_at = received_at
        self.instance_id = instance_id
        self.request_id = request_id
        self.deliveries = 1

    def redeliver(self, received_at: datetime, instance_id: str,
                  request_id: str | None = None) -> None:
        """Count another delivery of this signal; it is answered with the first decision."""
        self._redelivered(received_at=received_at, instance_id=instance_id,
                          request_id=request_id)

    class SignalRedelivered(Aggregate.Event):
        """Another delivery. ``request_id`` came later: stored before, it reads as None."""

        TOPIC = topic("SignalRecord.SignalRedelivered")
        received_at: datetime
        instance_id: str
        request_id: str | None = None

    @event(SignalRedelivered)
    def _redelivered(self, received_at: datetime, instance_id: str,
                     request_id: str | None = None) -> None:
        self.deliveries += 1

