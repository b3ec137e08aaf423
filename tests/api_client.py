"""In-process test service: the real app on a real store, called through Starlette's
TestClient (the lifespan runs, so the ledger, pools and metrics are the real ones)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.testclient import TestClient

import migrations
from api.app import create_app
from api.settings import ServeSettings
from ledger.application import Ledger
from ledger.config import LedgerConfig
from projections.runner import wait_for
from tests.conftest import make_config

PROJECTION_WAIT_S = 10

SECRET = "tv-s3cret-Δ"  # non-ASCII on purpose: compared as UTF-8 bytes
TOKEN = "read-token-123"


@contextmanager
def service(store_url: str, config: LedgerConfig | None = None,
            **settings: Any) -> Iterator[TestClient]:
    """A client of the app over ``store_url`` (migrated by the caller)."""
    config = config or make_config("alpha", "beta")
    app = create_app(ServeSettings(**settings), lambda: Ledger(config, store_url))
    with TestClient(app, raise_server_exceptions=False) as client:
        projected(client)
        yield client


def projected(client: TestClient, timeout_s: float = PROJECTION_WAIT_S) -> None:
    """Wait until the service's tables hold everything in the log so far (if migrated)."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    ledger = runtime.ledger
    if migrations.missing(ledger):
        return
    head = ledger.recorder.max_notification_id() or 0
    assert wait_for(ledger, head, timeout_s), f"projections did not reach {head}"


def with_secret(alert: dict[str, Any], secret: str = SECRET) -> dict[str, Any]:
    return {**alert, "secret": secret}
