"""signal_log retention on SQLite and Postgres: old rows pruned in bounded batches, young rows
kept, a stale leader's batch refused by the store, and `verify` (and a rebuild) living with
the pruned rows."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from coordination import Fenced
from ledger.application import Ledger
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from projections.verify import verify
from service.jobs import SignalLogRetention
from tests.alerts import Alerts
from tests.jobs_support import FakeClock, leading, paused_leader


def decide_marks(ledger: Ledger, alerts: Alerts, n: int) -> list[dict]:
    bodies = [alerts.mark(52000 + i, 300) for i in range(n)]
    for body in bodies:
        ledger.decide(body)
    return bodies


def signal_rows(ledger: Ledger) -> list[tuple[str, str]]:
    with ledger.transaction(read_only=True) as cursor:
        cursor.execute("SELECT fingerprint, processed_at FROM signal_log ORDER BY id")
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r)
                for r in cursor.fetchall()]


def test_old_rows_are_pruned_in_batches_young_ones_kept_and_verify_stays_clean(ledger,
                                                                              store_url):
    alerts = Alerts()
    old = decide_marks(ledger, alerts, 7)
    time.sleep(0.01)
    boundary = datetime.now(UTC)  # rows processed before it are "old" a week later
    time.sleep(0.01)
    young = decide_marks(ledger, alerts, 3)
    runner = ProjectionRunner(ledger)
    runner.catch_up()
    assert len(signal_rows(ledger)) == 10

    clock = FakeClock(boundary + timedelta(days=7))
    with leading(store_url) as coordinator:
        job = SignalLogRetention(ledger, 7, coordinator=coordinator, clock=clock, batch_rows=3)
        assert job.horizon() == boundary
        report = job.run(coordinator.epoch)
        assert report.done == [{"deleted": 3}, {"deleted": 3}, {"deleted": 1}]
        assert (report.facts["deleted"], report.facts["batches"], report.more) == (7, 3, False)
        assert len(signal_rows(ledger)) == 3
        again = job.run(coordinator.epoch)
        assert (again.facts["deleted"], again.done) == (0, [])

    horizon = job.horizon()
    assert verify(ledger, signal_log_horizon=horizon)[1] == []
    strict = verify(ledger)[1]  # without the horizon, the pruned rows are differences
    assert len(strict) == 7 and all("missing (the log has it)" in d for d in strict)

    # A late redelivery of a pruned signal: the log counts it, the table has no row to patch.
    assert ledger.decide(old[0]).duplicate
    runner.catch_up()
    assert len(signal_rows(ledger)) == 3
    assert verify(ledger, signal_log_horizon=horizon)[1] == []

    # A row older than the horizon that is present must still equal the log.
    later = boundary + timedelta(days=1)
    with ledger.transaction() as cursor:
        cursor.execute("UPDATE signal_log SET deliveries = 99 WHERE processed_at > "
                       f"{ledger.dialect.param}",
                       (ledger.dialect.to_db("ts", boundary.isoformat()),))
    diffs = verify(ledger, signal_log_horizon=later)[1]
    assert len(diffs) == len(young) and all(".deliveries: stored 99" in d for d in diffs)

    # A rebuild writes the pruned rows back from the log; the next run prunes them again.
    rebuild(ledger)
    assert len(signal_rows(ledger)) == 10
    assert verify(ledger, signal_log_horizon=horizon)[1] == []
    assert SignalLogRetention(ledger, 7, clock=clock).run(None).facts["deleted"] == 7


def test_a_stale_epoch_deletes_nothing(ledger, store_url):
    decide_marks(ledger, Alerts(), 4)
    ProjectionRunner(ledger).catch_up()
    clock = FakeClock(datetime.now(UTC) + timedelta(days=30))
    with paused_leader(store_url) as (paused, _):
        job = SignalLogRetention(ledger, 7, coordinator=paused, clock=clock)
        with pytest.raises(Fenced):
            job.run(paused.epoch)
    assert len(signal_rows(ledger)) == 4


def test_a_run_stops_at_its_deadline_and_carries_on_at_the_next(ledger):
    decide_marks(ledger, Alerts(), 5)
    ProjectionRunner(ledger).catch_up()
    clock = FakeClock(datetime.now(UTC) + timedelta(days=8))
    job = SignalLogRetention(ledger, 7, clock=clock, batch_rows=2, timeout_ms=0)
    report = job.run(None)  # no time at all: one batch, then the deadline has passed
    assert report.more
    total = report.facts["deleted"]
    while report.more:
        report = SignalLogRetention(ledger, 7, clock=clock, batch_rows=2).run(None)
        total += report.facts["deleted"]
    assert total == 5 and signal_rows(ledger) == []


def test_zero_days_keeps_everything(ledger):
    decide_marks(ledger, Alerts(), 2)
    ProjectionRunner(ledger).catch_up()
    clock = FakeClock(datetime.now(UTC) + timedelta(days=3650))
    report = SignalLogRetention(ledger, 0, clock=clock).run(None)
    assert report.facts == {"disabled": True}
    assert len(signal_rows(ledger)) == 2
    assert verify(ledger, signal_log_horizon=None)[1] == []
