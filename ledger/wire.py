"""JSON at the edge: exact money as strings, rounded only here; an alert's numbers as sent."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from uuid import UUID

import orjson

CENTS = Decimal("0.01")
RATIO = Decimal("0.0001")


def money(value: Decimal | None) -> str | None:
    """Rupees, rounded half-even to 2 decimals."""
    return None if value is None else str(value.quantize(CENTS, rounding=ROUND_HALF_EVEN))


def ratio(value: Decimal | None) -> str | None:
    """Percentages and sizing ratios, to 4 decimals."""
    return None if value is None else str(value.quantize(RATIO, rounding=ROUND_HALF_EVEN))


def number(value: Decimal | None) -> str | None:
    """Prices and other exact inputs, as given (no exponent)."""
    return None if value is None else format(value, "f")


class JSONNumber(Decimal):
    """A number read from JSON text that keeps that text: its value is the Decimal, and it is
    written back as the JSON number it was (``0.82``, ``1.50``, ``1e-7``), never as a string
    and never reformatted. Only a stored alert's payload is read this way (``loads``)."""

    __slots__ = ("literal",)
    literal: str

    def __new__(cls, literal: str) -> JSONNumber:
        number = super().__new__(cls, literal)
        number.literal = literal
        return number

    def __repr__(self) -> str:
        return f"JSONNumber({self.literal!r})"

    def __reduce__(self) -> tuple[type[JSONNumber], tuple[str]]:
        return (JSONNumber, (self.literal,))

    def __copy__(self) -> JSONNumber:
        return self

    def __deepcopy__(self, memo: Any) -> JSONNumber:
        return self


def _integer(literal: str) -> int | JSONNumber:
    number = int(literal)
    # JSON's integers are written one way each, but for a minus zero.
    return number if str(number) == literal else JSONNumber(literal)


def loads(text: str | bytes) -> Any:
    """JSON text to Python values, numbers keeping their text (``JSONNumber``; integers as
    ints). Not orjson: it reads integers beyond 64 bits as floats. For text this code wrote,
    or an alert it has already validated (``ledger.signals.parse_json`` bounds numbers)."""
    return json.loads(text, parse_float=JSONNumber, parse_int=_integer)


# A Decimal this far from 1 is an alert's unrelated extra field, not a price: written in
# positional notation it could be megabytes long, so it is written in scientific notation.
POSITIONAL_DIGITS_MAX = 40


def _default(obj: Any) -> Any:
    if isinstance(obj, JSONNumber):
        return orjson.Fragment(obj.literal)
    if isinstance(obj, Decimal):
        if obj.is_finite() and abs(obj.adjusted()) <= POSITIONAL_DIGITS_MAX:
            return number(obj)
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, tuple):
        return list(obj)
    # What orjson writes natively, for the stdlib fallback below (same text as orjson's).
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, UUID):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    """JSON bytes; exact decimals as strings, ``JSONNumber``s as the numbers they were.
    Integers beyond 64 bits (an alert may carry any number in an extra field), which orjson
    refuses, are written as their digits."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if pretty else 0)
    try:
        return orjson.dumps(obj, default=_default, option=option)
    except TypeError:  # a type neither knows raises TypeError here too
        pass
    try:
        return orjson.dumps(_big_integers(obj), default=_default, option=option)
    except TypeError:
        return json.dumps(obj, default=_stdlib_default, ensure_ascii=False,
                          indent=2 if pretty else None,
                          separators=None if pretty else (",", ":")).encode()


INT64_MIN, UINT64_MAX = -(2 ** 63), 2 ** 64 - 1  # orjson's integers


def _big_integers(obj: Any) -> Any:
    """``obj`` with every integer orjson cannot write replaced by its digits, verbatim."""
    if isinstance(obj, dict):
        return {k: _big_integers(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_big_integers(v) for v in obj]
    if type(obj) is int and not INT64_MIN <= obj <= UINT64_MAX:
        return orjson.Fragment(str(obj))
    return obj


def _stdlib_default(obj: Any) -> Any:
    """The last resort (a big integer inside a dataclass): numbers that kept their text are
    written as that text, quoted."""
    if isinstance(obj, JSONNumber):
        return obj.literal
    return _default(obj)


def iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()
