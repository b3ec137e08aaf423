"""TradingView alerts: parsing, validation and the fingerprint that makes each one unique.

Validation collects every problem and raises once, before anything is decided or stored.
Numbers are read as exact Decimals from the JSON text (never through float).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ledger.config import LedgerConfig, is_portfolio_name
from ledger.domain import BASE_LABEL, ENTRY_TYPES, EXIT_ALL, Signal, SignalType

SECRET_FIELD = "secret"
# Signal times outside these years are typos; at the edges of datetime's range the contract
# calendar (next month's expiry, time zone shifts) would overflow instead of deciding.
TIMESTAMP_YEARS = (1970, 2999)
_LABEL = re.compile(r"^long_([1-9][0-9]?)$", re.IGNORECASE)
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
# Any number in an alert, extra fields included (they are stored as sent). TradingView writes
# at most ~25 characters (a float); 2**128 is 39 digits. Longer literals are refused before
# conversion, so an integer never reaches Python's int-conversion limit (4300 digits).
NUMBER_CHARS_MAX = 100  # characters in one number literal: sign, digits, point, exponent
# |adjusted exponent| (the power of ten in scientific notation) of a number with a fraction or
# an exponent: the default decimal context's Emax, beyond which any arithmetic on it
# overflows; far enough beyond it, Decimal() itself cannot read it (InvalidOperation).
EXPONENT_MAX = 999_999
# Text the store cannot hold: U+0000 (Postgres text and JSONB refuse it) and lone UTF-16
# surrogates (not Unicode scalar values: they cannot be encoded as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A TradingView placeholder ({{close}}, {{strategy.order.action}}, {{plot("ATR")}}): in an
# alert that fired it is replaced by its value, so one that arrives as text means the alert's
# message was not filled in (sent from elsewhere, or the placeholder does not apply there).
_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InvalidSignal(ValueError):
    """The alert cannot be decided; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


class UnfilledTemplate(InvalidSignal):
    """Some of the alert's values are TradingView placeholders TradingView did not fill in
    (``{{close}}`` as text): each is a problem naming its field and the placeholder."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


class _NumberOutOfRange(ValueError):
    pass


def _parse_int(literal: str) -> int:
    if len(literal) > NUMBER_CHARS_MAX:
        raise _NumberOutOfRange(literal)
    return int(literal)


def _parse_decimal(literal: str) -> Decimal:
    if len(literal) > NUMBER_CHARS_MAX:
        raise _NumberOutOfRange(literal)
    try:
        number = Decimal(literal)
    except InvalidOperation:  # an exponent beyond what Decimal can represent at all
        raise _NumberOutOfRange(literal) from None
    if abs(number.adjusted()) > EXPONENT_MAX:
        raise _NumberOutOfRange(literal)
    return number


def parse_json(body: bytes | str) -> Any:
    """JSON text to Python values with exact Decimals; raises InvalidSignal.

    Numbers longer than NUMBER_CHARS_MAX characters, or with an exponent beyond
    ±EXPONENT_MAX, are refused as the body's problem (nothing past them is read)."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return json.loads(text, parse_float=_parse_decimal, parse_int=_parse_int,
                          parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise InvalidSignal([Problem("body", "is not UTF-8 text")]) from None
    except _NumberOutOfRange as e:
        literal = e.args[0]
        shown = literal if len(literal) <= 24 else f"{literal[:12]}…{literal[-8:]}"
        raise InvalidSignal([Problem("body", (
            f"has a number out of range: {shown} ({len(literal)} characters; at most "
            f"{NUMBER_CHARS_MAX}, with an exponent within ±{EXPONENT_MAX})"))]) from None
    except (ValueError, RecursionError) as e:
        raise InvalidSignal([Problem("body", f"is not valid JSON: {e}")]) from None


def parse_signal(body: bytes | str | Mapping[str, Any], portfolio: str,
                 config: LedgerConfig, *, raw: bytes | str | None = None) -> Signal:
    """Validate one alert for ``portfolio``; raise InvalidSignal naming every problem.

    ``raw``: the JSON text ``body`` was parsed from, when ``body`` is that parse (the webhook
    reads it first); the signal keeps it, less the secret, as received (``without_secret``).
    """
    if isinstance(body, (bytes, str)):
        raw, data = body, parse_json(body)
    else:
        data = body
    if not isinstance(data, Mapping):
        raise InvalidSignal([Problem("body", "must be a JSON object")])
    problems: list[Problem] = []

    if not is_portfolio_name(portfolio):
        problems.append(Problem("portfolio", f"{portfolio!r} is not a valid portfolio name"))
    elif config.portfolio(portfolio) is None:
        problems.append(Problem("portfolio", f"unknown portfolio {portfolio!r}"))

    signal_type = _signal_type(data.get("type"), problems)
    instrument = _instrument(data.get("instrument"), config, problems)
    position = _position(data.get("position"), signal_type, problems)
    price = _number(data, "price", problems, required=True)
    timestamp = _timestamp(data.get("timestamp"), problems)
    stop = atr = er = None
    if signal_type in ENTRY_TYPES:
        stop = _number(data, "stop", problems, required=True)
        atr = _number(data, "atr", problems, required=True)
        er = _number(data, "er", problems, required=True, minimum_zero=True)
        if er is not None and er > 1:
            problems.append(Problem("er", f"an efficiency ratio is between 0 and 1, got {er}"))
        if stop is not None and price is not None and stop >= price:
            problems.append(Problem("stop", f"must be below price for a long entry "
                                            f"(stop {stop}, price {price})"))
    elif signal_type is SignalType.MARKET_DATA:
        atr = _number(data, "atr", problems, required=True)
    elif signal_type is SignalType.EXIT:
        # EXIT may send stop 0 and lots 0; nothing else about them matters.
        _number(data, "stop", problems, required=False, minimum_zero=True)

    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        problems.append(Problem("reason", "must be a string"))
    problems.extend(unstorable_text(data))
    unfilled = unfilled_placeholders(data)
    if unfilled:
        # What is wrong with those fields is the placeholder, not its form.
        named = {p.field for p in unfilled}
        raise UnfilledTemplate([*unfilled, *(p for p in problems if p.field not in named)])
    if problems:
        raise InvalidSignal(problems)
    assert signal_type is not None and instrument is not None
    assert price is not None and timestamp is not None
    payload = {k: v for k, v in data.items() if k != SECRET_FIELD}
    return Signal(
        portfolio=portfolio,
        type=signal_type,
        instrument=instrument,
        position=position,
        price=price,
        timestamp=timestamp,
        stop=stop,
        atr=atr,
        er=er,
        reason=reason,
        payload=payload,
        raw=None if raw is None else without_secret(
            raw.decode("utf-8") if isinstance(raw, bytes) else raw),
    )


_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's insignificant whitespace


def _skip_whitespace(text: str, at: int) -> int:
    match = _WHITESPACE.match(text, at)
    assert match is not None  # it matches the empty string too
    return match.end()


def without_secret(text: str) -> str:
    """A JSON object's text with every top-level ``secret`` member cut out (however its name
    is escaped), and with it the comma that separated it: every other byte as sent.

    ``text`` must already have parsed as a JSON object (``parse_json``): it is scanned again
    member by member, each name and value decoded only to find where it ends."""
    decoder = json.JSONDecoder()
    at = _skip_whitespace(text, 0)
    assert text[at] == "{", "not a JSON object"
    at = _skip_whitespace(text, at + 1)
    members: list[tuple[str, int, int]] = []  # (name, start, end) of each member
    while text[at] != "}":
        start = at
        name, at = decoder.raw_decode(text, at)
        at = _skip_whitespace(text, _skip_whitespace(text, at) + 1)  # past the ':'
        _, at = decoder.raw_decode(text, at)
        members.append((name, start, at))
        at = _skip_whitespace(text, at)
        if text[at] == ",":
            at = _skip_whitespace(text, at + 1)
    kept = [i for i, (name, _, _) in enumerate(members) if name != SECRET_FIELD]
    if len(kept) == len(members):
        return text
    if not kept:
        return text[:members[0][1]] + text[members[-1][2]:]
    pieces = [text[:members[0][1]]]
    for n, i in enumerate(kept):
        if n:  # the separator that followed the previous kept member
            previous = kept[n - 1]
            pieces.append(text[members[previous][2]:members[previous + 1][1]])
        pieces.append(text[members[i][1]:members[i][2]])
    pieces.append(text[members[-1][2]:])
    return "".join(pieces)


def unstorable_text(data: Mapping[str, Any]) -> list[Problem]:
    """A Problem for every key or string, however deeply nested, holding text the store cannot
    hold (U+0000, lone surrogates), named by its path: ``reason``, ``extra.nested[2]`` (a bad
    key shows its characters escaped). The secret is never stored, so it is not looked at."""
    problems: list[Problem] = []
    stack: list[tuple[Any, str]] = [({k: v for k, v in data.items() if k != SECRET_FIELD}, "")]
    while stack:  # not recursive: `ledger signal` reads alerts nested as deep as JSON allows
        value, path = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                problems.append(Problem(path, _unstorable_message(value, "contains")))
        elif isinstance(value, Mapping):
            for key in value:
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    problems.append(Problem(_path_key(path, key),
                                            _unstorable_message(key, "is a name that contains")))
            stack.extend((v, _path_key(path, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
    return problems


def unfilled_placeholders(data: Mapping[str, Any]) -> list[Problem]:
    """A Problem for every string value, however deeply nested, holding a TradingView
    placeholder TradingView did not fill in, named by its path (``price``,
    ``extra.levels[1]``). The secret is not looked at (it is checked before, never echoed)."""
    problems: list[Problem] = []
    stack: list[tuple[Any, str]] = [({k: v for k, v in data.items() if k != SECRET_FIELD}, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            found = _PLACEHOLDER.search(value)
            if found:
                shown = found.group() if len(found.group()) <= 80 else found.group()[:77] + "…"
                problems.append(Problem(path, (
                    f"holds the TradingView placeholder {shown}, not its value: the alert "
                    f"template was not filled in (TradingView fills placeholders only when the "
                    f"alert fires, and only those that apply to it)")))
        elif isinstance(value, Mapping):
            stack.extend((v, _path_key(path, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
    return problems


def _path_key(path: str, key: Any) -> str:
    name = _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(key))
    return f"{path}.{name}" if path else name


def _unstorable_message(text: str, verb: str) -> str:
    found = _UNSTORABLE.search(text)
    assert found is not None
    if found.group() == "\x00":
        return f"{verb} U+0000 (NUL), which cannot be stored"
    return (f"{verb} a lone UTF-16 surrogate (U+{ord(found.group()):04X}), which is not "
            f"Unicode text")


def _signal_type(value: Any, problems: list[Problem]) -> SignalType | None:
    if value is None:
        problems.append(Problem("type", "is required"))
        return None
    if isinstance(value, str):
        try:
            return SignalType(value.strip().upper())
        except ValueError:
            pass
    allowed = ", ".join(t.value for t in SignalType)
    problems.append(Problem("type", f"must be one of {allowed}, got {value!r}"))
    return None


def _instrument(value: Any, config: LedgerConfig, problems: list[Problem]) -> str | None:
    if value is None:
        problems.append(Problem("instrument", "is required"))
        return None
    if isinstance(value, str) and config.instrument(value.strip()) is not None:
        return value.strip().upper()
    known = ", ".join(sorted(config.instruments))
    problems.append(Problem("instrument", f"unknown instrument {value!r} (known: {known})"))
    return None


def _position(value: Any, signal_type: SignalType | None,
              problems: list[Problem]) -> str | None:
    if signal_type is SignalType.MARKET_DATA:
        return None  # a bar has no position; any value sent is ignored
    if value is None:
        problems.append(Problem("position", "is required"))
        return None
    text = value.strip() if isinstance(value, str) else ""
    if signal_type is SignalType.EXIT and text.upper() == EXIT_ALL:
        return EXIT_ALL
    match = _LABEL.match(text)
    if not match:
        expected = "Long_N or ALL" if signal_type is SignalType.EXIT else "Long_N"
        problems.append(Problem("position", f"must be {expected}, got {value!r}"))
        return None
    label = f"Long_{int(match.group(1))}"
    if signal_type is SignalType.BASE_ENTRY and label != BASE_LABEL:
        problems.append(Problem("position", f"a BASE_ENTRY is {BASE_LABEL}, got {value!r}"))
    if signal_type is SignalType.PYRAMID and label == BASE_LABEL:
        problems.append(Problem("position", f"a PYRAMID is Long_2 or later, got {value!r}"))
    return label


def _number(data: Mapping[str, Any], name: str, problems: list[Problem], *, required: bool,
            minimum_zero: bool = False) -> Decimal | None:
    value = data.get(name)
    if value is None:
        if required:
            problems.append(Problem(name, "is required"))
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str, float)):
        problems.append(Problem(name, f"must be a number, got {value!r}"))
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        problems.append(Problem(name, f"must be a number, got {value!r}"))
        return None
    if not number.is_finite():
        problems.append(Problem(name, f"must be a finite number, got {value!r}"))
        return None
    if number < 0 or (number == 0 and not minimum_zero):
        problems.append(Problem(name, f"must be {'>= 0' if minimum_zero else '> 0'}, got {value}"))
        return None
    if abs(number.adjusted()) > 12:
        problems.append(Problem(name, f"is out of range: {value}"))
        return None
    return number


def _timestamp(value: Any, problems: list[Problem]) -> datetime | None:
    if value is None:
        problems.append(Problem("timestamp", "is required"))
        return None
    return parse_instant(value, "timestamp", problems)


def parse_instant(value: Any, field: str, problems: list[Problem]) -> datetime | None:
    """An ISO 8601 date-time with a time zone, in the years 1970-2999, as UTC.

    Anything else appends a Problem naming ``field`` and returns None: a time without a zone
    is ambiguous (whose 10:30?), and outside those years it is a typo.
    """
    if not isinstance(value, str):
        problems.append(Problem(field, f"must be an ISO 8601 string, got {value!r}"))
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        problems.append(Problem(field, f"is not an ISO 8601 date-time: {value!r}"))
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        problems.append(Problem(field, f"must carry a time zone, e.g. "
                                       f"2025-11-28T10:30:00Z; got {value!r}"))
        return None
    if not TIMESTAMP_YEARS[0] <= parsed.year <= TIMESTAMP_YEARS[1]:
        problems.append(Problem(field, f"must be in the years {TIMESTAMP_YEARS[0]}-"
                                       f"{TIMESTAMP_YEARS[1]}, got {value!r}"))
        return None
    return parsed.astimezone(UTC)


def is_fingerprint(text: str) -> bool:
    """64 lowercase hex digits: the form ``fingerprint`` produces."""
    return _FINGERPRINT.fullmatch(text) is not None
