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

import psycopg
from eventsourcing.persistence import PersistenceError

import migrations
from coordination.coordinator import Coordinator
from coordination.settings import CoordinationSettings
from coordination.settings import SettingsError as CoordinationSettingsError
from ledger.application import Ledger, StoreNotReady, default_instance_id
from ledger.config import LedgerConfig, Limits
from ledger.storage import StoreSettings, store_settings
from projections.rebuild import drop_leftover_copies
from projections.runner import ProjectionRunner
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
    ledger = Ledger(config, database_url, pool=pool, connection_name=connection_name)
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
COORDINATOR_CONNECTIONS = 2


def serve_connections(limits: Limits) -> tuple[int, int]:
    """Postgres connections one `ledger serve` process holds: (at rest, at most).

    At rest: the decisions' and reads' pool keeps ``store_pool_size``, the projection
    runner's ``projection_pool_size``, the coordinator two (term, heartbeat). Under load each
    pool may add its overflow (kept until idle for 10 minutes). docs/CONFIGURATION.md says
    how to size ``max_connections`` from this."""
    at_rest = limits.store_pool_size + limits.projection_pool_size + COORDINATOR_CONNECTIONS
    return at_rest, at_rest + limits.store_pool_overflow + limits.projection_pool_overflow


def projection_runner(config: LedgerConfig, database_url: str | None) -> ProjectionRunner:
    """A runner on a ledger of its own, for `ledger project` (the store must be migrated)."""
    return ProjectionRunner(open_ledger(config, database_url, migrated=True,
                                        pool=runner_pool(config.limits),
                                        connection_name=RUNNER_CONNECTIONS))


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


def http_app(settings: ServeSettings, config: LedgerConfig, database_url: str | None,
             *, coordinate: Coordinator | None = None) -> Starlette:
    """`ledger serve`'s application: webhook and reads over the store, with the projection
    runner in the process, led by ``coordinate`` (one instance leads; the others stand by)."""
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

    return create_app(settings, serving_ledger, coordinator=coordinate, recover=recover,
                      open_runner_ledger=lambda: serving_ledger(runner_pool(config.limits),
                                                                RUNNER_CONNECTIONS))
