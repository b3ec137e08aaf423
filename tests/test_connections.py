"""How many Postgres connections one `ledger serve` holds: counted by the server itself
(``pg_stat_activity``, on a database of the test's own, by ``application_name``: one per pool
of the process), after the start and after a burst of alerts and reads, against the bounds
docs/CONFIGURATION.md gives (``service.bootstrap.serve_connections``).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from ledger.config import Limits, default_config
from service.bootstrap import COORDINATOR_CONNECTIONS, RUNNER_CONNECTIONS, serve_connections
from tests.alerts import Alerts
from tests.api_server import ServeProcess
from tests.conftest import ADMIN_URL

SETTLE_S = 10  # bound on the pools opening their connections (in the background)
BURST_ALERTS = 60  # distinct alerts, sent at once
BURST_READS = 40  # reads among them
BURST_CONCURRENCY = 24  # requests in flight at once


@contextlib.contextmanager
def database_of_its_own() -> Iterator[tuple[str, str]]:
    """(its URL, its name): every connection to it is the server's under test."""
    name = f"ledger_conn_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}", name
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def connections(database: str) -> dict[str, int]:
    """Connections to ``database``, by application_name."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT application_name, count(*) FROM pg_stat_activity "
                            "WHERE datname = %s GROUP BY 1", (database,)).fetchall()
    return {name: int(count) for name, count in rows}


def settled(database: str) -> dict[str, int]:
    """The count once it has stopped changing (the pools fill in the background)."""
    deadline = time.monotonic() + SETTLE_S
    last, same = connections(database), 0
    while time.monotonic() < deadline and same < 5:
        time.sleep(0.2)
        now = connections(database)
        same = same + 1 if now == last else 0
        last = now
    return last


def within_bounds(found: dict[str, int], limits: Limits) -> None:
    """Each pool within its size and overflow, nothing else connected, the total within
    the documented bound."""
    assert set(found) <= {"ledger", RUNNER_CONNECTIONS, "ledger-coordinator",
                          "ledger-heartbeat", "ledger-jobs", "ledger-orders"}, found
    assert found.get("ledger-jobs", 0) <= 2 + 1, found
    assert found.get("ledger-orders", 0) <= 1 + 1, found
    assert found.get("ledger", 0) <= limits.store_pool_size + limits.store_pool_overflow, found
    assert found.get(RUNNER_CONNECTIONS, 0) <= (limits.projection_pool_size
                                                + limits.projection_pool_overflow), found
    assert found.get("ledger-coordinator", 0) + found.get("ledger-heartbeat", 0) <= \
        COORDINATOR_CONNECTIONS, found
    assert sum(found.values()) <= serve_connections(limits)[1], found


@pytest.mark.postgres
def test_a_serve_process_holds_no_more_connections_than_documented():
    limits = default_config().limits
    # The defaults, as docs/CONFIGURATION.md states them: 15 at rest, 26 at most.
    assert serve_connections(limits) == (8 + 1 + 2 + 1 + COORDINATOR_CONNECTIONS,
                                         8 + 8 + 1 + 1 + 2 + 1 + 1 + 1
                                         + COORDINATOR_CONNECTIONS) == (15, 26)
    alerts = Alerts()
    bodies = [alerts.mark(52000 + i, 100, instrument="BANK_NIFTY" if i % 2 else "GOLD_MINI")
              for i in range(BURST_ALERTS)]
    with database_of_its_own() as (url, name), ServeProcess(url, args=("--migrate",)) as server:
        with server.client() as client:
            assert client.get("/ready/webhook").status_code == 200
        started = settled(name)
        within_bounds(started, limits)
        assert started["ledger"] >= limits.store_pool_size  # the decisions' pool is open
        assert 1 <= started[RUNNER_CONNECTIONS] <= 2  # the runner's: small

        def send(i: int) -> tuple[int, str]:
            with server.client() as c:
                if i < BURST_ALERTS:
                    r = c.post("/webhook", json=bodies[i])
                else:
                    r = c.get("/signals", params={"limit": 5})
                return r.status_code, r.json().get("error", "")

        with ThreadPoolExecutor(BURST_CONCURRENCY) as pool:
            statuses = list(pool.map(send, range(BURST_ALERTS + BURST_READS)))
        # On a busy machine a decision may miss its deadline (503 timeout: TradingView would
        # retry); the store itself must always have had a connection for it.
        assert {code for status, code in statuses if status != 200} <= {"timeout"}, statuses
        assert sum(status == 200 for status, _ in statuses) >= len(statuses) // 2, statuses
        within_bounds(connections(name), limits)
