"""``signal_log`` retention: the table keeps the last ``days`` days of decided signals.

Rows whose ``processed_at`` is older than the horizon (now minus ``days``) are deleted in
batches of ``batch_rows``, one transaction each, each fenced by the leader's epoch (after its
DELETE: on SQLite a read first could not be upgraded to the write; on Postgres the check only
has to come before the commit). The event log keeps every signal: ``ledger trail`` and the
audit queries still find a pruned one, ``ledger verify`` accepts its row being absent (not
its row being wrong), and ``ledger rebuild-projections`` writes it back until the next run
prunes it again (docs/PROJECTIONS.md).

``days`` 0 disables the job (and the allowance in ``verify``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from coordination.coordinator import Coordinator
from ledger import wire
from ledger.application import Ledger
from service.jobs.runner import Clock, Deadline, JobReport, SystemClock, leading

log = logging.getLogger("ledger.jobs")

RETENTION_DAYS_DEFAULT = 7
RETENTION_BATCH_ROWS = 5000  # rows deleted per transaction: short transactions, short locks
RETENTION_INTERVAL_S = 600  # how often the leader prunes (sooner while a run leaves rows)
RETENTION_TIMEOUT_MS = 500  # one run's budget: batches left over run at the next tick


def signal_log_horizon(now: datetime, days: int) -> datetime | None:
    """The instant before which ``signal_log`` rows may be pruned (None: retention is off)."""
    if days < 0:
        raise ValueError(f"retention days must be 0 (off) or more, not {days}")
    return None if days == 0 else now - timedelta(days=days)


class SignalLogRetention:
    """Prunes ``signal_log`` rows older than ``days`` days; run by the leader."""

    name = "signal_log_retention"

    def __init__(self, ledger: Ledger, days: int = RETENTION_DAYS_DEFAULT, *,
                 coordinator: Coordinator | None = None, clock: Clock | None = None,
                 batch_rows: int = RETENTION_BATCH_ROWS,
                 interval_s: float = RETENTION_INTERVAL_S,
                 timeout_ms: int = RETENTION_TIMEOUT_MS) -> None:
        if days < 0 or batch_rows <= 0:
            raise ValueError(f"days must be >= 0 and batch_rows > 0 (got {days}, {batch_rows})")
        self.ledger = ledger
        self.days = days
        self.coordinator = coordinator  # None: unfenced (tests, tools)
        self.clock: Clock = clock or SystemClock()
        self.batch_rows = batch_rows
        self.interval_s = interval_s
        self.timeout_ms = timeout_ms
        p = ledger.dialect.param
        self._delete = (f"DELETE FROM signal_log WHERE fingerprint IN (SELECT fingerprint "
                        f"FROM signal_log WHERE processed_at < {p} ORDER BY processed_at "
                        f"LIMIT {p}) RETURNING fingerprint")

    def horizon(self) -> datetime | None:
        return signal_log_horizon(self.clock.now(), self.days)

    def run(self, epoch: int | None) -> JobReport:
        horizon = self.horizon()
        if horizon is None:
            return JobReport(facts={"disabled": True})
        cutoff = self.ledger.dialect.to_db("ts", wire.iso(horizon))
        deadline = Deadline(self.timeout_ms)
        report = JobReport(facts={"horizon": horizon, "deleted": 0, "batches": 0})
        if not leading(self.coordinator, epoch):
            report.more = True
            return report
        while True:  # a batch at least, then as many as the deadline allows
            with self.ledger.transaction() as cursor:
                cursor.execute(self._delete, (cutoff, self.batch_rows))
                # Counted from RETURNING: the library's SQLite cursor has no rowcount.
                deleted = len(cursor.fetchall())
                if self.coordinator is not None:
                    # After the DELETE, under the write lock it took; raising rolls it back.
                    self.coordinator.fenced(cursor, epoch=epoch)
            report.facts["batches"] += 1
            report.facts["deleted"] += deleted
            if deleted:
                report.done.append({"deleted": deleted})
            if deleted < self.batch_rows:
                break
            if deadline.passed or not leading(self.coordinator, epoch):
                report.more = True
                break
        if report.facts["deleted"]:
            log.info("signal_log: pruned %d rows processed before %s (%d batches)%s",
                     report.facts["deleted"], wire.iso(horizon), report.facts["batches"],
                     "; more next tick" if report.more else "")
        return report
