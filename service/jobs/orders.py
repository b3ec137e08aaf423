"""The order desk's jobs: send and settle orders, and reconcile with the broker.

They run under a term of their own (role ``orders``), longer than the leader's: a send may
only start while the term covers the broker's timeout (docs/ORDERS.md), and the leader's
term (1 s, for a fast failover of the other jobs) never covers a 5 s HTTP call. A crashed
desk's orders wait that term out; a clean stop hands over at once.
"""

from __future__ import annotations

import functools
from typing import Any

from coordination.coordinator import Coordinator
from service.desk import OrderDesk
from service.jobs.runner import JobReport

DESK_INTERVAL_S = 1.0  # how often the desk looks for intents, doubts, sends and fills
RECONCILE_INTERVAL_S = 300.0  # how often the broker's position book is compared
READ_MARGIN_MS = 1000  # beyond the broker's own timeout, for the desk's store writes


class DeskJob:
    name = "orders"
    interval_s = DESK_INTERVAL_S

    def __init__(self, desk: OrderDesk, coordinator: Coordinator) -> None:
        self.desk = desk
        self.coordinator = coordinator
        self.timeout_ms = desk.settings.broker_timeout_ms + READ_MARGIN_MS

    def run(self, epoch: int) -> JobReport:
        report = self.desk.run(epoch, lease_remaining_ms=self.coordinator.lease_remaining_ms)
        return JobReport(facts={"intended": report.intended, "sent": report.sent,
                                "resolved": report.resolved, "fills": report.fills,
                                "halted": report.halted})


class ReconcileJob:
    name = "reconcile"
    interval_s = RECONCILE_INTERVAL_S

    def __init__(self, desk: OrderDesk) -> None:
        self.desk = desk
        self.timeout_ms = desk.settings.broker_timeout_ms + READ_MARGIN_MS

    def run(self, epoch: int) -> JobReport:
        fence = self.desk.fence(epoch) if self.desk.fence is not None else None
        findings = self.desk.reconcile(fence)
        return JobReport(facts={"findings": findings})


def desk_fence(coordinator: Coordinator) -> Any:
    """The desk's fence: the ``orders`` term's epoch, checked in each write's transaction."""
    return lambda epoch: functools.partial(coordinator.fenced, epoch=epoch)
