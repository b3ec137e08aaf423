"""The books over HTTP, the ReadModel contract, the read token, health and metrics.

``check_read_model`` states what any ReadModel must answer after ``SCENARIO``; it runs here on
EventStoreReads, and a table-backed implementation can be held to it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from api.read_model import POSITION_KEYS, SIGNAL_KEYS, STATISTICS_KEYS, ReadModel
from ledger.application import Ledger, UnknownPortfolio, UnknownPosition
from tests.alerts import Alerts
from tests.api_client import TOKEN, service
from tests.conftest import make_config
from tests.oracle import EventStoreReads


def scenario(decide: Callable[[dict[str, Any], str], Any]) -> None:
    """Base + pyramid + mark (trails both) + exit of the pyramid, on BANK_NIFTY in
    `default`; a rejected exit and a duplicate delivery; a base on GOLD_MINI in `alpha`."""
    a = Alerts()
    decide(a.base(52000, 51900, 100), "default")
    decide(a.pyramid("Long_2", 52400, 52300, 100), "default")
    mark = a.mark(52800, 100)
    decide(mark, "default")
    decide(mark, "default")  # TradingView retried
    decide(a.exit("Long_2", 52700), "default")
    decide(a.exit("Long_5", 52700), "default")  # not open: rejected
    decide(a.base(72000, 71500, 400, instrument="GOLD_MINI"), "alpha")


BASE = "default:BANK_NIFTY:Long_1:1"
PYRAMID = "default:BANK_NIFTY:Long_2:1"
GOLD = "alpha:GOLD_MINI:Long_1:1"


def check_read_model(reads: ReadModel) -> None:
    """What every ReadModel answers after ``scenario``."""
    portfolio = reads.portfolio("default")
    assert [p["position_id"] for p in portfolio["open_positions"]] == [BASE]
    with pytest.raises(UnknownPortfolio):
        reads.portfolio("nobody")

    every = reads.positions(portfolio=None, status=None, instrument=None, limit=100)
    assert [p["position_id"] for p in every] == [GOLD, PYRAMID, BASE]  # newest first
    assert all(tuple(p) == POSITION_KEYS for p in every)
    assert [p["position_id"] for p in reads.positions(
        portfolio="default", status="open", instrument=None, limit=100)] == [BASE]
    assert [p["position_id"] for p in reads.positions(
        portfolio=None, status="closed", instrument="BANK_NIFTY", limit=100)] == [PYRAMID]
    assert [p["position_id"] for p in reads.positions(
        portfolio=None, status=None, instrument="GOLD_MINI", limit=100)] == [GOLD]
    assert len(reads.positions(portfolio=None, status=None, instrument=None, limit=2)) == 2

    base = reads.position(BASE)
    assert tuple(base) == POSITION_KEYS
    assert (base["status"], base["lots"], base["is_base_position"]) == ("open", 7, True)
    # Trailed by the mark at 52800: highest close 52800, stop 52800 - 2.5 x 100.
    assert (base["highest_close"], base["current_stop"], base["mark"]) == (
        "52800", "52550.0", "52700")
    # Open at 52000, marked 52700 (the exit's price): 7 x 700 x 35.
    assert base["unrealized_pnl"] == "171500.00"
    pyramid = reads.position(PYRAMID)
    assert (pyramid["status"], pyramid["exit_price"], pyramid["exit_reason"]) == (
        "closed", "52700", "trailing_stop")
    assert pyramid["unrealized_pnl"] == "0.00" and pyramid["risk_amount"] == "0.00"
    with pytest.raises(UnknownPosition):
        reads.position("default:BANK_NIFTY:Long_9:1")

    history = reads.position_history(PYRAMID)
    assert [e["type"] for e in history] == ["PositionOpened", "StopTrailed", "Exited"]
    with pytest.raises(UnknownPosition):
        reads.position_history("nope")

    signals = reads.signals(portfolio=None, limit=100)
    assert len(signals) == 6  # seven deliveries, one a duplicate
    assert all(tuple(s) == SIGNAL_KEYS for s in signals)
    assert [s["signal_type"] for s in signals] == [
        "BASE_ENTRY", "EXIT", "EXIT", "MARKET_DATA", "PYRAMID", "BASE_ENTRY"]
    assert [s["processing_status"] for s in signals][:3] == ["accepted", "rejected", "accepted"]
    marked = signals[3]
    assert (marked["deliveries"], marked["is_duplicate"]) == (2, True)
    assert marked["decision"]["fingerprint"] == marked["fingerprint"]
    assert [s["portfolio"] for s in reads.signals(portfolio="alpha", limit=100)] == ["alpha"]
    assert len(reads.signals(portfolio=None, limit=2)) == 2
    assert [s["signal_type"] for s in reads.signals(portfolio=None, limit=100,
                                                    decision="rejected")] == ["EXIT"]
    assert [s["fingerprint"] for s in reads.signals(portfolio=None, limit=2,
                                                    before=signals[1]["id"])] == [
        s["fingerprint"] for s in signals[2:4]]

    stats = reads.statistics(portfolio=None)
    assert stats["log_position"] > 0
    assert [s["portfolio"] for s in stats["statistics"]] == ["alpha", "default"]
    assert all(tuple(s) == STATISTICS_KEYS for s in stats["statistics"])
    (default,) = reads.statistics(portfolio="default")["statistics"]
    # One closed trade (the pyramid: 300 points x 3 lots x 35), five signals, one resent.
    assert (default["trades"], default["winning_trades"], default["losing_trades"]) == (1, 1, 0)
    assert (default["net_pnl"], default["win_rate"], default["profit_factor"]) == (
        "31500.00", "100.0000", None)
    assert (default["signals_decided"], default["signals_accepted"],
            default["signals_rejected"], default["duplicate_deliveries"]) == (5, 4, 1, 1)
    with pytest.raises(UnknownPortfolio):
        reads.statistics(portfolio="nobody")


@pytest.fixture
def books(open_ledger) -> Ledger:
    ledger = open_ledger(make_config("alpha"))
    scenario(lambda alert, portfolio: ledger.decide(alert, portfolio))
    return ledger


def test_event_store_reads_keep_the_read_model_contract(books):
    check_read_model(EventStoreReads(books))


def test_event_store_reads_scan_the_log_in_bounded_windows(books):
    # Windows smaller than the log: the scan pages backwards and still finds every row.
    check_read_model(EventStoreReads(books, scan_window=3))


# --- over HTTP ---------------------------------------------------------------------------


@pytest.fixture
def api(store_url, books):
    with service(store_url, api_token=TOKEN) as client:
        client.headers["authorization"] = f"Bearer {TOKEN}"
        yield client


def test_portfolio_answers_the_keys_of_ledger_portfolio_json(api, books):
    r = api.get("/portfolio")
    assert r.status_code == 200
    assert r.json() == books.portfolio_summary("default")
    assert api.get("/portfolio", params={"portfolio": "alpha"}).json()["portfolio"] == "alpha"


def test_positions_filter_by_status_instrument_and_portfolio(api):
    def ids(**params):
        r = api.get("/positions", params=params)
        assert r.status_code == 200
        return [p["position_id"] for p in r.json()["positions"]]

    assert ids() == [GOLD, PYRAMID, BASE]
    assert ids(status="open") == [GOLD, BASE]
    assert ids(status="closed") == [PYRAMID]
    assert ids(instrument="bank_nifty") == [PYRAMID, BASE]
    assert ids(portfolio="alpha") == [GOLD]
    assert ids(limit=1) == [GOLD]


def test_position_and_its_history(api):
    assert api.get(f"/positions/{PYRAMID}").json()["status"] == "closed"
    history = api.get(f"/positions/{PYRAMID}/history").json()
    assert history["position_id"] == PYRAMID
    assert [e["type"] for e in history["events"]] == ["PositionOpened", "StopTrailed", "Exited"]
    assert history["events"][-1]["state"]["status"] == "closed"


def test_statistics_per_portfolio_from_the_trading_statistics_table(api, books):
    r = api.get("/statistics")
    assert r.status_code == 200
    answer = r.json()
    assert answer["log_position"] == books.recorder.max_notification_id()
    assert [s["portfolio"] for s in answer["statistics"]] == ["alpha", "default"]
    alpha = api.get("/statistics", params={"portfolio": "alpha"}).json()["statistics"]
    assert alpha == [answer["statistics"][0]]
    assert (alpha[0]["trades"], alpha[0]["signals_decided"]) == (0, 1)
    # Configured, never used: no figures yet. Neither configured nor used: 404.
    assert api.get("/statistics", params={"portfolio": "beta"}).json()["statistics"] == []
    r = api.get("/statistics", params={"portfolio": "nobody"})
    assert r.status_code == 404 and r.json()["error"] == "unknown_portfolio"
    r = api.get("/statistics", params={"portfolio": "Not A Name"})
    assert r.status_code == 400 and r.json()["problems"][0]["field"] == "portfolio"


def test_signals_are_recent_decisions_newest_first(api):
    signals = api.get("/signals", params={"limit": 3}).json()["signals"]
    assert [s["signal_type"] for s in signals] == ["BASE_ENTRY", "EXIT", "EXIT"]


@pytest.mark.parametrize("path", ["/positions/default:BANK_NIFTY:Long_9:9",
                                  "/positions/nope/history", "/portfolio?portfolio=nobody"])
def test_unknown_things_are_404(api, path):
    r = api.get(path)
    assert r.status_code == 404 and r.json()["error"].startswith("unknown_")


@pytest.mark.parametrize("query", ["status=shut", "limit=0", "limit=501", "limit=x",
                                   "portfolio=Upper", "instrument=a;drop"])
def test_bad_query_parameters_are_400_and_named(api, query):
    r = api.get(f"/positions?{query}")
    assert r.status_code == 400
    assert r.json()["problems"][0]["field"] == query.split("=")[0]


def test_reads_need_the_token_when_one_is_set(api):
    del api.headers["authorization"]
    for path in ["/portfolio", "/positions", f"/positions/{BASE}", f"/positions/{BASE}/history",
                 "/signals", "/statistics"]:
        for authorization in [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer",
                              f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"]:
            headers = {"authorization": authorization} if authorization else {}
            r = api.get(path, headers=headers)
            assert r.status_code == 401, (path, authorization)
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert api.get(path, headers={"authorization": f"bearer {TOKEN}"}).status_code == 200


def test_reads_are_open_without_a_token(store_url, books):
    with service(store_url) as client:
        assert client.get("/positions").status_code == 200


# --- health, readiness, metrics, the contract document -----------------------------------


def test_health_ready_and_openapi_need_no_token(api):
    api.headers.pop("authorization")
    assert api.get("/health").json()["status"] == "alive"
    ready = api.get("/ready")
    assert ready.status_code == 200 and ready.json()["missing_versions"] == []
    document = api.get("/openapi.json").json()
    assert {"/webhook", "/webhook/{portfolio}", "/portfolio", "/positions",
            "/positions/{position_id}", "/positions/{position_id}/history", "/signals",
            "/signals/{fingerprint}/trail", "/statistics", "/health", "/ready", "/ready/webhook",
            "/metrics", "/instances", "/orders", "/orders/{intent_id}", "/reconciliation",
            "/halt", "/reconcile", "/resume", "/openapi.json"} == set(document["paths"])


def test_ready_is_503_on_a_store_never_migrated(new_store_url, backend):
    with service(new_store_url(backend)) as client:
        assert client.get("/health").status_code == 200
        r = client.get("/ready")
        assert r.status_code == 503 and r.json()["error"] == "not_ready"
        # ... and an alert is refused as unavailable, so TradingView retries it later.
        assert client.post("/webhook", json=Alerts().base(52000, 51900, 100)).status_code == 503


def test_metrics_count_outcomes_and_time_decisions(store_url, ledger):
    from tests.api_client import SECRET

    alerts = Alerts()
    with service(store_url, webhook_secret=SECRET) as client:
        alert = {**alerts.base(52000, 51900, 100), "secret": SECRET}
        client.post("/webhook", json=alert)
        client.post("/webhook", json=alert)
        client.post("/webhook", json={**alerts.exit("Long_4", 1), "secret": SECRET})
        client.post("/webhook", json={"secret": SECRET})
        client.post("/webhook", json=alerts.mark(1, 1))
        text = client.get("/metrics").text

    def value(name: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith(name + " "))
        return float(line.split()[-1])

    for outcome, count in [("accepted", 1), ("duplicate", 1), ("rejected", 1), ("invalid", 1),
                           ("unauthorized", 1), ("too_large", 0), ("unavailable", 0)]:
        assert value(f'ledger_signals_total{{outcome="{outcome}"}}') == count
    assert value("ledger_decision_seconds_count") == 3
    assert value("ledger_version_conflicts_retried_total") == 0
    assert value("ledger_decisions_outstanding") == 0
