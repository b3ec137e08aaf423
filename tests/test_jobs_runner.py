"""LeaderJobs with real coordinators on the test store (single mode) and the production lease
settings: jobs run only while this instance leads, stop when it no longer does, are skipped
when the lease remaining does not cover their timeout, and nothing a job raises stops the
thread."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from coordination import CoordinationSettings, Coordinator, Fenced
from service.jobs import JobReport, LeaderJobs, ServeJobs, SystemClock
from tests.coordination_servers import until
from tests.jobs_support import ELECTION_S, FakeClock

SETTINGS = CoordinationSettings()  # production's: a 1000 ms term renewed every 250 ms
STOP_S_MAX = 1.5  # stop() returns within this with no job running


class Counting:
    """A job that records the epochs it ran under."""

    def __init__(self, name: str = "counting", interval_s: float = 30, timeout_ms: int = 200,
                 action=None) -> None:
        self.name = name
        self.interval_s = interval_s
        self.timeout_ms = timeout_ms
        self.epochs: list[int] = []
        self.action = action

    def run(self, epoch: int) -> JobReport:
        self.epochs.append(epoch)
        if self.action is not None:
            self.action()
        return JobReport()


@pytest.fixture
def coordinators(ledger, store_url):
    """Start coordinators on the test's store (migrated by ``ledger``); stopped at the end."""
    started: list[Coordinator] = []

    def make(n: int) -> list[Coordinator]:
        group = [Coordinator.from_database_url(store_url, settings=SETTINGS,
                                               instance_id=f"instance-{i}").start()
                 for i in range(n)]
        started.extend(group)
        until(lambda: any(c.is_leader for c in group), ELECTION_S, "a leader")
        return group

    yield make
    for c in started:
        c.stop()


def test_jobs_run_only_on_the_leader_under_its_epoch(coordinators):
    group = coordinators(2)
    clock = FakeClock(datetime(2025, 11, 25, tzinfo=UTC))
    jobs = [(c, Counting()) for c in group]
    runners = [LeaderJobs(c, [job], clock) for c, job in jobs]
    for runner in runners:
        runner.tick()
    leader, job = next((c, j) for c, j in jobs if c.is_leader)
    assert job.epochs == [leader.epoch]
    assert [j.epochs for c, j in jobs if c is not leader] == [[]]


def test_a_job_runs_when_its_interval_has_come_or_at_once_when_it_left_work(coordinators):
    (leader,) = coordinators(1)
    clock = FakeClock(datetime(2025, 11, 25, tzinfo=UTC))
    more = [False]

    class Batches(Counting):
        def run(self, epoch: int) -> JobReport:
            super().run(epoch)
            return JobReport(more=more[0])

    job = Batches(interval_s=30)
    runner = LeaderJobs(leader, [job], clock)
    runner.tick()
    clock.at += timedelta(seconds=29)
    runner.tick()
    assert len(job.epochs) == 1
    clock.at += timedelta(seconds=1)
    more[0] = True
    runner.tick()
    runner.tick()  # it left work: due again at once
    assert len(job.epochs) == 3
    assert runner.stats["counting"].last_run_at == clock.at


def test_losing_leadership_stops_the_jobs_not_yet_run(coordinators):
    (leader,) = coordinators(1)
    first = Counting("first", action=leader.stop)  # the term is lost while it runs
    second = Counting("second")
    runner = LeaderJobs(leader, [first, second], FakeClock(datetime(2025, 11, 25, tzinfo=UTC)))
    runner.tick()
    assert (len(first.epochs), second.epochs) == (1, [])
    runner.tick()
    assert (len(first.epochs), second.epochs) == (1, [])


def test_the_thread_runs_jobs_while_leading_and_stops_when_leadership_is_lost(coordinators):
    group = coordinators(2)
    leader = next(c for c in group if c.is_leader)
    follower = next(c for c in group if c is not leader)
    jobs = {c.instance_id: Counting(interval_s=0.05) for c in group}
    runners = [LeaderJobs(c, [jobs[c.instance_id]], SystemClock(), tick_s=0.05).start()
               for c in group]
    try:
        until(lambda: len(jobs[leader.instance_id].epochs) >= 3, ELECTION_S, "three runs")
        assert jobs[follower.instance_id].epochs == []
        leader.stop()  # hands over: the other instance leads and its jobs run
        ran = len(jobs[leader.instance_id].epochs)
        until(lambda: len(jobs[follower.instance_id].epochs) >= 2, ELECTION_S,
              "the new leader's runs")
        assert len(jobs[leader.instance_id].epochs) == ran
        assert set(jobs[follower.instance_id].epochs) == {follower.epoch}
    finally:
        for runner in runners:
            started = time.monotonic()
            runner.stop()
            assert time.monotonic() - started < STOP_S_MAX


def test_a_job_whose_timeout_the_lease_does_not_cover_is_skipped(coordinators):
    (leader,) = coordinators(1)
    long = Counting("long", timeout_ms=SETTINGS.lease_ttl_ms + 1)  # never covered
    short = Counting("short", timeout_ms=100)
    runner = LeaderJobs(leader, [long, short], FakeClock(datetime(2025, 11, 25, tzinfo=UTC)))
    runner.tick()
    runner.tick()  # still due, still skipped
    assert long.epochs == [] and runner.stats["long"].skipped_lease == 2
    assert runner.stats["long"].runs == 0
    assert short.epochs == [leader.epoch]


def test_failures_are_counted_and_never_stop_the_thread_and_fenced_ends_the_tick(coordinators):
    (leader,) = coordinators(1)

    def fail() -> None:
        raise RuntimeError("a bug in a job")

    def fenced() -> None:
        raise Fenced("leader", 1, 2)

    failing = Counting("failing", interval_s=0.01, action=fail)
    runner = LeaderJobs(leader, [failing], SystemClock(), tick_s=0.02).start()
    try:
        until(lambda: runner.stats["failing"].failures >= 3, ELECTION_S, "three failures")
    finally:
        runner.stop()
    assert runner.stats["failing"].runs >= 3

    refused, after = Counting("refused", action=fenced), Counting("after")
    runner = LeaderJobs(leader, [refused, after], FakeClock(datetime(2025, 11, 25, tzinfo=UTC)))
    runner.tick()
    assert runner.stats["refused"].fenced == 1 and after.epochs == []


def test_a_bad_job_list_is_refused(coordinators):
    (leader,) = coordinators(1)
    with pytest.raises(ValueError, match="differ"):
        LeaderJobs(leader, [Counting(), Counting()])
    with pytest.raises(ValueError, match="tick_s"):
        LeaderJobs(leader, [Counting()], tick_s=60)


def test_serve_jobs_open_their_ledger_in_the_background_and_retry_until_the_store_answers(
        coordinators, open_ledger):
    (leader,) = coordinators(1)
    attempts = []

    def flaky_open():
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("the store does not answer yet")
        return open_ledger()

    job = Counting(interval_s=0.05)
    jobs = ServeJobs(flaky_open, lambda ledger: LeaderJobs(leader, [job], tick_s=0.05),
                     retry_s=0.05)
    started = time.monotonic()
    jobs.start()  # returns at once: serving never waits for the jobs' store
    assert time.monotonic() - started < 0.5
    try:
        until(lambda: job.epochs, ELECTION_S, "the jobs to run once the store answers")
        assert jobs.open_failures == 2 and jobs.runner is not None and jobs.runner.running
    finally:
        jobs.stop()
    assert jobs.runner is not None and not jobs.runner.running
