"""JSON at the edge: exact money as strings, rounded only here."""

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


# A Decimal this far from 1 is an alert's unrelated extra field, not a price: written in
# positional notation it could be megabytes long, so it is written in scientific notation.
POSITIONAL_DIGITS_MAX = 40


def _default(obj: Any) -> Any:
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
    """JSON bytes; exact decimals as strings. Integers beyond 64 bits (an alert may carry
    any number in an extra field), which orjson refuses, go through the stdlib."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if pretty else 0)
    try:
        return orjson.dumps(obj, default=_default, option=option)
    except TypeError:  # a type neither knows raises TypeError here too
        return json.dumps(obj, default=_default, ensure_ascii=False,
                          indent=2 if pretty else None,
                          separators=None if pretty else (",", ":")).encode()


def iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()
