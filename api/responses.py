"""JSON responses: orjson bodies, exact money, and one shape for every error.

Errors are ``{"error": code, "message": text}`` plus ``problems`` (a list of
``{"field", "message"}``) when the input was at fault, so a client can act on the code
without parsing prose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import Response

from ledger import wire
from ledger.signals import Problem


def dumps(obj: Any) -> bytes:
    return wire.dumps(obj)


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
