"""The Starlette application: the routes, over the ``Runtime`` they share (``api.runtime``),
opened at startup and closed at shutdown by the lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import openapi
from api.health import Health
from api.orders import Orders
from api.queries import Queries
from api.read_model import ReadModel
from api.request_ids import HEADER as REQUEST_ID_HEADER
from api.request_ids import RequestIdMiddleware, request_id
from api.responses import JSONResponse, error
from api.runtime import BackgroundJobs, Runtime
from api.settings import ServeSettings
from api.webhook import Webhook
from coordination.coordinator import Coordinator
from ledger.application import Ledger
from projections.read_model import ProjectionReads
from projections.runner import ProjectionRunner

log = logging.getLogger("ledger.api")


def create_app(settings: ServeSettings, open_ledger: Callable[[], Ledger], *,
               read_model: Callable[[Ledger], ReadModel] = ProjectionReads,
               run_projections: bool = True,
               coordinator: Coordinator | None = None,
               recover: Callable[[Ledger], Any] | None = None,
               jobs: BackgroundJobs | None = None,
               open_runner_ledger: Callable[[], Ledger] | None = None) -> Starlette:
    """The HTTP service over the ledger that ``open_ledger`` opens at startup, for the
    decisions and reads, and the projection runner's (``open_runner_ledger``, default
    ``open_ledger``: a ledger of its own, so its connections never queue behind the
    decisions' pool, and a smaller pool), which it runs unless told not to: one runner leads
    per store, the others stand by. With a ``coordinator``, it decides who leads, and
    heartbeats record this instance; ``jobs`` (leader-only background jobs) start once it
    and the runner run, and stop first."""
    def open_runner() -> ProjectionRunner:
        ledger = (open_runner_ledger or open_ledger)()
        if coordinator is None:  # one runner leads per store, by the store's session lock
            return ProjectionRunner(ledger)
        # Led by the coordinator, every batch fenced by its term. The fence's share lock
        # holds off the next term while the batch's transaction is open, so a runner paused
        # there (GC, SIGSTOP, a VM) must lose its session within about one term (HA.md),
        # not the store's default idle bound (5 s).
        idle_s = max(1, math.ceil(coordinator.settings.lease_ttl_ms / 1000))

        def fence(cursor: Any) -> None:
            ledger.dialect.allow_idle(cursor, idle_s)
            coordinator.fenced(cursor)

        return ProjectionRunner(ledger, leadership=coordinator.leadership(), fence=fence)

    runtime = Runtime(settings, open_ledger, read_model,
                      open_runner if run_projections else None, coordinator, recover, jobs)
    webhook = Webhook(runtime)
    queries = Queries(runtime)
    health = Health(runtime)
    orders = Orders(runtime)
    document = openapi.document(list_limit_max=settings.list_limit_max,
                                list_limit_default=settings.list_limit_default)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime.open()
        try:
            yield
        finally:
            # Blocking joins belong off the event loop (it may still be flushing answers).
            await asyncio.to_thread(runtime.close)

    routes = [
        Route("/webhook", webhook.handle, methods=["POST"]),
        Route("/webhook/{portfolio}", webhook.handle, methods=["POST"]),
        Route("/portfolio", queries.portfolio, methods=["GET"]),
        Route("/positions", queries.positions, methods=["GET"]),
        Route("/positions/{position_id}", queries.position, methods=["GET"]),
        Route("/positions/{position_id}/history", queries.position_history, methods=["GET"]),
        Route("/signals", queries.signals, methods=["GET"]),
        Route("/signals/{fingerprint}/trail", queries.signal_trail, methods=["GET"]),
        Route("/statistics", queries.statistics, methods=["GET"]),
        Route("/health", health.health, methods=["GET"]),
        Route("/ready", health.ready, methods=["GET"]),
        Route("/ready/webhook", health.ready_for_webhooks, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        Route("/instances", health.instances, methods=["GET"]),
        Route("/orders", orders.orders, methods=["GET"]),
        Route("/orders/{intent_id}", orders.order, methods=["GET"]),
        Route("/reconciliation", orders.reconciliation, methods=["GET"]),
        Route("/halt", orders.halt, methods=["POST"]),
        Route("/reconcile", orders.reconcile, methods=["POST"]),
        Route("/resume", orders.resume, methods=["POST"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        HTTPException: _http_error,
        Exception: _internal_error,
    }, middleware=[Middleware(RequestIdMiddleware)])
    app.state.runtime = runtime
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # A bug, never an input: inputs are answered 4xx before they reach the ledger. Logged
    # with its traceback; the answer says nothing about the request or the configuration.
    # Answered outside the request-id middleware: the id is echoed here.
    rid = request_id(request)
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc,
              extra={"request_id": rid})
    return error(500, "internal_error", "internal error; see the server log",
                 headers={REQUEST_ID_HEADER: rid} if rid else None)

