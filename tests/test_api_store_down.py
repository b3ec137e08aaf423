"""The store dies under a running `ledger serve`: alerts get 503 inside TradingView's 3 s (so
it retries), /ready says so, and once the store is back the retried alert is decided once.

Runs its own PostgreSQL cluster on a spare port and kills that one; never the machine's.
"""

from __future__ import annotations

import time

import httpx2 as httpx
import psycopg
import pytest

import migrations
from ledger.application import Ledger
from ledger.config import default_config
from ledger.domain import SignalRecord
from tests.alerts import Alerts
from tests.api_server import PrivatePostgres, ServeProcess

TRADINGVIEW_TIMEOUT_S = 3  # TradingView cancels a webhook after this
RECOVERY_TIMEOUT_S = 60


@pytest.fixture
def private_postgres():
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.postgres
def test_store_down_answers_503_in_time_and_the_retry_is_decided_once(private_postgres):
    with psycopg.connect(private_postgres.url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA ledger")
    url = f"{private_postgres.url}?schema=ledger"
    with Ledger(default_config(), url) as ledger:
        migrations.migrate(ledger)

    alerts = Alerts()
    base, mark = alerts.base(52000, 51900, 100), alerts.mark(52300, 100)
    env = {"LEDGER_REQUEST_TIMEOUT_MS": "1000"}
    with ServeProcess(url, env=env) as server, \
            server.client(timeout=TRADINGVIEW_TIMEOUT_S) as tradingview:
        assert tradingview.post("/webhook", json=base).status_code == 200

        private_postgres.stop()
        for _ in range(3):  # TradingView's retries, and the threads they find busy
            r = tradingview.post("/webhook", json=mark)  # raises if slower than 3 s
            assert r.status_code == 503, r.text
            assert r.json()["error"] in ("store_unavailable", "timeout")
            assert r.headers["retry-after"] == "1"
        assert tradingview.get("/ready").status_code == 503
        assert tradingview.get("/health").status_code == 200

        private_postgres.start()
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while True:
            try:
                r = tradingview.post("/webhook", json=mark)
            except httpx.TimeoutException:
                r = None
            if r is not None and r.status_code == 200:
                break
            assert time.monotonic() < deadline, "the service did not recover"
            time.sleep(0.5)
        fingerprint = r.json()["fingerprint"]
        assert tradingview.get("/ready").status_code == 200
        assert server.terminate() == 0

    with Ledger(default_config(), url) as ledger:
        receipts = list(ledger.events.get(SignalRecord.create_id(fingerprint)))
        assert type(receipts[0]).__name__ == "SignalDecided"
        assert all(type(e).__name__ == "SignalRedelivered" for e in receipts[1:])
        # PortfolioOpened, EntryAccepted, MarketMarked: the mark is in the journal once.
        assert ledger.portfolio("default").version == 3
