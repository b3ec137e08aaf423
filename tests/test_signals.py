"""Alert validation and fingerprints: bad input is named, field by field, and never decided."""

import pytest

from ledger.config import default_config
from ledger.domain import SignalType, fingerprint
from ledger.signals import InvalidSignal, parse_signal

CONFIG = default_config()
ENTRY = {"type": "BASE_ENTRY", "instrument": "BANK_NIFTY", "position": "Long_1",
         "price": 52000, "stop": 51650, "lots": 5, "atr": 350, "er": 0.82,
         "supertrend": 51650, "roc": 2.5, "timestamp": "2025-11-28T10:30:00Z"}


def problems(body, portfolio="default"):
    with pytest.raises(InvalidSignal) as e:
        parse_signal(body, portfolio, CONFIG)
    return {p.field: p.message for p in e.value.problems}


def test_entry_is_normalized_and_numbers_are_exact():
    s = parse_signal({**ENTRY, "type": "base_entry", "instrument": "bank_nifty",
                      "position": "long_1", "price": "52000.05"}, "default", CONFIG)
    assert (s.type, s.instrument, s.position) == (SignalType.BASE_ENTRY, "BANK_NIFTY", "Long_1")
    assert str(s.price) == "52000.05"


def test_json_text_floats_are_read_as_exact_decimals():
    s = parse_signal(b'{"type":"MARKET_DATA","instrument":"GOLD_MINI","price":72010.1,'
                     b'"atr":0.1,"timestamp":"2025-11-28T10:30:00Z"}', "default", CONFIG)
    assert (str(s.price), str(s.atr)) == ("72010.1", "0.1")


def test_fingerprint_ignores_sub_second_and_time_zone_spelling():
    a = parse_signal(ENTRY, "default", CONFIG)
    b = parse_signal({**ENTRY, "timestamp": "2025-11-28T16:00:00.750+05:30", "price": 52100},
                     "default", CONFIG)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint == fingerprint("default", "BANK_NIFTY", "BASE_ENTRY", "Long_1",
                                        a.timestamp)


def test_fingerprint_differs_by_portfolio_type_position_and_second():
    base = parse_signal(ENTRY, "default", CONFIG).fingerprint
    config = CONFIG.with_portfolio(CONFIG.portfolios["default"].__class__(name="other"))
    assert parse_signal(ENTRY, "other", config).fingerprint != base
    assert parse_signal({**ENTRY, "timestamp": "2025-11-28T10:30:01Z"}, "default",
                        CONFIG).fingerprint != base
    exit_ = {"type": "EXIT", "instrument": "BANK_NIFTY", "position": "Long_1", "price": 52000,
             "timestamp": ENTRY["timestamp"]}
    assert parse_signal(exit_, "default", CONFIG).fingerprint != base


def test_secret_never_reaches_the_payload():
    s = parse_signal({**ENTRY, "secret": "hunter2"}, "default", CONFIG)
    assert "secret" not in s.payload and s.payload["supertrend"] == 51650


def test_every_problem_is_named_at_once():
    found = problems({"type": "PYRAMID", "instrument": "XAU", "position": "Long_1",
                      "price": -5, "timestamp": "yesterday"})
    assert set(found) == {"instrument", "position", "price", "timestamp", "stop", "atr", "er"}


@pytest.mark.parametrize(("change", "field"), [
    ({"type": "BUY"}, "type"),
    ({"type": None}, "type"),
    ({"instrument": "NIFTY"}, "instrument"),
    ({"position": "Long_2"}, "position"),  # a base entry is Long_1
    ({"position": "Short_1"}, "position"),
    ({"price": 0}, "price"),
    ({"price": True}, "price"),
    ({"price": "abc"}, "price"),
    ({"price": "NaN"}, "price"),
    ({"price": "1e400"}, "price"),
    ({"stop": 52000}, "stop"),  # not below price
    ({"atr": 0}, "atr"),
    ({"er": 1.5}, "er"),
    ({"er": None}, "er"),
    ({"timestamp": "2025-11-28T10:30:00"}, "timestamp"),  # no time zone
    ({"timestamp": 1732789800}, "timestamp"),
    ({"reason": 5}, "reason"),
])
def test_invalid_field_is_named(change, field):
    assert field in problems({**ENTRY, **change})


def test_unknown_and_malformed_portfolio_names_are_refused():
    assert "portfolio" in problems(ENTRY, portfolio="nope")
    assert "portfolio" in problems(ENTRY, portfolio="../etc")


@pytest.mark.parametrize("body", [b"", b"{", b"[1,2]", b"null", b"\xff\xfe", b'{"price": NaN}'])
def test_body_that_is_not_a_json_object(body):
    assert "body" in problems(body)


def test_exit_may_send_zero_stop_and_lots_and_name_all():
    s = parse_signal({"type": "EXIT", "instrument": "GOLD_MINI", "position": "all",
                      "price": 72000, "stop": 0, "lots": 0, "reason": "trend over",
                      "timestamp": "2025-11-28T10:30:00Z"}, "default", CONFIG)
    assert (s.position, s.reason) == ("ALL", "trend over")


def test_market_data_needs_atr_and_has_no_position():
    assert "atr" in problems({"type": "MARKET_DATA", "instrument": "GOLD_MINI", "price": 1,
                              "timestamp": "2025-11-28T10:30:00Z"})
    s = parse_signal({"type": "MARKET_DATA", "instrument": "GOLD_MINI", "price": 1, "atr": 1,
                      "position": "Long_1", "timestamp": "2025-11-28T10:30:00Z"}, "default",
                     CONFIG)
    assert s.position is None
