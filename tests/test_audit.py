"""The audit queries, computed from the event log: each event's cause, a signal's trail, the
books as the ledger knew them at a recording time (`known_at`) and as of a bar time (`as_of`).
On the ledger, through the `ledger` command, and over HTTP.

Each test runs on SQLite and on Postgres.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

from ledger import wire
from ledger.application import Ledger, UnknownPortfolio, UnknownSignal
from ledger.domain import stream_id
from ledger.presenters import facts
from tests.alerts import Alerts
from tests.api_client import TOKEN, service
from tests.conftest import make_config

BASE = "default:BANK_NIFTY:Long_1:1"
PYRAMID = "default:BANK_NIFTY:Long_2:1"


def now() -> datetime:
    return datetime.now(UTC)


def jsonable(value):
    """What a client reads: the value through the ledger's JSON."""
    return json.loads(wire.dumps(value))


def without_known_at(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "known_at"}


# --- a position's history names what caused each event ----------------------------------


def test_history_names_the_signal_behind_each_event(ledger):
    alerts = Alerts()
    entry = ledger.decide(alerts.base(52000, 51900, 100))
    mark = alerts.mark(52500, 100)
    trailed = ledger.decide(mark)
    ledger.decide(mark)  # TradingView retried the bar
    exited = ledger.decide(alerts.exit("Long_1", 52400))

    history = ledger.position_history(BASE)
    assert [e["type"] for e in history] == ["PositionOpened", "StopTrailed", "Exited"]
    causes = [e["signal"] for e in history]
    assert [c["fingerprint"] for c in causes] == [
        entry.body["fingerprint"], trailed.body["fingerprint"], exited.body["fingerprint"]]
    assert [c["signal_type"] for c in causes] == ["BASE_ENTRY", "MARKET_DATA", "EXIT"]
    assert [c["price"] for c in causes] == ["52000", "52500", "52400"]
    assert [c["decision"] for c in causes] == ["accepted"] * 3
    assert [c["deliveries"] for c in causes] == [1, 2, 1]
    assert causes[1]["signal_timestamp"] == mark["timestamp"]
    assert set(causes[0]) == {"fingerprint", "signal_type", "signal_timestamp", "price",
                              "decision", "received_at", "deliveries"}
    # The keys history always had are still there, unchanged in meaning.
    assert history[-1]["state"]["status"] == "closed"
    assert history[0]["event"]["fingerprint"] == entry.body["fingerprint"]


def test_a_rollover_is_caused_by_its_command_not_a_signal(ledger):
    alerts = Alerts()
    ledger.decide(alerts.base(52000, 51900, 100))
    ledger.roll(BASE, "2025-12-30", D(52500), D(52700), datetime(2025, 12, 23, 5, tzinfo=UTC))
    history = ledger.position_history(BASE)
    assert [e["type"] for e in history] == ["PositionOpened", "RolledOver"]
    assert history[-1]["signal"] == {"command_id": f"roll:{BASE}:2025-12-30"}


# --- a signal's trail --------------------------------------------------------------------


def test_trail_of_an_accepted_entry_lists_its_events_in_order_as_stored(ledger):
    alert = {**Alerts().base(52000, 51900, 100), "secret": "never-stored"}
    decision = ledger.decide(alert)
    fingerprint = decision.body["fingerprint"]

    trail = ledger.signal_trail(fingerprint)
    assert (trail["fingerprint"], trail["portfolio"], trail["signal_type"], trail["instrument"],
            trail["position"], trail["signal_timestamp"]) == (
        fingerprint, "default", "BASE_ENTRY", "BANK_NIFTY", "Long_1", alert["timestamp"])
    assert trail["payload"] == {k: v for k, v in alert.items() if k != "secret"}
    assert trail["decision"] == decision.body
    assert [d["delivery"] for d in trail["deliveries"]] == [1]
    assert trail["deliveries"][0]["duplicate"] is False
    assert trail["deliveries"][0]["instance_id"] == ledger.instance_id

    listed = [(e["type"], e["stream"], e["version"]) for e in decision.body["events"]]
    assert [(e["type"], e["stream"], e["version"]) for e in trail["events"]] == listed == [
        ("PortfolioOpened", "portfolio:default", 1),
        ("EntryAccepted", "portfolio:default", 2),
        ("PositionOpened", f"position:{BASE}", 1),
        ("SignalDecided", f"signal:{fingerprint}", 1),
    ]
    for entry in trail["events"]:  # each is exactly what its stream holds at that version
        kind, _, key = entry["stream"].partition(":")
        stored = [e for e in ledger.events.get(stream_id(kind, key))
                  if e.originator_version == entry["version"]]
        assert len(stored) == 1
        assert type(stored[0]).__name__ == entry["type"]
        assert entry["recorded_at"] == wire.iso(stored[0].timestamp)
        assert entry["event"] == facts(stored[0])
    opened = trail["events"][2]["event"]
    assert (opened["position_id"], opened["lots"], opened["fingerprint"]) == (
        BASE, 7, fingerprint)
    assert jsonable(trail)["events"][1]["event"]["holding"]["lots"] == 7  # JSON-ready


def test_trail_of_a_duplicate_shows_every_delivery_and_the_first_decision(ledger):
    alert = Alerts().base(52000, 51900, 100)
    first = ledger.decide(alert)
    again = [ledger.decide(alert) for _ in range(2)]
    assert [d.duplicate for d in again] == [True, True]

    trail = ledger.signal_trail(first.body["fingerprint"])
    assert [(d["delivery"], d["duplicate"]) for d in trail["deliveries"]] == [
        (1, False), (2, True), (3, True)]
    received = [d["received_at"] for d in trail["deliveries"]]
    assert received == sorted(received)
    assert trail["decision"] == first.body
    # Redeliveries append only to the receipt: the decision's events are the first ones.
    assert [e["type"] for e in trail["events"]] == [
        "PortfolioOpened", "EntryAccepted", "PositionOpened", "SignalDecided"]


def test_trail_of_a_rejection_and_of_a_mark_that_trailed(ledger):
    alerts = Alerts()
    ledger.decide(alerts.base(52000, 51900, 100))
    rejected = ledger.decide(alerts.exit("Long_5", 52100))
    trail = ledger.signal_trail(rejected.body["fingerprint"])
    assert trail["decision"]["decision"] == "rejected"
    assert [(e["type"], e["stream"], e["version"]) for e in trail["events"]] == [
        ("SignalRejected", "portfolio:default", 3),
        ("SignalDecided", f"signal:{rejected.body['fingerprint']}", 1)]
    assert trail["events"][0]["event"]["reasons"][0]["code"] == "position_not_open"

    marked = ledger.decide(alerts.mark(52500, 100))
    trail = ledger.signal_trail(marked.body["fingerprint"])
    assert [e["type"] for e in trail["events"]] == ["MarketMarked", "StopTrailed",
                                                   "SignalDecided"]
    assert trail["events"][1]["stream"] == f"position:{BASE}"
    assert trail["events"][1]["event"]["current_stop"] == D("52250.0")  # 52500 - 2.5 x 100


def test_trail_of_an_unknown_signal_is_refused(ledger):
    ledger.decide(Alerts().base(52000, 51900, 100))
    with pytest.raises(UnknownSignal):
        ledger.signal_trail("0" * 64)


# --- the books as the ledger knew them at a time (recording time) -------------------------


def test_books_known_at_before_between_and_after_decisions(ledger):
    alerts = Alerts()
    before = now()
    ledger.decide(alerts.base(52000, 51900, 100))
    after_base = now()
    ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100))
    after_pyramid = now()
    ledger.decide(alerts.mark(52800, 100))
    ledger.decide(alerts.exit("Long_2", 52700))
    after_exit = now()

    empty = ledger.portfolio_known_at("default", before)
    assert (empty["version"], empty["closed_equity"], empty["open_positions"]) == (
        0, "5000000.00", [])
    assert empty["known_at"] == wire.iso(before)

    one = ledger.portfolio_known_at("default", after_base)
    assert [p["position_id"] for p in one["open_positions"]] == [BASE]
    assert (one["version"], one["closed_equity"]) == (2, "5000000.00")

    two = ledger.portfolio_known_at("default", after_pyramid)
    assert [p["position_id"] for p in two["open_positions"]] == [BASE, PYRAMID]
    assert two["version"] == 3 and two["closed_equity"] == "5000000.00"

    # The pyramid exited at 52700 after entering at 52400: 300 points realized.
    end = ledger.portfolio_known_at("default", after_exit)
    assert [p["position_id"] for p in end["open_positions"]] == [BASE]
    assert D(end["closed_equity"]) > D("5000000.00")
    assert without_known_at(end) == ledger.portfolio_summary("default")
    assert list(end) == [*ledger.portfolio_summary("default"), "known_at"]


def test_books_known_at_include_an_event_recorded_exactly_then(ledger):
    decision = ledger.decide(Alerts().base(52000, 51900, 100))
    trail = ledger.signal_trail(decision.body["fingerprint"])
    entered_at = datetime.fromisoformat(trail["events"][1]["recorded_at"])  # EntryAccepted
    assert [p["position_id"] for p in
            ledger.portfolio_known_at("default", entered_at)["open_positions"]] == [BASE]
    just_before = ledger.portfolio_known_at("default", entered_at - timedelta(microseconds=1))
    assert (just_before["version"], just_before["open_positions"]) == (1, [])


def test_books_known_at_a_time_in_any_zone_are_the_same_instant(ledger):
    ledger.decide(Alerts().base(52000, 51900, 100))
    at = now()
    ist = at.astimezone(datetime.fromisoformat("2025-01-01T00:00:00+05:30").tzinfo)
    assert ledger.portfolio_known_at("default", ist) == ledger.portfolio_known_at("default", at)


def test_books_known_at_need_a_time_zone(ledger):
    ledger.decide(Alerts().base(52000, 51900, 100))
    with pytest.raises(ValueError, match="time zone"):
        ledger.portfolio_known_at("default", datetime(2030, 1, 1, 10, 30))


def test_books_known_at_for_unused_and_unknown_portfolios(open_ledger):
    ledger = open_ledger(make_config("alpha"))
    unused = ledger.portfolio_known_at("alpha", now())
    assert (unused["version"], unused["closed_equity"], unused["open_positions"]) == (
        0, "5000000.00", [])
    with pytest.raises(UnknownPortfolio):
        ledger.portfolio_known_at("nobody", now())


# --- the books as of a bar time (signal time) ----------------------------------------------


def positions_of(view: dict) -> list[str]:
    return [p["position_id"] for p in view["open_positions"]]


def at_minute(minute: int, second: int = 0) -> datetime:
    """Bar times of ``Alerts()``: its n-th alert is stamped 04:0n:00Z on 28 Nov 2025."""
    return datetime(2025, 11, 28, 4, minute, second, tzinfo=UTC)


def test_books_as_of_a_bar_time_fold_the_decisions_signalled_by_then(ledger):
    alerts = Alerts()
    ledger.decide(alerts.base(52000, 51900, 100))  # 04:01
    ledger.decide(alerts.pyramid("Long_2", 52400, 52300, 100))  # 04:02
    ledger.decide(alerts.mark(52800, 100))  # 04:03
    ledger.decide(alerts.exit("Long_2", 52700))  # 04:04

    before = ledger.portfolio_as_of("default", at_minute(0, 30))
    assert (positions_of(before), before["version"], before["closed_equity"]) == (
        [], 1, "5000000.00")
    assert before["as_of"] == "2025-11-28T04:00:30Z" and "known_at" not in before
    assert positions_of(ledger.portfolio_as_of("default", at_minute(1))) == [BASE]
    both = ledger.portfolio_as_of("default", at_minute(2, 59))
    assert positions_of(both) == [BASE, PYRAMID] and both["version"] == 3
    assert [p["mark"] for p in both["open_positions"]] == ["52400", "52400"]
    end = ledger.portfolio_as_of("default", at_minute(4))
    assert {k: v for k, v in end.items() if k != "as_of"} == ledger.portfolio_summary("default")


def test_a_late_bar_counts_at_its_own_time_not_when_it_was_recorded(ledger):
    alerts = Alerts()
    ledger.decide(alerts.base(52000, 51900, 100))  # 04:01
    late = alerts.mark(52100, 100)  # 04:02, delivered last
    ledger.decide(alerts.mark(52500, 100))  # 04:03
    recorded_before_late = now()
    ledger.decide(late)

    then = ledger.portfolio_as_of("default", at_minute(2, 30))
    assert [p["mark"] for p in then["open_positions"]] == ["52100"]
    assert then["version"] == 4  # the late bar is the last decision the view includes
    # What the ledger knew before the late bar arrived: the 52500 bar, not the 52100 one.
    known = ledger.portfolio_known_at("default", recorded_before_late)
    assert [p["mark"] for p in known["open_positions"]] == ["52500"]
    # Both: as of 04:02:30, as known before the late bar was recorded: only the entry.
    old = ledger.portfolio_view("default", as_of=at_minute(2, 30),
                                known_at=recorded_before_late)
    assert ([p["mark"] for p in old["open_positions"]], old["version"]) == (["52000"], 2)
    assert (old["as_of"], old["known_at"]) == ("2025-11-28T04:02:30Z",
                                               wire.iso(recorded_before_late))


def test_a_pyramid_signalled_before_its_base_stands_alone_in_between(ledger):
    alerts = Alerts()
    early = alerts.pyramid("Long_2", 52400, 52300, 100)  # 04:01, delivered after the base
    ledger.decide(alerts.base(52000, 51900, 100))  # 04:02
    assert ledger.decide(early).accepted
    view = ledger.portfolio_as_of("default", at_minute(1, 30))
    assert positions_of(view) == [PYRAMID]
    assert view["pyramiding_state"]["BANK_NIFTY"] == {
        "base_position_id": None, "last_pyramid_price": "52400", "pyramids": 1}
    later = ledger.portfolio_as_of("default", at_minute(2))
    assert {k: v for k, v in later.items() if k != "as_of"} == ledger.portfolio_summary(
        "default")


def test_a_roll_counts_at_its_own_time(ledger):
    ledger.decide(Alerts().base(52000, 51900, 100))  # 04:01 on 28 Nov
    ledger.roll(BASE, "2025-12-30", D(52500), D(52700), datetime(2025, 12, 23, 5, tzinfo=UTC))
    before = ledger.portfolio_as_of("default", datetime(2025, 12, 22, tzinfo=UTC))
    assert before["closed_equity"] == "5000000.00"
    assert before["open_positions"][0]["entry_price"] == "52000"
    after = ledger.portfolio_as_of("default", datetime(2025, 12, 24, tzinfo=UTC))
    assert after["closed_equity"] == "5122500.00"  # 500 x 7 x 35 realized on the old contract
    assert after["open_positions"][0]["entry_price"] == "52700"


def test_books_as_of_a_bar_time_need_a_time_zone_and_a_known_portfolio(open_ledger):
    ledger = open_ledger(make_config("alpha"))
    with pytest.raises(ValueError, match="time zone"):
        ledger.portfolio_as_of("default", datetime(2030, 1, 1, 10, 30))
    unused = ledger.portfolio_as_of("alpha", now())
    assert (unused["version"], unused["open_positions"]) == (0, [])
    with pytest.raises(UnknownPortfolio):
        ledger.portfolio_as_of("nobody", now())


# --- the `ledger` command ------------------------------------------------------------------


def run(store_url: str, *args: str, stdin: str = ""):
    env = {**os.environ, "LEDGER_DATABASE_URL": store_url}
    env.pop("LEDGER_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "service.cli", *args], input=stdin.encode(),
                          capture_output=True, env=env, timeout=60, check=False)


def test_cli_trail_of_a_signal_delivered_twice(store_url):
    assert run(store_url, "migrate").returncode == 0
    alert = json.dumps(Alerts().base(52000, 51900, 100))
    first = json.loads(run(store_url, "signal", stdin=alert).stdout)
    run(store_url, "signal", stdin=alert)
    fingerprint = first["fingerprint"]

    out = run(store_url, "trail", fingerprint, "--json")
    assert out.returncode == 0, out.stderr
    trail = json.loads(out.stdout)
    assert [d["duplicate"] for d in trail["deliveries"]] == [False, True]
    assert [e["type"] for e in trail["events"]] == [
        "PortfolioOpened", "EntryAccepted", "PositionOpened", "SignalDecided"]
    assert trail["decision"]["position_id"] == BASE
    # Nothing projected yet: the trail says so; after `ledger project`, it shows the rows.
    assert trail["projection_rows"] == {"log_position": 0, "signal_log": None,
                                        "portfolio_positions": {BASE: None}}
    assert run(store_url, "project", "--once").returncode == 0
    rows = json.loads(run(store_url, "trail", fingerprint, "--json").stdout)["projection_rows"]
    assert rows["signal_log"]["deliveries"] == 2
    assert rows["portfolio_positions"][BASE]["lots"] == first["lots"]

    text = run(store_url, "trail", fingerprint)
    assert text.returncode == 0
    lines = text.stdout.decode().splitlines()
    assert fingerprint in lines[0] and "BASE_ENTRY" in lines[0]
    assert "accepted" in lines[1] and BASE in lines[1]
    assert sum("delivery" in line for line in lines) == 2 and "duplicate" in lines[3]
    assert any("EntryAccepted" in line for line in lines)
    assert any(line.startswith("signal_log") and "deliveries=2" in line for line in lines)

    history = run(store_url, "history", BASE).stdout.decode()
    assert f"{fingerprint[:12]} BASE_ENTRY" in history


def test_cli_trail_refuses_what_is_not_a_fingerprint_and_reports_unknown_ones(store_url):
    run(store_url, "migrate")
    for bad in ["abc", "A" * 64, "0" * 65, "g" * 64]:
        out = run(store_url, "trail", bad)
        assert out.returncode == 2, bad
        assert b"fingerprint: must be 64 lowercase hex digits" in out.stderr
    unknown = run(store_url, "trail", "0" * 64)
    assert unknown.returncode == 4 and b"no signal" in unknown.stderr


def test_cli_portfolio_known_at(store_url):
    run(store_url, "migrate")
    alerts = Alerts()
    before = now()
    run(store_url, "signal", stdin=json.dumps(alerts.base(52000, 51900, 100)))
    between = now()
    run(store_url, "signal", stdin=json.dumps(alerts.exit("Long_1", 52400)))

    def books(at: datetime) -> dict:
        out = run(store_url, "portfolio", "--known-at", wire.iso(at), "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert books(before)["version"] == 0
    assert [p["position_id"] for p in books(between)["open_positions"]] == [BASE]
    latest = books(now())
    assert latest["open_positions"] == [] and latest["closed_equity"] == "5098000.00"
    current = json.loads(run(store_url, "portfolio", "--json").stdout)
    assert without_known_at(latest) == current

    text = run(store_url, "portfolio", "--known-at", wire.iso(between)).stdout.decode()
    assert "known_at" in text and BASE in text


def readme_alert() -> str:
    """The alert the README decides first (its `echo '...' | ledger signal`)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    return re.search(r"echo '(\{.*?\})' \|", readme, re.S).group(1)


def test_cli_readme_example_books_as_of_the_alerts_bar_show_the_position(store_url):
    run(store_url, "migrate")
    alert = readme_alert()
    decided = run(store_url, "signal", stdin=alert)
    assert decided.returncode == 0 and json.loads(decided.stdout)["decision"] == "accepted"
    at = json.loads(alert)["timestamp"]
    out = run(store_url, "portfolio", "--as-of", at, "--json")
    assert out.returncode == 0, out.stderr
    assert positions_of(json.loads(out.stdout)) == [BASE]
    # Recorded just now, long after that bar: the ledger did not know it at that time.
    known = json.loads(run(store_url, "portfolio", "--known-at", at, "--json").stdout)
    assert known["open_positions"] == [] and known["known_at"] == at
    text = run(store_url, "portfolio", "--as-of", at).stdout.decode()
    assert "as_of" in text and BASE in text


@pytest.mark.parametrize("flag", ["--known-at", "--as-of"])
def test_cli_portfolio_in_time_refuses_a_naive_or_unreadable_time(store_url, flag):
    run(store_url, "migrate")
    naive = run(store_url, "portfolio", flag, "2025-11-28T10:30:00")
    assert naive.returncode == 2
    assert f"{flag}: must carry a time zone".encode() in naive.stderr
    garbage = run(store_url, "portfolio", flag, "yesterday")
    assert garbage.returncode == 2
    assert f"{flag}: is not an ISO 8601 date-time".encode() in garbage.stderr
    unknown = run(store_url, "portfolio", "--portfolio", "nope", flag, "2025-11-28T10:30:00Z")
    assert unknown.returncode == 4


# --- over HTTP ------------------------------------------------------------------------------


@pytest.fixture
def api(store_url, ledger: Ledger):
    with service(store_url, api_token=TOKEN) as client:
        client.headers["authorization"] = f"Bearer {TOKEN}"
        yield client


def test_http_trail_answers_what_the_ledger_does(api, ledger):
    alert = Alerts().base(52000, 51900, 100)
    fingerprint = ledger.decide(alert).body["fingerprint"]
    ledger.decide(alert)
    second = ledger.decide(alert)
    r = api.get(f"/signals/{fingerprint}/trail", params={"after": second.log_position})
    assert r.status_code == 200
    trail = r.json()
    rows = trail.pop("projection_rows")
    assert trail == jsonable(ledger.signal_trail(fingerprint))
    assert [d["duplicate"] for d in trail["deliveries"]] == [False, True, True]
    # The trail's last step: the rows the tables hold for it, once projected.
    assert rows["log_position"] >= second.log_position
    assert (rows["signal_log"]["fingerprint"], rows["signal_log"]["deliveries"]) == (
        fingerprint, 3)
    assert rows["portfolio_positions"][BASE]["status"] == "open"

    history = api.get(f"/positions/{BASE}/history").json()["events"]
    assert history[0]["signal"]["fingerprint"] == fingerprint
    assert history[0]["signal"]["deliveries"] == 3


@pytest.mark.parametrize("fingerprint", ["abc", "A" * 64, "0" * 63 + "g", "0" * 65])
def test_http_trail_of_a_malformed_fingerprint_is_400_and_named(api, fingerprint):
    r = api.get(f"/signals/{fingerprint}/trail")
    assert r.status_code == 400
    assert r.json()["problems"][0]["field"] == "fingerprint"


def test_http_trail_of_an_unknown_signal_is_404(api):
    r = api.get(f"/signals/{'0' * 64}/trail")
    assert r.status_code == 404 and r.json()["error"] == "unknown_signal"


def test_http_portfolio_known_at(api, ledger):
    alerts = Alerts()
    before = now()
    ledger.decide(alerts.base(52000, 51900, 100))
    between = now()
    ledger.decide(alerts.exit("Long_1", 52400))

    def books(at: str) -> dict:
        r = api.get("/portfolio", params={"known_at": at})
        assert r.status_code == 200, r.text
        return r.json()

    assert books(wire.iso(before))["version"] == 0
    then = books(wire.iso(between))
    assert then == jsonable(ledger.portfolio_known_at("default", between))
    assert [p["position_id"] for p in then["open_positions"]] == [BASE]
    ist = between.astimezone(datetime.fromisoformat("2025-01-01T00:00+05:30").tzinfo)
    assert books(ist.isoformat()) == then  # the "+" survives the query string
    latest = books(wire.iso(now()))
    assert without_known_at(latest) == api.get("/portfolio").json()
    assert "known_at" not in api.get("/portfolio").json()


def test_http_portfolio_as_of_a_bar_time(api, ledger):
    alerts = Alerts()
    ledger.decide(alerts.base(52000, 51900, 100))  # 04:01
    ledger.decide(alerts.exit("Long_1", 52400))  # 04:02
    r = api.get("/portfolio", params={"as_of": "2025-11-28T04:01:30Z"})
    assert r.status_code == 200, r.text
    assert r.json() == jsonable(ledger.portfolio_as_of("default", at_minute(1, 30)))
    assert positions_of(r.json()) == [BASE] and r.json()["as_of"] == "2025-11-28T04:01:30Z"
    ist = api.get("/portfolio", params={"as_of": "2025-11-28T09:31:30+05:30"}).json()
    assert ist == r.json()
    both = api.get("/portfolio", params={"as_of": "2025-11-28T04:01:30Z",
                                         "known_at": wire.iso(now())}).json()
    assert positions_of(both) == [BASE] and set(both) >= {"as_of", "known_at"}


@pytest.mark.parametrize("key", ["known_at", "as_of"])
@pytest.mark.parametrize("at", ["2025-11-28T10:30:00", "yesterday", "", "0001-01-01T00:00Z"])
def test_http_portfolio_in_time_a_bad_time_is_400_and_named(api, key, at):
    r = api.get("/portfolio", params={key: at})
    assert r.status_code == 400
    assert [p["field"] for p in r.json()["problems"]] == [key]


@pytest.mark.parametrize("key", ["known_at", "as_of"])
def test_http_portfolio_in_time_unknown_portfolio_is_404(api, key):
    r = api.get("/portfolio", params={"portfolio": "nobody", key: "2025-11-28T10:30:00Z"})
    assert r.status_code == 404 and r.json()["error"] == "unknown_portfolio"


def test_http_audit_reads_need_the_token(api, ledger):
    fingerprint = ledger.decide(Alerts().base(52000, 51900, 100)).body["fingerprint"]
    del api.headers["authorization"]
    for path in [f"/signals/{fingerprint}/trail", "/portfolio?known_at=2025-11-28T10:30:00Z",
                 "/portfolio?as_of=2025-11-28T10:30:00Z",
                 "/signals/not-a-fingerprint/trail"]:
        for headers in [{}, {"authorization": "Bearer wrong"}]:
            r = api.get(path, headers=headers)
            assert r.status_code == 401, path
        assert api.get(path, headers={"authorization": f"Bearer {TOKEN}"}).status_code in (
            200, 400)
