"""Leader-only background jobs: one thread that runs each job when it is due, and only while
this instance leads under a term that outlasts the job.

Every tick (``tick_s``, 1 s by default) the thread asks the coordinator whether it leads. If it
does, it takes the term's epoch and runs each job whose interval has come, provided the lease
remaining (``Coordinator.lease_remaining_ms``) covers the job's declared ``timeout_ms``: a job
is never started under a term that may end before it does (docs/HA.md, "Writing as the
leader"). The job is handed that epoch and fences each of its writes with it, so a write
attempted after another instance began a newer term is refused by the database.

A job that raises is logged and counted and runs again at its next interval; ``Fenced`` (the
store refused a write: a newer term exists, and the coordinator has already stepped down)
ends the tick at once. Nothing a job raises ends the thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from coordination.coordinator import Coordinator
from coordination.terms import Fenced

log = logging.getLogger("ledger.jobs")

TICK_S_DEFAULT = 1.0  # how often the thread looks for due jobs
TICK_S_MAX = 5.0  # a longer tick would let a due job wait too long, and stop() too
SLEEP_SLICE_S = 0.05  # the thread sleeps in slices this long, so stop() is heard quickly
STOP_MARGIN_S = 1.0  # stop() waits for a running job's timeout plus this, then gives up


class Clock(Protocol):
    """What time it is (UTC, aware) and how to wait: injected so tests control time."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class JobReport:
    """What one run did. ``done``: one entry per thing acted on; ``skipped``: things left
    alone, each saying why; ``errors``: things that failed (the run carried on without them);
    ``facts``: counts and values worth keeping; ``more``: the run stopped at its deadline with
    work left, so it is due again at the next tick rather than after its interval."""

    done: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    more: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"done": self.done, "skipped": self.skipped, "errors": self.errors,
                **self.facts, "more": self.more}


class Job(Protocol):
    """A leader-only job: runs every ``interval_s`` seconds, for at most ``timeout_ms``."""

    name: str
    interval_s: float
    timeout_ms: int

    def run(self, epoch: int) -> JobReport:
        """Do the work under term ``epoch``: fence every write with it, stop starting new
        work once ``timeout_ms`` has passed (``Deadline``) or the term is no longer held."""
        ...


def leading(coordinator: Coordinator | None, epoch: int | None) -> bool:
    """Still leading under ``epoch``? (Always true without a coordinator: the CLI.)"""
    if coordinator is None:
        return True
    return coordinator.is_leader and coordinator.epoch == epoch


class Deadline:
    """A run's time budget on the monotonic clock (the wall clock may be a test's)."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self._ends = time.monotonic() + timeout_ms / 1000

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self._ends


@dataclass
class JobStats:
    """Per job, for metrics: runs started, runs that raised, runs fenced, ticks the job was
    due but the lease remaining did not cover its timeout, items runs reported as failed."""

    runs: int = 0
    failures: int = 0
    fenced: int = 0
    skipped_lease: int = 0
    errors: int = 0
    last_run_at: datetime | None = None
    last_report: JobReport | None = None
    next_due: datetime | None = None  # None: due now


class LeaderJobs:
    """Runs ``jobs`` in one background thread while ``coordinator`` leads."""

    def __init__(self, coordinator: Coordinator, jobs: Sequence[Job],
                 clock: Clock | None = None, *, tick_s: float = TICK_S_DEFAULT) -> None:
        if not 0 < tick_s <= TICK_S_MAX:
            raise ValueError(f"tick_s must be in (0, {TICK_S_MAX}], not {tick_s}")
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must differ: {names}")
        for job in jobs:
            if job.timeout_ms <= 0 or job.interval_s <= 0:
                raise ValueError(f"job {job.name}: interval_s and timeout_ms must be positive")
        self.coordinator = coordinator
        self.jobs = list(jobs)
        self.clock: Clock = clock or SystemClock()
        self.tick_s = tick_s
        self.stats: dict[str, JobStats] = {job.name: JobStats() for job in self.jobs}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warn_unrunnable()

    def _warn_unrunnable(self) -> None:
        settings = self.coordinator.settings
        # Between renewals the term is known good for at least this long; a longer timeout
        # is covered only just after a renewal (or, beyond the TTL, never).
        sure_ms = settings.lease_ttl_ms - settings.renew_interval_ms
        for job in self.jobs:
            if job.timeout_ms > sure_ms:
                log.warning("job %s: its timeout (%d ms) exceeds what the lease is sure to "
                            "cover (%d ms: LEDGER_LEASE_TTL_MS - LEDGER_RENEW_INTERVAL_MS): "
                            "it will often or always be skipped", job.name, job.timeout_ms,
                            sure_ms)

    # -- one tick (tests call it directly) -------------------------------------------------

    def tick(self) -> None:
        """Run every due job once, in order, while this instance leads under one epoch."""
        epoch = self.coordinator.epoch
        if epoch is None or not self.coordinator.is_leader:
            return
        for job in self.jobs:
            if self._stop.is_set() or not leading(self.coordinator, epoch):
                return  # leadership lost (or stopping): start nothing more
            stats = self.stats[job.name]
            started = self.clock.now()
            if stats.next_due is not None and started < stats.next_due:
                continue
            if self.coordinator.lease_remaining_ms() < job.timeout_ms:
                stats.skipped_lease += 1  # the term may end first: try at the next tick
                continue
            if not self._run(job, epoch, started):
                return

    def _run(self, job: Job, epoch: int, started: datetime) -> bool:
        """Run ``job`` once; False if it was fenced (the tick ends)."""
        stats = self.stats[job.name]
        stats.runs += 1
        stats.last_run_at = started
        stats.next_due = started + timedelta(seconds=job.interval_s)
        try:
            report = job.run(epoch)
        except Fenced as e:
            stats.fenced += 1
            log.warning("job %s fenced under epoch %d (%s): the coordinator has stepped "
                        "down; stopping", job.name, epoch, e)
            return False
        except Exception:
            stats.failures += 1
            log.exception("job %s failed (epoch %d); it runs again in %g s", job.name, epoch,
                          job.interval_s)
            return True
        stats.last_report = report
        stats.errors += len(report.errors)
        if report.more:
            stats.next_due = None  # stopped at its deadline: carry on at the next tick
        if report.done or report.errors:
            log.info("job %s (epoch %d): %d done, %d skipped, %d failed%s", job.name, epoch,
                     len(report.done), len(report.skipped), len(report.errors),
                     "; more to do" if report.more else "")
        return True

    # -- the thread ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """The thread is started and not stopped."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> LeaderJobs:
        if self._thread is not None:
            raise RuntimeError("leader jobs already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="leader-jobs", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread: waits for a running job at most its timeout plus a margin."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        longest_ms = max((job.timeout_ms for job in self.jobs), default=0)
        thread.join(longest_ms / 1000 + self.tick_s + STOP_MARGIN_S)
        if thread.is_alive():
            log.warning("leader jobs still busy after %d ms; leaving them (each write is "
                        "one fenced transaction)", longest_ms)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bug in the runner itself, not a job's failure
                log.exception("leader jobs tick failed")
            for _ in range(max(1, math.ceil(self.tick_s / SLEEP_SLICE_S))):
                if self._stop.is_set():
                    return
                self.clock.sleep(min(SLEEP_SLICE_S, self.tick_s))
