"""The composition root: everything the entry points run is built here, from settings.

The CLI and ``ledger serve`` ask this module for a ledger, a projection runner or the HTTP
application; nothing else in the code decides which database, configuration or read model
is used. (The model is cosmicpython's ``bootstrap.py``.)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING

import migrations
from coordination.coordinator import Coordinator
from coordination.settings import CoordinationSettings
from coordination.settings import SettingsError as CoordinationSettingsError
from ledger.application import Ledger, StoreNotReady, default_instance_id
from ledger.config import LedgerConfig
from ledger.storage import store_settings
from projections.rebuild import drop_leftover_copies
from projections.runner import ProjectionRunner
from service.alerts import Alerts, alert_on_changes
from service.jobs import JobSettings, LeaderJobs, ServeJobs, jobs_config, leader_jobs

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from api.settings import ServeSettings

log = logging.getLogger("ledger")


def open_ledger(config: LedgerConfig, database_url: str | None, *, ready: bool = True,
                migrated: bool = False) -> Ledger:
    """The ledger on ``database_url`` (default: ``$LEDGER_DATABASE_URL``, else the embedded
    file). ``ready``: raise StoreNotReady unless the store answers and has its event tables;
    ``migrated``: ... and every migration step is applied (the projection tables exist)."""
    ledger = Ledger(config, database_url)
    if ready:
        ledger.check_ready()
    if migrated and (steps := migrations.missing(ledger)):
        raise StoreNotReady(f"{ledger.store.redacted_url} lacks {', '.join(steps)}: "
                            f"run `ledger migrate`")
    return ledger


def migrate(ledger: Ledger) -> tuple[list[str], list[str]]:
    """`ledger migrate`: bring the schema up to date, then drop the copy tables a killed
    rebuild left behind. (The names of the steps applied, the names of the copies dropped.)"""
    steps = migrations.migrate(ledger)
    return steps, drop_leftover_copies(ledger)


def projection_runner(config: LedgerConfig, database_url: str | None) -> ProjectionRunner:
    """A runner on a ledger of its own, for `ledger project` (the store must be migrated)."""
    return ProjectionRunner(open_ledger(config, database_url, migrated=True))


ENV_REDIS_URL = "LEDGER_REDIS_URL"


def coordination_settings(environ: Mapping[str, str] | None = None) -> CoordinationSettings:
    """The coordinator's bounds: defaults, each overridden by ``LEDGER_<FIELD>`` (e.g.
    ``LEDGER_LEASE_TTL_MS``). Raises coordination's SettingsError naming every problem."""
    env = os.environ if environ is None else environ
    changes: dict[str, int] = {}
    problems = []
    for f in fields(CoordinationSettings):
        raw = env.get(f"LEDGER_{f.name.upper()}", "").strip()
        if not raw:
            continue
        try:
            changes[f.name] = int(raw)
        except ValueError:
            problems.append(f"LEDGER_{f.name.upper()}: expected an integer, got {raw!r}")
    if problems:
        raise CoordinationSettingsError(problems)
    return CoordinationSettings(**changes)


def coordinator(database_url: str | None, *, redis_url: str | None = None,
                settings: CoordinationSettings | None = None) -> Coordinator:
    """The leader election of this process, on the ledger's own store (and Redis when
    ``redis_url``, default ``$LEDGER_REDIS_URL``, names one). Not started."""
    url = store_settings(database_url).url
    redis_url = redis_url if redis_url is not None else os.environ.get(ENV_REDIS_URL) or None
    return Coordinator.from_database_url(url, redis_url=redis_url,
                                         instance_id=default_instance_id(),
                                         settings=settings or coordination_settings())


def job_settings(environ: Mapping[str, str] | None = None) -> JobSettings:
    """The leader jobs' settings (``LEDGER_ROLL_AT``, ``LEDGER_SIGNAL_LOG_RETENTION_DAYS``,
    ``LEDGER_ALERT_WEBHOOK_URL``); raises JobSettingsError (a ValueError) naming each problem."""
    return JobSettings.from_environment(environ)


def serve_jobs(config: LedgerConfig, database_url: str | None, coordinate: Coordinator,
               settings: JobSettings) -> ServeJobs:
    """The leader-only jobs of `ledger serve` (``service.jobs.leader_jobs``) and its alerts:
    leadership and mode changes are alerted from ``coordinate``. The jobs' ledger is opened
    when the runtime starts them, like the projection runner's."""
    alerts = Alerts(settings.alert_webhook_url, source=coordinate.instance_id)
    alert_on_changes(coordinate, alerts)
    log.info("alerts: %s", "to the log and the webhook (LEDGER_ALERT_WEBHOOK_URL set)"
             if settings.alert_webhook_url else "to the log (no LEDGER_ALERT_WEBHOOK_URL)")

    def jobs_ledger() -> Ledger:  # a small pool: the jobs run one at a time
        return open_ledger(jobs_config(config), database_url, ready=False)

    def build(ledger: Ledger) -> LeaderJobs:
        return LeaderJobs(coordinate, leader_jobs(ledger, config, coordinate, alerts, settings))

    return ServeJobs(jobs_ledger, build, alerts)


def http_app(settings: ServeSettings, config: LedgerConfig, database_url: str | None,
             *, coordinate: Coordinator | None = None,
             jobs: JobSettings | None = None) -> Starlette:
    """`ledger serve`'s application: webhook and reads over the store, with the projection
    runner in the process, led by ``coordinate`` (one instance leads; the others stand by),
    and the leader-only jobs (``jobs``: their settings, default from the environment), run
    while this instance leads."""
    from api.app import create_app  # the HTTP stack loads only for `ledger serve`

    def serving_ledger() -> Ledger:
        ledger = open_ledger(config, database_url, ready=False)
        try:
            ledger.check_ready()
        except StoreNotReady as e:
            # Serve anyway: /ready says 503 and alerts get 503 (so TradingView retries) until
            # the store is back; a restart loop would lose the same alerts.
            log.warning("store not ready yet: %s", e)
        return ledger

    background = None
    if coordinate is not None:
        background = serve_jobs(config, database_url, coordinate, jobs or job_settings())
    return create_app(settings, serving_ledger, coordinator=coordinate, jobs=background)
