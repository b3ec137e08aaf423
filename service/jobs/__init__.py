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

    ``start`` opens the jobs' own ledger (its connections never queue behind the decisions')
    and starts the thread; ``stop`` stops the thread, posts the alerts still queued (bounded)
    and closes the ledger."""

    def __init__(self, open_ledger: Callable[[], Ledger],
                 build: Callable[[Ledger], LeaderJobs], alerts: Alerts | None = None) -> None:
        self._open_ledger = open_ledger
        self._build = build
        self.alerts = alerts
        self.ledger: Ledger | None = None
        self.runner: LeaderJobs | None = None

    def start(self) -> None:
        self.ledger = self._open_ledger()
        self.runner = self._build(self.ledger)
        self.runner.start()
        log.info("leader jobs: %s", ", ".join(job.name for job in self.runner.jobs))

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        if self.alerts is not None:
            self.alerts.close()
        if self.ledger is not None:
            self.ledger.close()
