"""The composition root: everything the entry points run is built here, from settings.

The CLI and ``ledger serve`` ask this module for a ledger, a projection runner or the HTTP
application; nothing else in the code decides which database, configuration or read model
is used. (The model is cosmicpython's ``bootstrap.py``.)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.persistence import PersistenceError

import migrations
from brokers.base import Broker
from brokers.openalgo import OpenAlgoBroker
from brokers.paper import PaperBroker
from coordination.coordinator import Coordinator
from coordination.settings import CoordinationSettings
from coordination.settings import SettingsError as CoordinationSettingsError
from ledger.application import Ledger, StoreNotReady, default_instance_id
from ledger.config import LedgerConfig, Limits
from ledger.storage import StoreSettings, store_settings
from projections.rebuild import drop_leftover_copies
from projections.runner import ProjectionRunner
from service.alerts import Alerts, alert_on_changes
from service.desk import DeskSettings, OrderDesk
from service.jobs import (
    JOBS_STORE_POOL_OVERFLOW,
    JOBS_STORE_POOL_SIZE,
    JobSettings,
    LeaderJobs,
    ServeJobs,
    jobs_config,
    leader_jobs,
)
from service.jobs.orders import DeskJob, ReconcileJob, desk_fence
from service.recovery import recover

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from api.settings import ServeSettings

log = logging.getLogger("ledger")


def open_ledger(config: LedgerConfig, database_url: str | None, *, ready: bool = True,
                migrated: bool = False, pool: tuple[int, int] | None = None,
                connection_name: str = "ledger") -> Ledger:
    """The ledger on ``database_url`` (default: ``$LEDGER_DATABASE_URL``, else the embedded
    file). ``ready``: raise StoreNotReady unless the store answers and has its event tables;
    ``migrated``: ... and every migration step is applied (the projection tables exist);
    ``pool``: its Postgres pool, when not ``store_pool_size`` + ``store_pool_overflow``;
    ``connection_name``: its connections' ``application_name``."""
    try:  # Postgres: the library connects at once (type adapters)
        ledger = Ledger(config, database_url, pool=pool, connection_name=connection_name)
    except PersistenceError as e:
        settings = store_settings(database_url, config.limits)
        raise StoreNotReady(f"{settings.redacted_url}: {diagnose(settings, e)}") from None
    if ready:
        ledger.check_ready()
    if migrated and (steps := migrations.missing(ledger)):
        raise StoreNotReady(f"{ledger.store.redacted_url} lacks {', '.join(steps)}: "
                            f"run `ledger migrate`")
    return ledger


def missing_migrations(config: LedgerConfig, database_url: str | None) -> list[str]:
    """The migration steps the store lacks (empty when it is up to date). Raises
    StoreNotReady naming the cause (refused, unknown database or role, ...) when the store
    cannot be reached at all."""
    settings = store_settings(database_url, config.limits)
    try:
        ledger = Ledger(config, database_url)  # Postgres: connects at once (type adapters)
    except PersistenceError as e:
        raise StoreNotReady(f"{settings.redacted_url}: {diagnose(settings, e)}") from None
    with ledger:
        return migrations.missing(ledger)


def diagnose(settings: StoreSettings, error: Exception) -> str:
    """Why the store does not answer, in the driver's own words: the pool only says it could
    not get a connection in time."""
    env = settings.env
    if "POSTGRES_HOST" not in env:
        return str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    try:
        psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
                        dbname=env["POSTGRES_DBNAME"], user=env["POSTGRES_USER"],
                        password=env["POSTGRES_PASSWORD"] or None,
                        connect_timeout=int(env["POSTGRES_CONNECT_TIMEOUT"])).close()
    except psycopg.Error as e:
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        return " ".join(lines) if lines else type(e).__name__
    return str(error).strip().splitlines()[0]


def migrate(ledger: Ledger) -> tuple[list[str], list[str]]:
    """`ledger migrate`: bring the schema up to date, then drop the copy tables a killed
    rebuild left behind. (The names of the steps applied, the names of the copies dropped.)"""
    steps = migrations.migrate(ledger)
    return steps, drop_leftover_copies(ledger)


RUNNER_CONNECTIONS = "ledger-projections"  # the runner's application_name


def runner_pool(limits: Limits) -> tuple[int, int]:
    """The projection runner's Postgres pool: it applies one batch at a time."""
    return limits.projection_pool_size, limits.projection_pool_overflow


# The coordinator's own connections (coordination/db.py): the term's and the heartbeat's.
COORDINATOR_CONNECTIONS = 3  # the leader's term, the heartbeat, the order desk's term
JOBS_CONNECTIONS = "ledger-jobs"  # the leader jobs' ledger (service.jobs: 2 + 1)
DESK_CONNECTIONS = "ledger-orders"  # the order desk's ledger
DESK_POOL = (1, 1)  # the desk writes one thing at a time


def serve_connections(limits: Limits) -> tuple[int, int]:
    """Postgres connections one `ledger serve` process holds: (at rest, at most).

    At rest: the decisions' and reads' pool keeps ``store_pool_size``, the projection
    runner's ``projection_pool_size``, the leader jobs' 2 and the order desk's 1, the
    coordinators three (the leader's term, the heartbeat, the desk's term). Under load each
    pool may add its overflow (kept until idle for 10 minutes). docs/CONFIGURATION.md says
    how to size ``max_connections`` from this."""
    at_rest = (limits.store_pool_size + limits.projection_pool_size + JOBS_STORE_POOL_SIZE
               + DESK_POOL[0] + COORDINATOR_CONNECTIONS)
    return at_rest, at_rest + (limits.store_pool_overflow + limits.projection_pool_overflow
                               + JOBS_STORE_POOL_OVERFLOW + DESK_POOL[1])


def projection_runner(config: LedgerConfig, database_url: str | None) -> ProjectionRunner:
    """A runner on a ledger of its own, for `ledger project` (the store must be migrated)."""
    return ProjectionRunner(open_ledger(config, database_url, migrated=True,
                                        pool=runner_pool(config.limits),
                                        connection_name=RUNNER_CONNECTIONS))


ENV_REDIS_URL = "LEDGER_REDIS_URL"
ENV_BROKER = "LEDGER_BROKER"  # paper (the default) or openalgo
ENV_OPENALGO = ("LEDGER_OPENALGO_URL", "LEDGER_OPENALGO_API_KEY", "LEDGER_OPENALGO_STRATEGY")


class BrokerSettingsError(ValueError):
    """The broker configuration is unusable; the message names the variable."""


def broker(environ: Mapping[str, str] | None = None) -> tuple[Broker, DeskSettings]:
    """The broker orders go to, and the desk's settings for it: ``LEDGER_BROKER=paper`` (the
    default: fills at the decided price, in this process's memory) or ``openalgo`` (with
    ``LEDGER_OPENALGO_URL``, ``LEDGER_OPENALGO_API_KEY`` and ``LEDGER_OPENALGO_STRATEGY``)."""
    env = os.environ if environ is None else environ
    kind = (env.get(ENV_BROKER) or "paper").strip().lower()
    if kind == "paper":
        return PaperBroker(), DeskSettings(price_orders=True)
    if kind == "openalgo":
        missing = [name for name in ENV_OPENALGO if not env.get(name, "").strip()]
        if missing:
            raise BrokerSettingsError(f"{ENV_BROKER}=openalgo needs {', '.join(missing)}")
        url, key, strategy = (env[name].strip() for name in ENV_OPENALGO)
        return OpenAlgoBroker(url, key, strategy), DeskSettings()
    raise BrokerSettingsError(f"{ENV_BROKER}: expected paper or openalgo, got {kind!r}")


def desk(ledger: Ledger, environ: Mapping[str, str] | None = None,
         fence: Callable[[int], Callable[[Any], None]] | None = None) -> OrderDesk:
    """The order desk on ``ledger``, sending to the configured broker."""
    chosen, settings = broker(environ)
    return OrderDesk(ledger, chosen, fence=fence, settings=settings)


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
        return open_ledger(jobs_config(config), database_url, ready=False,
                           connection_name=JOBS_CONNECTIONS)

    def build(ledger: Ledger) -> LeaderJobs:
        return LeaderJobs(coordinate, leader_jobs(ledger, config, coordinate, alerts, settings))

    return ServeJobs(jobs_ledger, build, alerts)


ORDER_LEASE_TTL_MS = 15_000  # the desk's term: covers a broker call (5 s) three times over
ORDER_RENEW_INTERVAL_MS = 3_000
ORDER_FOLLOWER_POLL_MS = 500


class DeskJobs:
    """The order desk of `ledger serve`: its own term (role ``orders``), its jobs (send,
    settle, fill; reconcile), its own ledger. Started and stopped with the other jobs."""

    def __init__(self, config: LedgerConfig, database_url: str | None,
                 coordinate: Coordinator) -> None:
        self.coordinator = Coordinator.from_database_url(
            store_settings(database_url).url, redis_url=coordinate.redis_url, name="orders",
            namespace=coordinate.namespace, instance_id=coordinate.instance_id,
            settings=replace(coordinate.settings, lease_ttl_ms=ORDER_LEASE_TTL_MS,
                             renew_interval_ms=ORDER_RENEW_INTERVAL_MS,
                             follower_poll_ms=ORDER_FOLLOWER_POLL_MS))
        broker_, desk_settings = broker()
        fence = desk_fence(self.coordinator)

        self.desk: OrderDesk | None = None

        def build(ledger: Ledger) -> LeaderJobs:
            desk_ = OrderDesk(ledger, broker_, fence=fence, settings=desk_settings)
            self.desk = desk_
            return LeaderJobs(self.coordinator, [DeskJob(desk_, self.coordinator),
                                                 ReconcileJob(desk_)])

        self.jobs = ServeJobs(lambda: open_ledger(config, database_url, ready=False,
                                                  pool=DESK_POOL,
                                                  connection_name=DESK_CONNECTIONS), build)

    def start(self) -> None:
        self.coordinator.start()
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
        self.coordinator.stop()  # hands the orders term over at once


class AllJobs:
    """Several background components, started in order and stopped in reverse."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def start(self) -> None:
        for part in self.parts:
            part.start()

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()


def http_app(settings: ServeSettings, config: LedgerConfig, database_url: str | None,
             *, coordinate: Coordinator | None = None,
             jobs: JobSettings | None = None) -> Starlette:
    """`ledger serve`'s application: webhook and reads over the store, with the projection
    runner in the process, led by ``coordinate`` (one instance leads; the others stand by),
    and the leader-only jobs (``jobs``: their settings, default from the environment), run
    while this instance leads."""
    from api.app import create_app  # the HTTP stack loads only for `ledger serve`

    def serving_ledger(pool: tuple[int, int] | None = None,
                       connection_name: str = "ledger") -> Ledger:
        ledger = open_ledger(config, database_url, ready=False, pool=pool,
                             connection_name=connection_name)
        try:
            ledger.check_ready()
        except StoreNotReady as e:
            # Serve anyway: /ready says 503 and alerts get 503 (so TradingView retries) until
            # the store is back; a restart loop would lose the same alerts.
            log.warning("store not ready yet: %s", e)
        return ledger

    background = desk_jobs = None
    if coordinate is not None:
        desk_jobs = DeskJobs(config, database_url, coordinate)
        background = AllJobs(serve_jobs(config, database_url, coordinate,
                                        jobs or job_settings()), desk_jobs)
    app = create_app(settings, serving_ledger, coordinator=coordinate, recover=recover,
                     jobs=background,
                     open_runner_ledger=lambda: serving_ledger(runner_pool(config.limits),
                                                               RUNNER_CONNECTIONS))
    if desk_jobs is not None:  # POST /reconcile asks the desk, where this instance runs it
        app.state.runtime.desk = lambda: (
            desk_jobs.desk if desk_jobs.coordinator.is_leader else None)
    return app
