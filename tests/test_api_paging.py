"""GET /signals and /positions page by keyset (``next`` / ``?cursor=``) and filter (decision,
type, instrument, portfolio, a time range): every row once, newest first, whatever is
decided between two pages; a wrong filter or cursor is a 400 naming it.

In-process (the real app, lifespan and projection tables), on SQLite and on Postgres.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.alerts import Alerts
from tests.api_client import TOKEN, projected, service
from tests.conftest import make_config

IST = timezone(timedelta(hours=5, minutes=30))
INSTRUMENTS = (("BANK_NIFTY", 52000, 100), ("GOLD_MINI", 72000, 400))


def history(decide: Any, alerts: Alerts) -> None:
    """20 signals, 8 positions: per portfolio and instrument an entry, a mark, its exit, a
    rejected exit and a second entry."""
    for book in ("default", "alpha"):
        for instrument, price, atr in INSTRUMENTS:
            decide(alerts.base(price, price - atr, atr, instrument=instrument), book)
            decide(alerts.mark(price + atr, atr, instrument=instrument), book)
            decide(alerts.exit("Long_1", price + atr, instrument=instrument), book)
            decide(alerts.exit("Long_3", price, instrument=instrument), book)  # rejected
            decide(alerts.base(price, price - atr, atr, instrument=instrument), book)


@pytest.fixture
def api(open_ledger, store_url):
    ledger = open_ledger(make_config("alpha"))
    alerts = Alerts()
    history(lambda alert, book: ledger.decide(alert, book), alerts)
    with service(store_url, api_token=TOKEN) as client:
        client.headers["authorization"] = f"Bearer {TOKEN}"
        client.ledger, client.alerts = ledger, alerts  # type: ignore[attr-defined]
        yield client


def everything(api: Any, path: str, **params: Any) -> list[dict[str, Any]]:
    r = api.get(path, params={**params, "limit": 500})
    assert r.status_code == 200, r.text
    assert "next" not in r.json()
    return r.json()[path.strip("/")]


def pages(api: Any, path: str, limit: int, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of ``path`` with ``params``, following ``next`` until it is absent."""
    found, cursor = [], None
    for _ in range(100):
        r = api.get(path, params={**params, "limit": limit,
                                  **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        found.append(body[path.strip("/")])
        cursor = body.get("next")
        if cursor is None:
            return found
        assert len(body[path.strip("/")]) == limit  # a page with a `next` is full
    raise AssertionError("paging did not end")


def keys(rows: list[dict[str, Any]], key: str) -> list[Any]:
    return [row[key] for row in rows]


@pytest.mark.parametrize("path, key", [("/signals", "fingerprint"),
                                       ("/positions", "position_id")])
@pytest.mark.parametrize("limit", [1, 3, 7])
def test_pages_give_every_row_once_newest_first(api, path, key, limit):
    whole = everything(api, path)
    assert len(whole) == (20 if path == "/signals" else 8)
    got = pages(api, path, limit)
    assert got[-1]  # the last page is never empty: `next` comes only when more rows follow
    assert keys([row for page in got for row in page], key) == keys(whole, key)


def test_signals_filter_on_decision_type_instrument_portfolio_and_time(api):
    whole = everything(api, "/signals")
    rejected = everything(api, "/signals", decision="rejected")
    assert rejected and keys(rejected, "fingerprint") == [
        s["fingerprint"] for s in whole if s["processing_status"] == "rejected"]
    exits = everything(api, "/signals", type="exit", instrument="gold_mini",
                       portfolio="alpha")
    assert keys(exits, "fingerprint") == [
        s["fingerprint"] for s in whole if (s["signal_type"], s["instrument"], s["portfolio"])
        == ("EXIT", "GOLD_MINI", "alpha")]
    assert len(exits) == 2
    # [from, to): the fifth to the tenth oldest signal by their own time.
    times = sorted(s["signal_timestamp"] for s in whole)
    start, end = times[4], times[10]
    ranged = everything(api, "/signals", **{"from": start, "to": end})
    assert sorted(keys(ranged, "signal_timestamp")) == times[4:10]
    # A zone other than UTC names the same instants.
    shifted = datetime.fromisoformat(start).astimezone(IST).isoformat()
    assert shifted.endswith("+05:30")
    assert everything(api, "/signals", **{"from": shifted, "to": end}) == ranged
    # Filters and paging together.
    assert [row for page in pages(api, "/signals", 2, decision="accepted", portfolio="default")
            for row in page] == everything(api, "/signals", decision="accepted",
                                           portfolio="default")


def test_positions_filter_on_entry_time_with_the_other_filters(api):
    whole = everything(api, "/positions")
    entries = sorted(p["entry_timestamp"] for p in whole)
    ranged = everything(api, "/positions", **{"from": entries[2], "to": entries[6]})
    assert sorted(keys(ranged, "entry_timestamp")) == entries[2:6]
    closed = everything(api, "/positions", status="closed", instrument="BANK_NIFTY",
                        **{"from": entries[0]})
    assert keys(closed, "position_id") == ["alpha:BANK_NIFTY:Long_1:1",
                                           "default:BANK_NIFTY:Long_1:1"]
    assert [row for page in pages(api, "/positions", 3, status="open") for row in page] == \
        everything(api, "/positions", status="open")


def test_rows_decided_between_two_pages_do_not_shift_the_next_page(api):
    before = keys(everything(api, "/signals"), "fingerprint")
    first = api.get("/signals", params={"limit": 5}).json()
    decided = api.ledger.decide(api.alerts.mark(52500, 100), "default")
    projected(api)
    second = api.get("/signals", params={"limit": 5, "cursor": first["next"]}).json()
    assert keys(first["signals"] + second["signals"], "fingerprint") == before[:10]
    # ... and the new signal heads a fresh first page.
    assert api.get("/signals", params={"limit": 1}).json()["signals"][0]["fingerprint"] == \
        decided.body["fingerprint"]


@pytest.mark.parametrize("path, query, field", [
    ("/signals", "decision=maybe", "decision"),
    ("/signals", "type=ENTRY", "type"),
    ("/signals", "instrument=a;b", "instrument"),
    ("/signals", "from=2025-11-28T10:30:00", "from"),
    ("/signals", "to=yesterday", "to"),
    ("/signals", "from=2025-11-28T10:30:00Z&to=2025-11-28T10:29:00Z", "to"),
    ("/positions", "from=1900-01-01T00:00:00Z", "from"),
    ("/positions", "status=shut", "status"),
    ("/signals", "cursor=not-a-cursor", "cursor"),
    ("/positions", "cursor=" + "A" * 600, "cursor"),
    ("/positions", "cursor=%E2%82%AC", "cursor"),
])
def test_bad_filters_and_cursors_are_400_and_named(api, path, query, field):
    r = api.get(f"{path}?{query}")
    assert r.status_code == 400, r.text
    assert [p["field"] for p in r.json()["problems"]] == [field]


def test_a_cursor_works_only_where_and_with_the_filters_it_was_given_for(api):
    signals_next = api.get("/signals", params={"limit": 2}).json()["next"]
    positions_next = api.get("/positions", params={"limit": 2, "status": "open"}).json()["next"]
    for path, params in [("/positions", {"cursor": signals_next}),
                         ("/signals", {"cursor": positions_next}),
                         ("/signals", {"cursor": signals_next, "decision": "accepted"}),
                         ("/positions", {"cursor": positions_next})]:
        r = api.get(path, params=params)
        assert r.status_code == 400, (path, params)
        assert [p["field"] for p in r.json()["problems"]] == ["cursor"]
    # `limit` may change from page to page: it is not a filter.
    assert api.get("/signals", params={"limit": 7, "cursor": signals_next}).status_code == 200
