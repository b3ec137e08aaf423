"""End to end through a real `ledger serve` process, on SQLite and on Postgres: the DOMAIN
scenarios over HTTP, TradingView's redeliveries, auth, and SIGTERM in the middle of a burst.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

import migrations
from ledger.application import Ledger
from ledger.config import load_config
from ledger.domain import Portfolio, SignalRecord, stream_id
from tests.alerts import Alerts
from tests.api_server import ServeProcess

SECRET = "e2e-secret"
TOKEN = "e2e-token"
PORTFOLIOS = ("default", "alpha", "beta")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.toml"
    path.write_text("[portfolios.alpha]\n[portfolios.beta]\n")
    return path


@pytest.fixture
def store(store_url: str, config_file: Path):
    """The migrated store, seen from the test process (another instance)."""
    with Ledger(load_config(config_file), store_url) as ledger:
        migrations.migrate(ledger)
        yield ledger


@pytest.fixture
def server(store_url, store, config_file):
    env = {"LEDGER_CONFIG": str(config_file), "LEDGER_WEBHOOK_SECRET": SECRET,
           "LEDGER_API_TOKEN": TOKEN}
    with ServeProcess(store_url, env=env) as process:
        yield process


def signed(alert: dict[str, Any]) -> dict[str, Any]:
    return {**alert, "secret": SECRET}


def assert_whole(ledger: Ledger, decision: dict[str, Any]) -> None:
    """The decision's receipt and every event it reported are in the store."""
    record = ledger.repository.get(SignalRecord.create_id(decision["fingerprint"]))
    assert record.decision["decided_at"] == decision["decided_at"]
    for e in decision["events"]:
        kind, key = e["stream"].split(":", 1)
        found = list(ledger.events.get(stream_id(kind, key), gt=e["version"] - 1,
                                       lte=e["version"]))
        assert [type(x).__name__ for x in found] == [e["type"]], e


def test_domain_scenario_over_http(server, store):
    a = Alerts()
    reads = server.client(headers={"authorization": f"Bearer {TOKEN}"})
    with server.client() as hook, reads:
        def send(alert, path="/webhook"):
            r = hook.post(path, json=signed(alert))
            assert r.status_code == 200, r.text
            return r.json()

        base = send(a.base(52000, 51900, 100))
        assert (base["decision"], base["lots"], base["limiter"]) == ("accepted", 7, "risk")
        pyramid = send(a.pyramid("Long_2", 52400, 52300, 100))
        assert pyramid["decision"] == "accepted" and pyramid["lots"] >= 1
        early = send(a.pyramid("Long_3", 52440, 52340, 100))
        # 40 points above the last pyramid: less than 0.5 ATR
        assert [r["code"] for r in early["reasons"]] == ["atr_spacing_gate"]
        mark = send(a.mark(52800, 100))
        assert set(mark["position_ids"]) == {base["position_id"], pyramid["position_id"]}
        gold = send(a.base(72000, 71500, 400, instrument="GOLD_MINI"), "/webhook/alpha")
        assert gold["position_id"] == "alpha:GOLD_MINI:Long_1:1"

        # Read-your-writes: each read waits until the tables hold the decision it follows.
        summary = reads.get("/portfolio", params={"after": gold["log_position"]}).json()
        assert summary == store.portfolio_summary("default")
        held = {p["position_id"]: p for p in summary["open_positions"]}
        assert held[base["position_id"]]["current_stop"] == "52550.0"  # 52800 - 2.5 x 100

        exit_all = send(a.exit("ALL", 52700))
        assert exit_all["decision"] == "accepted"
        after = {"after": exit_all["log_position"]}
        summary = reads.get("/portfolio", params=after).json()
        assert summary["open_positions"] == []
        # 7 lots from 52000 and the pyramid from 52400, all out at 52700, 35 per point.
        realized = (52700 - 52000) * 7 * 35 + (52700 - 52400) * pyramid["lots"] * 35
        assert summary["closed_equity"] == f"{5_000_000 + realized}.00"

        positions = reads.get("/positions", params={"portfolio": "default", **after}
                              ).json()["positions"]
        assert {p["position_id"]: p["status"] for p in positions} == {
            base["position_id"]: "closed", pyramid["position_id"]: "closed"}
        assert [p["position_id"] for p in reads.get(
            "/positions", params={"status": "open"}).json()["positions"]] == [gold["position_id"]]
        history = reads.get(f"/positions/{base['position_id']}/history").json()["events"]
        assert [e["type"] for e in history] == ["PositionOpened", "StopTrailed", "Exited"]
        for decision in (base, pyramid, early, mark, gold, exit_all):
            assert_whole(store, decision)


def test_the_same_alert_delivered_four_times_at_once_is_decided_once(server, store):
    alert = signed(Alerts().base(52000, 51900, 100))

    async def deliver_four() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            responses = await asyncio.gather(
                *(client.post("/webhook", json=alert) for _ in range(4)))
        assert [r.status_code for r in responses] == [200] * 4
        return [r.json() for r in responses]

    answers = asyncio.run(deliver_four())
    assert sorted(a["duplicate"] for a in answers) == [False, True, True, True]
    assert len({json.dumps({k: v for k, v in a.items()
                            if k not in ("duplicate", "log_position")}, sort_keys=True)
                for a in answers}) == 1
    record = store.repository.get(SignalRecord.create_id(answers[0]["fingerprint"]))
    assert record.deliveries == 4 and record.version == 4
    assert store.portfolio("default").version == 2  # PortfolioOpened + the one decision


def test_auth_over_http_refuses_and_appends_nothing(server, store):
    before = store.recorder.max_notification_id()
    with server.client() as client:
        alert = Alerts().base(52000, 51900, 100)
        assert client.post("/webhook", json=alert).status_code == 401
        assert client.post("/webhook", json={**alert, "secret": "guess"}).status_code == 401
        assert client.get("/positions").status_code == 401
        assert client.get("/signals", headers={"authorization": "Bearer guess"}).status_code == 401
        assert client.get("/health").status_code == 200
    assert store.recorder.max_notification_id() == before
    assert SECRET not in server.output() and TOKEN not in server.output()


BURST_REQUESTS = 120
BURST_CONCURRENCY = 24
SIGTERM_AFTER_ANSWERS = 20


def test_sigterm_during_a_burst_loses_no_answered_alert_and_half_applies_none(server, store):
    alerts = {name: Alerts() for name in PORTFOLIOS}

    def burst_alert(i: int) -> tuple[str, dict[str, Any]]:
        name = PORTFOLIOS[i % len(PORTFOLIOS)]
        a = alerts[name]
        if i < len(PORTFOLIOS):
            return name, a.base(52000, 51900, 100)
        return name, a.mark(52000 + (i % 7) * 50, 100)

    bodies = [burst_alert(i) for i in range(BURST_REQUESTS)]
    answered: list[dict[str, Any]] = []
    failed: list[str] = []
    answered_at_sigterm: list[int] = []

    async def burst() -> None:
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        for item in bodies:
            queue.put_nowait(item)
        terminated = False

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal terminated
            while not queue.empty():
                name, alert = queue.get_nowait()
                try:
                    r = await client.post(f"/webhook/{name}", json=signed(alert))
                except httpx.HTTPError as e:
                    failed.append(type(e).__name__)
                    continue
                if r.status_code == 200:
                    answered.append(r.json())
                else:
                    failed.append(str(r.status_code))
                if len(answered) >= SIGTERM_AFTER_ANSWERS and not terminated:
                    terminated = True
                    answered_at_sigterm.append(len(answered))
                    server.process.send_signal(signal.SIGTERM)

        limits = httpx.Limits(max_connections=BURST_CONCURRENCY)
        async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as client:
            await asyncio.gather(*(worker(client) for _ in range(BURST_CONCURRENCY)))

    asyncio.run(burst())
    assert server.process.wait(timeout=30) == 0, server.output()
    # Requests in flight at the signal were answered, not cut off.
    assert len(answered) > answered_at_sigterm[0]
    assert failed, "the burst should have outlived the server"
    assert set(failed) <= {"ConnectError", "ReadError", "RemoteProtocolError", "503"}, failed

    for decision in answered:  # every 200 is in the store, whole
        assert_whole(store, decision)
    # Nothing half-applied anywhere: each portfolio replays, and its journal holds exactly one
    # event per decided signal (plus PortfolioOpened).
    decided = [n for n in store.recorder.select_notifications(1, 100_000)
               if n.topic.endswith("SignalRecord.SignalDecided")]
    for name in PORTFOLIOS:
        receipts = [store.mapper.to_domain_event(n) for n in decided]
        mine = [r for r in receipts if r.portfolio == name]
        portfolio = store.repository.get(Portfolio.create_id(name))
        assert portfolio.version == len(mine) + 1
        for receipt in mine:
            assert_whole(store, receipt.decision)
    assert "SIGTERM" in server.output()
