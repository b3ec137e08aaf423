"""POST /webhook: what is decided, what is refused, and that a refusal never appends.

In-process (the real app, lifespan and store, on SQLite and on Postgres); the end-to-end
tests through a `ledger serve` process are in test_api_serve.py.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.domain import SignalRecord
from tests.alerts import Alerts
from tests.api_client import SECRET, service, with_secret

ALERT_FIELDS = ["type", "instrument", "position", "price", "stop", "atr", "er", "lots",
                "reason", "timestamp", "secret"]


def log_size(ledger) -> int:
    return ledger.recorder.max_notification_id() or 0


@pytest.fixture
def api(store_url, ledger):
    with service(store_url, webhook_secret=SECRET) as client:
        yield client


def post(api, alert, path="/webhook", **kwargs):
    return api.post(path, content=json.dumps(alert), **kwargs)


# --- decided: 200 ------------------------------------------------------------------------


def test_accepted_alert_answers_the_decision_as_ledger_signal_prints_it(api, ledger):
    r = post(api, with_secret(Alerts().base(52000, 51650, 350, er="0.82")),
             headers={"content-type": "application/json"})
    assert r.status_code == 200
    body = r.json()
    assert (body["decision"], body["lots"], body["limiter"]) == ("accepted", 1, "risk")
    assert body["duplicate"] is False and body["log_position"] == log_size(ledger)
    assert body["position_id"] == "default:BANK_NIFTY:Long_1:1"
    assert [e["type"] for e in body["events"]] == [
        "PortfolioOpened", "EntryAccepted", "PositionOpened", "SignalDecided"]


def test_text_plain_body_is_read_as_json_text(api):
    # TradingView sends text/plain whenever the alert message is not strictly valid JSON.
    r = post(api, with_secret(Alerts().base(52000, 51900, 100)),
             headers={"content-type": "text/plain; charset=utf-8"})
    assert r.status_code == 200 and r.json()["decision"] == "accepted"


def test_rejected_alert_is_a_200_with_its_reasons(api):
    r = post(api, with_secret(Alerts().exit("Long_1", 52000)))
    assert r.status_code == 200
    assert r.json()["decision"] == "rejected"
    assert {x["code"] for x in r.json()["reasons"]} == {"position_not_open"}


def test_named_portfolio_path_decides_for_that_portfolio(api):
    r = post(api, with_secret(Alerts().base(52000, 51900, 100)), path="/webhook/alpha")
    assert r.status_code == 200
    assert r.json()["position_id"] == "alpha:BANK_NIFTY:Long_1:1"


def test_redelivery_answers_the_first_decision_as_a_duplicate(api, ledger):
    alert = with_secret(Alerts().base(52000, 51900, 100))
    first = post(api, alert).json()
    size = log_size(ledger)
    again = post(api, alert).json()
    assert again["duplicate"] is True
    assert {k: v for k, v in again.items() if k not in ("duplicate", "log_position")} == {
        k: v for k, v in first.items() if k not in ("duplicate", "log_position")}
    assert log_size(ledger) == size + 1  # only the SignalRedelivered count


# --- refused before deciding: nothing appended ------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + " ", SECRET.upper(), 12345,
                                    ["x"]])
def test_missing_or_wrong_secret_is_401_and_appends_nothing(api, ledger, secret):
    alert = Alerts().base(52000, 51900, 100)
    if secret is not None:
        alert["secret"] = secret
    before = log_size(ledger)
    r = post(api, alert)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert log_size(ledger) == before


def test_invalid_alert_is_422_naming_every_invalid_field(api, ledger):
    before = log_size(ledger)
    r = post(api, with_secret({"type": "BASE_ENTRY", "instrument": "NIFTY_IT",
                               "position": "Long_3", "price": -1, "stop": "abc", "er": 2,
                               "timestamp": "yesterday"}))
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_signal"
    assert {p["field"] for p in body["problems"]} == {
        "instrument", "position", "price", "stop", "atr", "er", "timestamp"}
    assert log_size(ledger) == before


def test_unknown_portfolio_in_the_path_is_422(api, ledger):
    before = log_size(ledger)
    r = post(api, with_secret(Alerts().base(52000, 51900, 100)), path="/webhook/nobody")
    assert r.status_code == 422
    assert [p["field"] for p in r.json()["problems"]] == ["portfolio"]
    assert log_size(ledger) == before


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe",
                                  b'{"a": NaN}', b"{" * 5000, b"1" * 5000])
def test_a_body_that_is_not_a_json_object_is_400(api, ledger, body):
    before = log_size(ledger)
    r = api.post("/webhook", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "malformed_body"
    assert r.json()["problems"][0]["field"] == "body"
    assert log_size(ledger) == before


@pytest.mark.parametrize("timestamp", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+05:30",
                                       "1969-12-31T23:59:59Z", "3000-01-01T00:00:00Z"])
def test_timestamps_at_the_edges_of_time_are_422_not_a_crash(api, ledger, timestamp):
    # Found by hand after the fuzz missed it: the contract calendar overflowed on year 9999.
    before = log_size(ledger)
    for alert in (Alerts().base(52000, 51900, 100), Alerts().mark(52000, 100)):
        r = post(api, with_secret({**alert, "timestamp": timestamp}))
        assert r.status_code == 422, r.text
        assert [p["field"] for p in r.json()["problems"]] == ["timestamp"]
    assert log_size(ledger) == before


def test_deeply_nested_extra_field_is_400(api, ledger):
    alert = with_secret(Alerts().base(52000, 51900, 100))
    alert["extra"] = json.loads("[" * 40 + "]" * 40)
    r = post(api, alert)
    assert r.status_code == 400 and "nests deeper" in r.json()["problems"][0]["message"]


def test_other_content_types_are_415(api, ledger):
    before = log_size(ledger)
    r = post(api, with_secret(Alerts().base(52000, 51900, 100)),
             headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert log_size(ledger) == before


def test_declared_oversized_body_is_413(api, ledger):
    limit = 65536
    before = log_size(ledger)
    alert = with_secret(Alerts().base(52000, 51900, 100))
    alert["padding"] = "x" * limit
    r = post(api, alert)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    assert log_size(ledger) == before


def test_streamed_oversized_body_is_413_without_a_content_length(api, ledger):
    before = log_size(ledger)

    def chunks():  # chunked transfer: no Content-Length to trust, the bytes are counted
        yield b'{"padding": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    r = api.post("/webhook", content=chunks())
    assert r.status_code == 413
    assert log_size(ledger) == before


def test_a_body_exactly_at_the_limit_is_read(store_url, ledger):
    alert = with_secret(Alerts().base(52000, 51900, 100))
    size = len(orjson.dumps(alert))
    with service(store_url, webhook_secret=SECRET, body_bytes_max=size) as api:
        assert api.post("/webhook", content=orjson.dumps(alert)).status_code == 200
        alert["x"] = 1
        assert api.post("/webhook", content=orjson.dumps(alert)).status_code == 413


# --- the secret stays secret -------------------------------------------------------------


def test_the_secret_is_never_stored_logged_or_echoed(api, ledger, caplog):
    caplog.set_level(logging.DEBUG)
    alerts = Alerts()
    accepted = post(api, with_secret(alerts.base(52000, 51900, 100)))
    # The secret pasted into a field where it does not belong is not echoed back either.
    invalid = post(api, with_secret({**alerts.mark(52100, 100), "type": SECRET}))
    wrong = post(api, with_secret(alerts.mark(52100, 100), secret=SECRET + "x"))
    assert (accepted.status_code, invalid.status_code, wrong.status_code) == (200, 422, 401)
    for response in (accepted, invalid, wrong):
        assert SECRET not in response.text
    assert SECRET not in caplog.text
    record = ledger.repository.get(SignalRecord.create_id(accepted.json()["fingerprint"]))
    assert "secret" not in record.payload
    stored = b"".join(n.state for n in ledger.recorder.select_notifications(1, 10_000))
    assert SECRET.encode() not in stored and json.dumps(SECRET).encode() not in stored


# --- without a secret (loopback development) ---------------------------------------------


def test_without_a_configured_secret_alerts_need_none(store_url, ledger):
    with service(store_url) as api:
        r = post(api, Alerts().base(52000, 51900, 100))
        assert r.status_code == 200


# --- fuzz: nothing malformed gives a 5xx or appends --------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)

field_values = (json_values | st.sampled_from(
    ["BASE_ENTRY", "pyramid", "EXIT", "MARKET_DATA", "BANK_NIFTY", "gold_mini", "Long_1",
     "long_2", "ALL", "2025-11-28T10:30:00Z", "2025-11-28T10:30:00", "1e999", "-0", "NaN",
     SECRET]) | st.decimals(allow_nan=True, allow_infinity=True).map(str))

alert_like = st.dictionaries(st.sampled_from(ALERT_FIELDS) | st.text(max_size=8), field_values,
                             max_size=12)


EDGE_TIMESTAMPS = ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+05:30", "1970-01-01T00:00:00Z",
                   "2999-12-31T23:59:59-12:00", "2025-12-30T23:59:59+14:00",
                   "2026-01-05T00:00:00-00:00"]


@st.composite
def near_valid_alerts(draw):
    """A plausible alert, then up to two fields deleted or replaced with anything."""
    price = draw(st.decimals(min_value=1, max_value=200_000, places=2))
    atr = draw(st.decimals(min_value="0.5", max_value=2_000, places=2))
    alert = {
        "type": draw(st.sampled_from(["BASE_ENTRY", "PYRAMID", "EXIT", "MARKET_DATA",
                                      "base_entry"])),
        "instrument": draw(st.sampled_from(["BANK_NIFTY", "GOLD_MINI", "gold_mini"])),
        "position": draw(st.sampled_from(["Long_1", "Long_2", "Long_6", "ALL", "long_3"])),
        "price": str(price), "stop": str(max(price - atr, 0)), "atr": str(atr),
        "er": str(draw(st.decimals(min_value=0, max_value=1, places=2))),
        "lots": draw(st.integers(0, 10)), "reason": "fuzz",
        "timestamp": draw(st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
                          | st.sampled_from(EDGE_TIMESTAMPS)),
    }
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(ALERT_FIELDS[:-1]))
        if draw(st.booleans()):
            alert.pop(key, None)
        else:
            alert[key] = draw(field_values)
    return alert


# The store accumulates decisions across examples; that is what is being checked.
FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _raw_bodies():
    as_json = alert_like.map(lambda d: json.dumps(d, allow_nan=True).encode())
    return st.binary(max_size=512) | as_json | as_json.map(lambda b: b[: len(b) // 2])


@FUZZ
@given(body=_raw_bodies(), content_type=st.sampled_from(
    ["application/json", "text/plain", "text/plain; charset=utf-8", None]),
    path=st.sampled_from(["/webhook", "/webhook/alpha", "/webhook/UPPER", "/webhook/%E2%82%AC"]))
def test_fuzzed_bodies_never_5xx_and_never_append_unless_decided(api, ledger, body,
                                                                 content_type, path):
    before = log_size(ledger)
    headers = {"content-type": content_type} if content_type else {}
    r = api.post(path, content=body, headers=headers)
    event(f"status {r.status_code}")
    assert r.status_code in (200, 400, 401, 413, 422), r.text
    assert r.headers["content-type"] == "application/json"
    if r.status_code != 200:
        assert log_size(ledger) == before, r.text


@FUZZ
@given(alert=alert_like | near_valid_alerts(), secret=st.sampled_from([SECRET, None]))
def test_fuzzed_alerts_with_the_secret_are_decided_or_refused_cleanly(api, ledger, alert,
                                                                       secret):
    alert = {**alert, "secret": secret} if secret else {k: v for k, v in alert.items()
                                                        if k != "secret"}
    before = log_size(ledger)
    r = api.post("/webhook", content=json.dumps(alert, allow_nan=True))
    event(f"status {r.status_code}")
    assert r.status_code in (200, 400, 401, 422), r.text
    if r.status_code == 200:
        assert r.json()["decision"] in ("accepted", "rejected")
    else:
        assert log_size(ledger) == before, r.text
        assert r.json()["error"] in ("malformed_body", "unauthorized", "invalid_signal")
