"""Fixtures: every test that touches a store runs on SQLite and on the machine's Postgres.

Postgres: one throwaway database per test run (dropped at the end), and a fresh schema per
test inside it, so tests never see each other's events. Set LEDGER_TEST_POSTGRES_URL to use
another server; the default is the machine's (127.0.0.1:5432, user postgres, trust auth).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

import migrations
from ledger.application import Ledger
from ledger.config import LedgerConfig, default_config
from ledger.domain import PortfolioParams

ADMIN_URL = os.environ.get("LEDGER_TEST_POSTGRES_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a database created for this test run and dropped after it."""
    name = f"ledger_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def new_store_url(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Make the URL of a fresh, empty store on ``backend``."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.sqlite3'}"
        database = request.getfixturevalue("postgres_database")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"{database}?schema={schema}"

    return make


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
    return request.param


@pytest.fixture
def store_url(backend: str, new_store_url: Callable[[str], str]) -> str:
    return new_store_url(backend)


def make_config(*names: str) -> LedgerConfig:
    config = default_config()
    for name in names:
        config = config.with_portfolio(PortfolioParams(name=name))
    return config


@pytest.fixture
def open_ledger(store_url: str) -> Iterator[Callable[..., Ledger]]:
    """Open Ledger instances on one migrated store (several = several instances)."""
    opened: list[Ledger] = []

    def make(config: LedgerConfig | None = None) -> Ledger:
        ledger = Ledger(config or make_config(), store_url)
        if not opened:
            migrations.migrate(ledger)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(open_ledger: Callable[..., Ledger]) -> Ledger:
    return open_ledger()
