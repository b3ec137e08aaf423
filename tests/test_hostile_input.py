"""Hostile alerts: text the store cannot hold, numbers out of range. Each is refused before
anything is decided (422; 400 when the body cannot be read), never a 5xx, and a refused
alert appends nothing. On SQLite and on Postgres (whose JSONB refuses U+0000).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.config import default_config
from ledger.signals import EXPONENT_MAX, NUMBER_CHARS_MAX, InvalidSignal, parse_json, parse_signal
from projections.runner import ProjectionRunner
from projections.verify import verify
from tests.alerts import Alerts
from tests.api_client import SECRET, service, with_secret
from tests.test_cli import lines, run

CONFIG = default_config()
MARK = {"type": "MARKET_DATA", "instrument": "GOLD_MINI", "price": 72000, "atr": 100,
        "timestamp": "2025-11-28T10:30:00Z"}


def log_size(ledger) -> int:
    return ledger.recorder.max_notification_id() or 0


def refused_fields(body) -> list[str]:
    with pytest.raises(InvalidSignal) as e:
        parse_signal(body, "default", CONFIG)
    return [p.field for p in e.value.problems]


def projected_and_verified(ledger) -> None:
    ProjectionRunner(ledger).catch_up()
    assert verify(ledger)[1] == []


@pytest.fixture
def api(store_url, ledger):
    with service(store_url, webhook_secret=SECRET) as client:
        yield client


# --- text the store cannot hold: U+0000 and lone surrogates ------------------------------

UNSTORABLE = [
    # (the alert's JSON text, the field path named)
    ('"reason": "a\\u0000b"', "reason"),
    ('"extra": {"nested": [1, 2, "x\\u0000"]}', "extra.nested[2]"),
    ('"extra": {"k\\u0000ey": 1}', "extra.k\\u0000ey"),
    ('"reason": "\\ud800"', "reason"),
    ('"note": ["ok", {"deep": "\\udfff tail"}]', "note[1].deep"),
    ('"k\\ud800": "v"', "k\\ud800"),
]


def _alert_text(fragment: str, alert: dict | None = None) -> str:
    return json.dumps(alert or MARK)[:-1] + ", " + fragment + "}"


@pytest.mark.parametrize(("fragment", "field"), UNSTORABLE)
def test_unstorable_text_anywhere_in_an_alert_is_refused_naming_its_path(fragment, field):
    assert field in refused_fields(_alert_text(fragment).encode())
    # The same alert already parsed (as the webhook hands it over) is refused the same way.
    assert field in refused_fields(parse_json(_alert_text(fragment)))


def test_surrogate_pairs_and_other_control_characters_are_ordinary_text():
    s = parse_signal(_alert_text('"reason": "\\ud83d\\ude00 \\u0001\\t\\u2028"').encode(),
                     "default", CONFIG)
    assert s.reason == "\U0001f600 \x01\t\u2028"


@pytest.mark.parametrize(("fragment", "field"), UNSTORABLE)
def test_webhook_answers_unstorable_text_with_422_and_appends_nothing(api, ledger, fragment,
                                                                     field):
    before = log_size(ledger)
    alert = with_secret(Alerts().mark(52000, 100))
    r = api.post("/webhook", content=_alert_text(fragment, alert),
                 headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_signal"
    assert field in [p["field"] for p in r.json()["problems"]]
    assert log_size(ledger) == before
    projected_and_verified(ledger)  # nothing poisoned the projection tables


def test_ledger_signal_refuses_unstorable_text_with_exit_2(store_url):
    assert run(store_url, "migrate").returncode == 0
    result = run(store_url, "signal", stdin=_alert_text('"reason": "a\\u0000b"'))
    assert result.returncode == 2, result.stderr
    assert [p["field"] for p in lines(result)[0]["problems"]] == ["reason"]


# Any string Hypothesis makes, as a value and as a key; st.text() never makes lone
# surrogates (nor often NUL), so some strings are strewn with them.
any_text = st.text() | st.lists(st.sampled_from(["\x00", "\ud800", "\udfff"]) | st.characters(),
                                max_size=8).map("".join)
EXAMPLES_FROM = datetime(2025, 11, 28, 4, 0, tzinfo=UTC)
_examples = itertools.count()  # a new signal time per example: each is a new signal


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=any_text)
def test_any_text_in_an_extra_field_is_refused_or_stored_and_projected(ledger, text):
    alert = {**MARK, "instrument": "BANK_NIFTY", "note": text, "more": {text: [text]},
             "timestamp": (EXAMPLES_FROM + timedelta(seconds=next(_examples))).isoformat()}
    before = log_size(ledger)
    try:
        decision = ledger.decide(json.dumps(alert).encode(), "default")
    except InvalidSignal as e:
        event("refused")
        assert log_size(ledger) == before
        key = _escaped(json.loads(json.dumps(text)))  # JSON pairs up \ud800\udfff
        assert {p.field for p in e.problems} <= {"note", f"more.{key}", f"more.{key}[0]"}
        return
    event("stored")
    assert decision.body["decision"] in ("accepted", "rejected")
    projected_and_verified(ledger)


def _escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF else c
                   for c in text)


# --- numbers out of range ----------------------------------------------------------------

OUT_OF_RANGE = [
    b'{"price":1e99999999999999999999}',
    b'{"price":1e-99999999999999999999}',
    b'{"x": 1e' + str(EXPONENT_MAX + 1).encode() + b"}",
    b'{"x": [0.5e-' + str(EXPONENT_MAX + 2).encode() + b"]}",
    b'{"x": ' + b"7" * (NUMBER_CHARS_MAX + 1) + b"}",
    b'{"x": ' + b"7" * 5000 + b"}",  # beyond Python's int-conversion limit too
    b'{"x": 1.' + b"5" * NUMBER_CHARS_MAX + b"}",
]


@pytest.mark.parametrize("body", OUT_OF_RANGE)
def test_numbers_out_of_range_are_refused_as_the_body(body):
    with pytest.raises(InvalidSignal) as e:
        parse_json(body)
    assert [p.field for p in e.value.problems] == ["body"]
    assert "out of range" in e.value.problems[0].message


def test_big_but_finite_numbers_are_read_exactly():
    edge = b"9" * NUMBER_CHARS_MAX
    data = parse_json(b'{"a": 1e999, "b": 1180591620717411303424, "c": 1e' +
                      str(EXPONENT_MAX).encode() + b', "d": ' + edge + b"}")
    assert (str(data["a"]), data["b"], data["d"]) == ("1E+999", 2 ** 70, int(edge))
    assert data["c"].adjusted() == EXPONENT_MAX


@pytest.mark.parametrize("body", OUT_OF_RANGE[:3] + OUT_OF_RANGE[-2:])
def test_webhook_answers_numbers_out_of_range_400_before_the_secret(api, ledger, body):
    before = log_size(ledger)
    r = api.post("/webhook", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "malformed_body"
    assert r.json()["problems"][0]["field"] == "body"
    assert log_size(ledger) == before


def test_ledger_signal_refuses_numbers_out_of_range_with_exit_2(store_url):
    assert run(store_url, "migrate").returncode == 0
    result = run(store_url, "signal", stdin=b'{"price":1e99999999999999999999}')
    assert result.returncode == 2, result.stderr
    assert b"Traceback" not in result.stderr
    assert [p["field"] for p in lines(result)[0]["problems"]] == ["body"]
