"""Hostile alerts: text the store cannot hold. Each is refused before anything is decided
(422), never a 5xx, and a refused alert appends nothing. On SQLite and on Postgres (whose
JSONB refuses U+0000).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.config import default_config
from ledger.signals import InvalidSignal, parse_json, parse_signal
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


# --- 1. text the store cannot hold: U+0000 and lone surrogates ---------------------------

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
