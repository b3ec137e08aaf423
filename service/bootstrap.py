"""The composition root: everything the entry points run is built here, from settings.

The CLI and ``ledger serve`` ask this module for a ledger, a projection runner or the HTTP
application; nothing else in the code decides which database, configuration or read model
is used. (The model is cosmicpython's ``bootstrap.py``.)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import migrations
from ledger.application import Ledger, StoreNotReady
from ledger.config import LedgerConfig
from projections.rebuild import drop_leftover_copies
from projections.runner import ProjectionRunner

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


def http_app(settings: ServeSettings, config: LedgerConfig, database_url: str | None
             ) -> Starlette:
    """`ledger serve`'s application: webhook and reads over the store, with the projection
    runner in the process (one leads per store; the others stand by)."""
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

    return create_app(settings, serving_ledger)
