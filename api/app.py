"""The Starlette application: routes, and the runtime they share (ledger, worker pools,
metrics), opened at startup and closed at shutdown by the lifespan.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import openapi
from api.health import Health
from api.metrics import Metrics
from api.pool import WorkerPool
from api.queries import Queries
from api.reads import ReadModel
from api.responses import JSONResponse, error
from api.settings import ServeSettings
from api.webhook import Webhook
from ledger.application import Ledger
from projections.reads import ProjectionReads
from projections.runner import ProjectionRunner

log = logging.getLogger("ledger.api")


class Runtime:
    """What the endpoints share. Opened by the lifespan; closed after in-flight work ends."""

    def __init__(self, settings: ServeSettings, open_ledger: Callable[[], Ledger],
                 read_model: Callable[[Ledger], ReadModel], run_projections: bool) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._open_ledger = open_ledger
        self._read_model = read_model
        self._run_projections = run_projections
        self.projections: ProjectionRunner | None = None  # None: another process projects
        self._ledger: Ledger | None = None
        self._reads: ReadModel | None = None
        self._decisions: WorkerPool | None = None
        self._reads_pool: WorkerPool | None = None

    @property
    def ledger(self) -> Ledger:
        assert self._ledger is not None, "runtime not opened"
        return self._ledger

    @property
    def reads(self) -> ReadModel:
        assert self._reads is not None, "runtime not opened"
        return self._reads

    @property
    def decisions(self) -> WorkerPool:
        assert self._decisions is not None, "runtime not opened"
        return self._decisions

    @property
    def reads_pool(self) -> WorkerPool:
        assert self._reads_pool is not None, "runtime not opened"
        return self._reads_pool

    def open(self) -> None:
        s = self.settings
        self._ledger = self._open_ledger()
        self._reads = self._read_model(self._ledger)
        self._decisions = WorkerPool("decide", s.decision_threads, s.queue_depth_max)
        # Reads queue only as deep as their threads: a scan must not hold back the next one.
        self._reads_pool = WorkerPool("read", s.read_threads, s.read_threads)
        ledger = self._ledger
        decisions = self._decisions
        self.metrics.watch(conflicts=lambda: ledger.conflicts_retried,
                           outstanding=lambda: decisions.outstanding)
        self._record_instance(started=True)
        if self._run_projections:
            # Its own Ledger: its connections never queue behind the decisions' pool.
            self.projections = ProjectionRunner(self._open_ledger())
            self.projections.start()
        self.metrics.watch_projections(ledger, self.projections)

    def _record_instance(self, *, started: bool) -> None:
        from importlib.metadata import version

        try:
            if started:
                self.ledger.record_instance_started(self.settings.port or None,
                                                    version("portfolio-ledger"))
            else:
                self.ledger.record_instance_stopped()
        except Exception as e:  # instance_metadata is informative; serving is what matters
            log.warning("could not record this instance %s: %s",
                        "starting" if started else "stopping", e)

    def close(self) -> None:
        """Let running decisions commit (bounded), then release the store's connections."""
        wait_s = self.settings.shutdown_wait_ms / 1000
        for pool in (self._decisions, self._reads_pool):
            if pool is not None and not pool.shutdown(timeout_s=wait_s):
                log.warning("%s: calls still running after %d ms; closing the store under "
                            "them (each is one transaction: none commits half)", pool.name,
                            self.settings.shutdown_wait_ms)
        if self._ledger is not None:
            self._record_instance(started=False)
        if self.projections is not None:
            self.projections.stop(timeout_s=wait_s)
            self.projections.ledger.close()
        if self._ledger is not None:
            self._ledger.close()


def create_app(settings: ServeSettings, open_ledger: Callable[[], Ledger], *,
               read_model: Callable[[Ledger], ReadModel] = ProjectionReads,
               run_projections: bool = True) -> Starlette:
    """The HTTP service over the ledger that ``open_ledger`` opens at startup (called once
    for the decisions and once for the projection runner, which it runs unless told not to:
    one runner leads per store, the others stand by)."""
    runtime = Runtime(settings, open_ledger, read_model, run_projections)
    webhook = Webhook(runtime)
    queries = Queries(runtime)
    health = Health(runtime)
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
        Route("/health", health.health, methods=["GET"]),
        Route("/ready", health.ready, methods=["GET"]),
        Route("/ready/webhook", health.ready_for_webhooks, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        HTTPException: _http_error,
        Exception: _internal_error,
    })
    app.state.runtime = runtime
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # A bug, never an input: inputs are answered 4xx before they reach the ledger. Logged
    # with its traceback; the answer says nothing about the request or the configuration.
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(500, "internal_error", "internal error; see the server log")

