"""JSON at the edge: exact money as strings, rounded only here."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

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


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return number(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if pretty else 0)
    return orjson.dumps(obj, default=_default, option=option)


def iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()
