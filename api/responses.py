"""JSON responses: orjson bodies, exact money, and one shape for every error.

Errors are ``{"error": code, "message": text}`` plus ``problems`` (a list of
``{"field", "message"}``) when the input was at fault, so a client can act on the code
without parsing prose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

from ledger import wire
from ledger.signals import Problem

# A Decimal this far from 1 is an alert's unrelated extra field, not a price: written in
# positional notation it could be megabytes long, so it is written in scientific notation.
_POSITIONAL_DIGITS_MAX = 40


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        if obj.is_finite() and abs(obj.adjusted()) <= _POSITIONAL_DIGITS_MAX:
            return wire.number(obj)
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=orjson.OPT_NON_STR_KEYS)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error(status: int, code: str, message: str, *, problems: Sequence[Problem] = (),
          headers: Mapping[str, str] | None = None, **details: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message, **details}
    if problems:
        body["problems"] = [p.as_dict() for p in problems]
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))
