"""Leader-only background jobs (docs/HA.md, "Leader jobs").

``leader_jobs`` is the list ``ledger serve`` runs (built by ``service.bootstrap``): the
rollover, the ``signal_log`` retention and the watch (projection lag, crashed instances).
A new leader-only job is a class with ``name``, ``interval_s``, ``timeout_ms`` and
``run(epoch) -> JobReport`` appended there (order matters only within one tick). Trading
statistics need no job: the projection runner keeps ``trading_statistics`` current.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from coordination.coordinator import Coordinator
from ledger.application import Ledger
from ledger.config import LedgerConfig
from service.alerts import Alerts
from service.jobs.retention import SignalLogRetention, signal_log_horizon
from service.jobs.rollover import RolloverJob
from service.jobs.runner import Clock, Job, JobReport, LeaderJobs, SystemClock
from service.jobs.settings import JobSettings, JobSettingsError
from service.jobs.watch import WatchJob

__all__ = [
    "Clock", "Job", "JobReport", "JobSettings", "JobSettingsError", "LeaderJobs", "RolloverJob",
    "ServeJobs", "SignalLogRetention", "SystemClock", "WatchJob", "jobs_config", "leader_jobs",
    "signal_log_horizon",
]

log = logging.getLogger("ledger.jobs")

# The jobs run one at a time in one thread. A roll takes its portfolio's turn on one
# connection and reads and saves on another; the rest need one. (The decisions' pool size
# would keep eight idle connections open per instance for nothing.)
JOBS_STORE_POOL_SIZE = 2
JOBS_STORE_POOL_OVERFLOW = 1
OPEN_RETRY_S = 5  # the jobs' ledger could not be opened: try again this often
OPEN_JOIN_S = 5  # stop() waits this long for an opening in progress


def jobs_config(config: LedgerConfig) -> LedgerConfig:
    """``config`` with the store pool the jobs' own ledger needs."""
    return dataclasses.replace(config, limits=dataclasses.replace(
        config.limits, store_pool_size=JOBS_STORE_POOL_SIZE,
        store_pool_overflow=JOBS_STORE_POOL_OVERFLOW))


def leader_jobs(ledger: Ledger, config: LedgerConfig, coordinator: Coordinator,
                alerts: Alerts, settings: JobSettings, clock: Clock | None = None) -> list[Job]:
    """The jobs the leader runs, in the order each tick runs them."""
    clock = clock or SystemClock()
    jobs: list[Job] = [
        RolloverJob(ledger, config, clock, coordinator=coordinator, roll_at=settings.roll_at),
        WatchJob(ledger, alerts, stale_ms=coordinator.settings.heartbeat_stale_ms, clock=clock),
    ]
    if settings.retention_days:
        jobs.append(SignalLogRetention(ledger, settings.retention_days,
                                       coordinator=coordinator, clock=clock))
    return jobs


class ServeJobs:
    """The leader jobs of one `ledger serve` process, for its runtime to start and stop.

    ``start`` returns at once: a thread opens the jobs' own ledger (its connections never queue
    behind the decisions'; a store slow or down at startup delays the jobs, never serving),
    trying again every ``retry_s``, then starts the jobs. ``stop`` stops them, posts the
    alerts still queued (bounded) and closes the ledger."""

    def __init__(self, open_ledger: Callable[[], Ledger],
                 build: Callable[[Ledger], LeaderJobs], alerts: Alerts | None = None, *,
                 retry_s: float = OPEN_RETRY_S) -> None:
        self._open_ledger = open_ledger
        self._build = build
        self.alerts = alerts
        self.retry_s = retry_s
        self.ledger: Ledger | None = None
        self.runner: LeaderJobs | None = None
        self.open_failures = 0  # attempts to open the jobs' ledger that failed
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._opener: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._opener = threading.Thread(target=self._open, name="leader-jobs-open",
                                        daemon=True)
        self._opener.start()

    def _open(self) -> None:
        while not self._stopping.is_set():
            try:
                ledger = self._open_ledger()
            except Exception as e:
                self.open_failures += 1
                log.warning("leader jobs: could not open the store (%s); trying again in "
                            "%g s", e, self.retry_s)
                self._stopping.wait(self.retry_s)
                continue
            with self._lock:
                if self._stopping.is_set():
                    ledger.close()
                    return
                self.ledger = ledger
                self.runner = self._build(ledger)  # known before its first job runs
                self.runner.start()
            log.info("leader jobs: %s", ", ".join(job.name for job in self.runner.jobs))
            return

    def stop(self) -> None:
        self._stopping.set()
        if self._opener is not None:
            # Opening is bounded by the store's connect timeout; past this, leave it.
            self._opener.join(OPEN_JOIN_S)
        with self._lock:
            if self.runner is not None:
                self.runner.stop()
            if self.ledger is not None:
                self.ledger.close()
        if self.alerts is not None:
            self.alerts.close()
