"""GET /health (the process answers), /ready (the store answers, is fully migrated, and the
projection tables the reads answer from are within bounds of the log), /ready/webhook (the
same without the projections: what deciding needs), /metrics (Prometheus text). For load
balancers and monitoring; no token needed.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import PersistenceError
from starlette.requests import Request
from starlette.responses import Response

import migrations
from api.auth import bearer_ok
from api.metrics import CONTENT_TYPE
from api.pool import DeadlineExceeded, Overloaded
from api.responses import JSONResponse, error
from api.runtime import Runtime
from coordination import heartbeat
from coordination.settings import CoordinationSettings
from ledger import wire
from ledger.application import StoreNotReady
from projections.runner import lag

# Without a coordinator nobody beats; rows left by earlier runs read as crashed after this.
HEARTBEAT_STALE_MS = CoordinationSettings().heartbeat_stale_ms


class Health:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def health(self, request: Request) -> Response:
        """Alive, and who leads: ``leader`` (this instance's term is current), its
        ``leader_epoch``, and ``coordination``: redis, database (Redis configured but down:
        elected through the store) or single (no Redis configured)."""
        c = self.rt.coordinator
        leads = self.rt.projections is not None and self.rt.projections.leadership.held
        return JSONResponse({
            "status": "alive",
            "instance_id": self.rt.ledger.instance_id,
            "leader": c.is_leader if c is not None else leads,
            "leader_epoch": c.epoch if c is not None else None,
            "coordination": c.mode if c is not None else "single",
        })

    def _instances(self) -> list[dict[str, Any]]:
        c = self.rt.coordinator
        ledger = self.rt.ledger
        stale_ms = c.settings.heartbeat_stale_ms if c is not None else HEARTBEAT_STALE_MS
        with ledger.transaction(read_only=True) as cursor:
            rows = heartbeat.instances(cursor, ledger.dialect.name, stale_ms)
        return [{
            "instance_id": r.instance_id, "hostname": r.hostname, "port": r.port,
            "version": r.version, "started_at": wire.iso(r.started_at),
            "last_heartbeat": wire.iso(r.last_heartbeat), "is_leader": r.is_leader,
            "leader_epoch": r.leader_epoch, "leader_acquired_at": wire.iso(r.leader_acquired_at),
            "mode": r.mode, "status": r.status,
        } for r in rows]

    async def instances(self, request: Request) -> Response:
        """GET /instances: every instance's last heartbeat; ``status`` active (leads),
        standby, stopped (cleanly), or crashed (no heartbeat within the staleness bound)."""
        if not bearer_ok(request, self.rt.settings.api_token):
            return error(401, "unauthorized", "a valid bearer token is required",
                         headers={"WWW-Authenticate": 'Bearer realm="ledger"'})
        try:
            rows = await self.rt.reads_pool.run(
                self._instances, timeout_s=self.rt.settings.request_timeout_ms / 1000)
        except (StoreNotReady, PersistenceError, DeadlineExceeded, Overloaded) as e:
            return error(503, "store_unavailable", f"the store did not answer "
                                                   f"({type(e).__name__})",
                         headers={"Retry-After": "1"})
        return JSONResponse({"instances": rows})

    def _readiness(self) -> dict[str, Any]:
        ledger = self.rt.ledger
        ledger.check_ready()
        backend = ledger.dialect.name
        applied = migrations.applied(ledger)
        readiness: dict[str, Any] = {
            "backend": backend, "schema_version": max(applied, default=None),
            "latest_version": migrations.latest_version(backend),
            "missing_versions": [m.version for m in migrations.pending(ledger, applied)]}
        if not readiness["missing_versions"]:
            behind = lag(ledger)
            readiness["projections"] = {
                "position": behind.position, "head": behind.head,
                "lag_events": behind.events, "lag_seconds": round(behind.seconds, 3),
                "runner": ("leader" if self.rt.projections.leadership.held else "standby")
                if self.rt.projections is not None else "elsewhere"}
        if self.rt.recovery is not None:
            readiness["recovery"] = self.rt.recovery.as_dict()
        return readiness

    async def ready_for_webhooks(self, request: Request) -> Response:
        """Decisions never read the projection tables: a load balancer that routes webhooks
        should ask this, so stale read tables never turn alerts away."""
        return await self.ready(request, projections=False)

    async def ready(self, request: Request, *, projections: bool = True) -> Response:
        try:
            readiness = await self.rt.reads_pool.run(
                self._readiness, timeout_s=self.rt.settings.request_timeout_ms / 1000)
        except (StoreNotReady, PersistenceError, DeadlineExceeded, Overloaded) as e:
            return error(503, "not_ready", f"the event store is unreachable ({type(e).__name__})")
        if readiness["missing_versions"]:
            return error(503, "not_ready", f"the store needs `ledger migrate` (missing schema "
                                           f"versions {readiness['missing_versions']})")
        limits = self.rt.ledger.config.limits
        behind = readiness["projections"]
        if projections and (behind["lag_events"] > limits.projection_lag_events_max
                or behind["lag_seconds"] > limits.projection_lag_s_max):
            return error(503, "projections_behind",
                         f"the projection tables are {behind['lag_events']} events "
                         f"({behind['lag_seconds']} s) behind the log; bounds "
                         f"{limits.projection_lag_events_max} events, "
                         f"{limits.projection_lag_s_max} s", projections=behind)
        return JSONResponse({"status": "ready", **readiness})

    async def metrics(self, request: Request) -> Response:
        return Response(self.rt.metrics.render(), media_type=CONTENT_TYPE)
