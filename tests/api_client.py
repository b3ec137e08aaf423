"""In-process test service: the real app on a real store, called through Starlette's
TestClient (the lifespan runs, so the ledger, pools and metrics are the real ones)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.testclient import TestClient

from api.app import create_app
from api.settings import ServeSettings
from ledger.application import Ledger
from ledger.config import LedgerConfig
from tests.conftest import make_config

SECRET = "tv-s3cret-Δ"  # non-ASCII on purpose: compared as UTF-8 bytes
TOKEN = "read-token-123"


@contextmanager
def service(store_url: str, config: LedgerConfig | None = None,
            **settings: Any) -> Iterator[TestClient]:
    """A client of the app over ``store_url`` (migrated by the caller)."""
    config = config or make_config("alpha", "beta")
    app = create_app(ServeSettings(**settings), lambda: Ledger(config, store_url))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def with_secret(alert: dict[str, Any], secret: str = SECRET) -> dict[str, Any]:
    return {**alert, "secret": secret}
