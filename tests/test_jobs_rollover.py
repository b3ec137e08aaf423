"""The rollover job, on SQLite and Postgres, with a real coordinator and a clock the test sets.

A GOLD_MINI contract expires on the 5th (moved back over holidays and weekends) and rolls
within 8 trading days of it: for the contract expiring Friday 5 Dec 2025 the window opens on
Tuesday 25 Nov (Nov 26-28 and Dec 1-5 are the 8 trading days left).
"""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal as D

import pytest

from coordination import Fenced
from ledger.application import Ledger
from service.cli import main
from service.jobs import JobSettings, JobSettingsError, LeaderJobs, RolloverJob
from service.jobs.rollover import parse_roll_at, trading_days_left
from tests.alerts import Alerts
from tests.conftest import make_config
from tests.jobs_support import FakeClock, ist, leading, paused_leader

BASE = "default:GOLD_MINI:Long_1:1"
PYRAMID = "default:GOLD_MINI:Long_2:1"


def enter_gold(ledger: Ledger, *, pyramid: bool = False) -> None:
    """A GOLD_MINI base (5 lots at 130000) entered 10 Nov 2025, and a pyramid (2 lots at
    131000) the next day: both trade the contract expiring 5 Dec 2025."""
    alerts = Alerts(start="2025-11-09T04:00:00Z", step_s=86400)
    assert ledger.decide(alerts.base(130000, 129500, 200, instrument="GOLD_MINI")).accepted
    if pyramid:
        assert ledger.decide(alerts.pyramid("Long_2", 131000, 130600, 200,
                                            instrument="GOLD_MINI")).accepted
    assert ledger.position(BASE).expiry == "2025-12-05"


@pytest.fixture
def coordinator(ledger: Ledger, store_url: str):
    with leading(store_url) as c:
        yield c


def test_trading_days_are_weekdays_less_the_exchange_holidays():
    expiry = date(2025, 12, 5)
    assert trading_days_left(date(2025, 11, 25), expiry, frozenset(), 8) == 8
    assert trading_days_left(date(2025, 11, 24), expiry, frozenset(), 8) == 9
    assert trading_days_left(date(2025, 11, 24), expiry, frozenset({date(2025, 12, 1)}), 8) == 8
    assert trading_days_left(expiry, expiry, frozenset(), 8) == 0
    assert trading_days_left(date(2025, 1, 1), expiry, frozenset(), 8) == 9  # counting stops


def test_a_position_rolls_once_on_the_first_trading_day_inside_its_window_at_0920_ist(
        ledger, open_ledger, coordinator):
    enter_gold(ledger)
    clock = FakeClock(ist(2025, 11, 24, 15, 0))  # Monday: 9 trading days left
    job = RolloverJob(ledger, ledger.config, clock, coordinator=coordinator)
    jobs = LeaderJobs(coordinator, [job], clock)

    jobs.tick()
    assert jobs.stats["rollover"].runs == 1
    report = jobs.stats["rollover"].last_report
    assert report.done == [] and report.skipped == []  # not in its window yet

    clock.at = ist(2025, 11, 25, 9, 19)  # Tuesday, inside the window, a minute early
    jobs.tick()
    report = jobs.stats["rollover"].last_report
    assert report.done == []
    assert [(s["position_id"], s["reason"]) for s in report.skipped] == [
        (BASE, "rolls at or after 09:20 Asia/Kolkata")]

    clock.at = ist(2025, 11, 25, 9, 20)
    jobs.tick()
    report = jobs.stats["rollover"].last_report
    assert [(d["position_id"], d["from_expiry"], d["to_expiry"]) for d in report.done] == [
        (BASE, "2025-12-05", "2026-01-05")]
    rolled = ledger.position(BASE)
    assert (rolled.expiry, rolled.rollover_count, rolled.futures_symbol) == (
        "2026-01-05", 1, "GOLDM05JAN26FUT")
    assert (rolled.entry_price, rolled.rollover_pnl) == (D(130000), D(0))  # at the mark
    assert rolled.rollover_timestamp == clock.at

    for later in (ist(2025, 11, 25, 9, 21), ist(2025, 11, 26, 10, 0)):
        clock.at = later
        jobs.tick()
        assert jobs.stats["rollover"].last_report.done == []
    assert open_ledger().position(BASE).rollover_count == 1  # as another process reads it
    assert jobs.stats["rollover"].failures == jobs.stats["rollover"].fenced == 0


def test_no_roll_on_a_weekend_or_a_configured_holiday(open_ledger, store_url):
    config = dataclasses.replace(make_config(), holidays={"MCX": frozenset({date(2025, 12, 1)})})
    ledger = open_ledger(config)
    enter_gold(ledger)
    clock = FakeClock(ist(2025, 11, 29, 10, 0))
    with leading(store_url) as coordinator:
        job = RolloverJob(ledger, config, clock, coordinator=coordinator)
        for at, reason in [
            (ist(2025, 11, 29, 10, 0), "2025-11-29 is not a trading day on MCX"),  # Saturday
            (ist(2025, 11, 30, 10, 0), "2025-11-30 is not a trading day on MCX"),  # Sunday
            (ist(2025, 12, 1, 10, 0), "2025-12-01 is not a trading day on MCX"),  # holiday
            (ist(2025, 12, 2, 9, 0), "rolls at or after 09:20 Asia/Kolkata"),
        ]:
            clock.at = at
            report = job.run(coordinator.epoch)
            assert report.done == [] and [s["reason"] for s in report.skipped] == [reason]
        assert ledger.position(BASE).rollover_count == 0
        clock.at = ist(2025, 12, 2, 9, 20)
        assert [d["position_id"] for d in job.run(coordinator.epoch).done] == [BASE]
        assert ledger.position(BASE).rollover_count == 1


class Crash(BaseException):
    """The process dies here (not an error the job could catch)."""


def test_a_crash_between_two_rolls_resumes_rolling_only_the_second(open_ledger, store_url,
                                                                   monkeypatch):
    ledger = open_ledger()
    enter_gold(ledger, pyramid=True)
    clock = FakeClock(ist(2025, 11, 25, 9, 30))
    with leading(store_url) as coordinator:
        job = RolloverJob(ledger, ledger.config, clock, coordinator=coordinator)
        due, _, _ = job.scan(clock.now())
        assert [d.position_id for d in due] == [BASE, PYRAMID]

        real_roll = ledger.roll

        def roll_then_die(*args, **kwargs):
            real_roll(*args, **kwargs)  # committed
            raise Crash

        monkeypatch.setattr(ledger, "roll", roll_then_die)
        with pytest.raises(Crash):
            job.run(coordinator.epoch)

        restarted = open_ledger()  # a new process on the same store
        clock.at = ist(2025, 11, 25, 9, 31)
        report = RolloverJob(restarted, restarted.config, clock,
                             coordinator=coordinator).run(coordinator.epoch)
        assert [d["position_id"] for d in report.done] == [PYRAMID]
    fresh = open_ledger()
    assert [fresh.position(p).rollover_count for p in (BASE, PYRAMID)] == [1, 1]
    assert fresh.position(BASE).rollover_timestamp == ist(2025, 11, 25, 9, 30)
    assert fresh.position(PYRAMID).rollover_timestamp == ist(2025, 11, 25, 9, 31)
    # the portfolio agrees: both holdings moved to the new contract's entry price
    portfolio = fresh.portfolio("default")
    assert {p: h.entry_price for p, h in portfolio.holdings.items()} == {
        BASE: D(131000), PYRAMID: D(131000)}  # the mark, after the pyramid


def test_a_stale_epoch_rolls_nothing(ledger, open_ledger, store_url):
    enter_gold(ledger)
    version = ledger.portfolio("default").version
    clock = FakeClock(ist(2025, 11, 25, 9, 30))
    with paused_leader(store_url) as (paused, newer_epoch):
        stale_epoch = paused.epoch
        job = RolloverJob(ledger, ledger.config, clock, coordinator=paused)
        with pytest.raises(Fenced) as fenced:
            job.run(stale_epoch)
        assert (fenced.value.epoch, fenced.value.current) == (stale_epoch, newer_epoch)
        assert paused.fenced_writes == 1 and not paused.is_leader  # stepped down at once
    fresh = open_ledger()
    position = fresh.position(BASE)
    assert (position.expiry, position.rollover_count) == ("2025-12-05", 0)
    assert fresh.portfolio("default").version == version
    # Under the current term the same roll goes through.
    with leading(store_url) as current:
        report = RolloverJob(ledger, ledger.config, clock,
                             coordinator=current).run(current.epoch)
        assert [d["position_id"] for d in report.done] == [BASE]


def test_an_expired_contract_is_reported_not_rolled(ledger):
    enter_gold(ledger)
    job = RolloverJob(ledger, ledger.config, FakeClock(ist(2025, 12, 8, 10, 0)))
    report = job.roll_due()
    assert report.done == []
    assert [s["reason"] for s in report.skipped] == [
        "its contract expired on 2025-12-05 before it was rolled: not rolled automatically"]


def test_roll_due_on_the_command_line(ledger, open_ledger, store_url, capsys):
    enter_gold(ledger)
    at = ["--database-url", store_url, "roll-due", "--at", "2025-11-25T04:00:00Z"]
    assert main([*at[:3], "--dry-run", *at[3:]]) == 0
    out = capsys.readouterr()
    assert f"due: {BASE} from 2025-12-05 at 130000 (8 trading days left)" in out.err
    assert ledger.position(BASE).rollover_count == 0
    assert main(at) == 0
    assert f"rolled {BASE} from 2025-12-05 to 2026-01-05 at 130000" in capsys.readouterr().err
    assert main(at) == 0  # again: nothing left to roll
    assert '"done": []' in capsys.readouterr().out
    assert open_ledger().position(BASE).rollover_count == 1
    assert main(["--database-url", store_url, "roll-due", "--at", "2025-11-25T04:00"]) == 2


def test_roll_at_and_the_other_job_settings_come_from_the_environment():
    assert parse_roll_at("9:20").strftime("%H:%M") == "09:20"
    settings = JobSettings.from_environment({"LEDGER_ROLL_AT": "10:05",
                                             "LEDGER_SIGNAL_LOG_RETENTION_DAYS": "0"})
    assert (settings.roll_at.strftime("%H:%M"), settings.retention_days) == ("10:05", 0)
    assert JobSettings.from_environment({}) == JobSettings()
    with pytest.raises(JobSettingsError) as raised:
        JobSettings.from_environment({"LEDGER_ROLL_AT": "25:00",
                                      "LEDGER_SIGNAL_LOG_RETENTION_DAYS": "-1",
                                      "LEDGER_ALERT_WEBHOOK_URL": "ftp://x"})
    assert len(raised.value.problems) == 3
    secret = JobSettings(alert_webhook_url="https://hooks.example/T/B/SECRET")
    assert "SECRET" not in repr(secret)
