"""GET /health (the process answers), /ready (the store answers and is fully migrated),
/metrics (Prometheus text). For load balancers and monitoring; no token needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import PersistenceError
from starlette.requests import Request
from starlette.responses import Response

import migrations
from api.metrics import CONTENT_TYPE
from api.pool import DeadlineExceeded, Overloaded
from api.responses import JSONResponse, error
from ledger.application import StoreNotReady

if TYPE_CHECKING:
    from api.app import Runtime


class Health:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "alive", "instance_id": self.rt.ledger.instance_id})

    def _readiness(self) -> dict[str, Any]:
        ledger = self.rt.ledger
        ledger.check_ready()
        backend = ledger.store.backend
        expected = {migrations.EVENT_STORE[0], *(m.version for m in migrations.available(backend))}
        applied = migrations.applied(ledger)
        return {"backend": backend, "schema_version": max(applied, default=None),
                "latest_version": migrations.latest_version(backend),
                "missing_versions": sorted(expected - applied)}

    async def ready(self, request: Request) -> Response:
        try:
            readiness = await self.rt.reads_pool.run(
                self._readiness, timeout_s=self.rt.settings.request_timeout_ms / 1000)
        except (StoreNotReady, PersistenceError, DeadlineExceeded, Overloaded) as e:
            return error(503, "not_ready", f"the event store is unreachable ({type(e).__name__})")
        if readiness["missing_versions"]:
            return error(503, "not_ready", f"the store needs `ledger migrate` (missing schema "
                                           f"versions {readiness['missing_versions']})")
        return JSONResponse({"status": "ready", **readiness})

    async def metrics(self, request: Request) -> Response:
        return Response(self.rt.metrics.render(), media_type=CONTENT_TYPE)
