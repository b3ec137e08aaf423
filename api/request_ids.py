"""A request id for every HTTP request: the caller's ``X-Request-ID`` (nginx sets one per
request) when it is a plain token, else one made here. It is echoed in the answer's
``X-Request-ID``, named on every log line written while the request is handled (``current``:
the logging setup reads it), and recorded in the signal receipt of a webhook delivery.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.requests import HTTPConnection

HEADER = "x-request-id"
REQUEST_ID_CHARS_MAX = 128
# nginx's $request_id is 32 hex digits; a UUID, a trace id or a load balancer's id also fit.
# Anything else (spaces, quotes, longer) is replaced: it would be written into every line.
_TOKEN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:+=/-]{{0,{REQUEST_ID_CHARS_MAX - 1}}}")

current: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id(connection: HTTPConnection) -> str | None:
    """The id of the request being handled (set by ``RequestIdMiddleware``)."""
    return connection.scope.get("state", {}).get("request_id")


class RequestIdMiddleware:
    """Plain ASGI (no buffering of bodies): takes or makes the id, keeps it in the scope's
    state (``request.state.request_id``) and in ``current``, and adds it to the answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value.decode("latin-1") for name, value in scope.get("headers", ())
                      if name.lower() == HEADER.encode()), "")
        rid = given if _TOKEN.fullmatch(given) else new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        # Not reset afterwards: each request runs in a task of its own, and an error answered
        # by the outermost handler (500) is still logged with the id.
        current.set(rid)
        header = (HEADER.encode(), rid.encode())

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *(h for h in message.get("headers", ()) if h[0].lower() != header[0]),
                    header]
            await send(message)

        await self.app(scope, receive, send_with_id)
