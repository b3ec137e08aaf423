"""The order desk over HTTP: GET /orders, /orders/{intent_id}, /reconciliation; POST /halt,
/resume (the kill switch). Bearer ``LEDGER_API_TOKEN`` when one is set, for reads and the
switch alike (docs/ORDERS.md).

Orders are listed from the ``orders`` table (oldest decision first); one order's answer
adds its events, read from its own stream. The switch is written to the desk's stream; the
leader's desk reads it before every send.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import PersistenceError
from starlette.requests import Request
from starlette.responses import Response

from api.auth import bearer_ok
from api.pool import DeadlineExceeded, Overloaded
from api.responses import JSONResponse, error
from api.runtime import Runtime
from ledger import wire
from ledger.application import StoreNotReady
from ledger.domain import Desk, Order
from ledger.presenters import event_type, facts
from ledger.signals import Problem
from projections.rows import order_row
from projections.schema import ORDERS
from projections.tables import TableStore

DESK = "orders"
STATES = ("intended", "sent", "unknown", "not_placed", "acknowledged", "partially_filled",
          "filled", "rejected")
REASON_CHARS_MAX = 200


class Orders:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def _run(self, request: Request, work: Any) -> Response:
        if not bearer_ok(request, self.rt.settings.api_token):
            return error(401, "unauthorized", "a valid bearer token is required",
                         headers={"WWW-Authenticate": 'Bearer realm="ledger"'})
        try:
            result = await self.rt.reads_pool.run(
                work, timeout_s=self.rt.settings.request_timeout_ms / 1000)
        except LookupError as e:
            return error(404, "unknown_order", f"no order {e.args[0]!r}")
        except (PersistenceError, StoreNotReady, DeadlineExceeded, Overloaded):
            return error(503, "store_unavailable", "the event store did not answer in time",
                         headers={"Retry-After": "1"})
        return JSONResponse(result)

    async def orders(self, request: Request) -> Response:
        state = request.query_params.get("state")
        if state is not None and state not in STATES:
            return error(400, "invalid_query", "the query cannot be answered", problems=[
                Problem("state", f"must be one of {', '.join(STATES)}")])
        limit = self.rt.settings.list_limit_max

        def read() -> dict[str, Any]:
            ledger = self.rt.ledger
            tables = TableStore(ledger)
            where, params = ("", ()) if state is None else (f"WHERE status = {tables.p} ",
                                                           (state,))
            with ledger.transaction(read_only=True) as cursor:
                rows = tables.read(cursor, ORDERS, f"{where}ORDER BY decided_at DESC, "
                                   f"intent_id LIMIT {int(limit)}", params)
            return {"orders": rows}

        return await self._run(request, read)

    async def order(self, request: Request) -> Response:
        intent = request.path_params["intent_id"]
        if len(intent) > 64 or not intent.replace("-", "").isalnum():
            return error(404, "unknown_order", "no such order")

        def read() -> dict[str, Any]:
            ledger = self.rt.ledger
            try:
                order = ledger.repository.get(Order.create_id(intent))
            except AggregateNotFoundError:
                raise LookupError(intent) from None
            events = [{"version": e.originator_version, "type": event_type(e),
                       "recorded_at": wire.iso(e.timestamp), "event": facts(e)}
                      for e in ledger.events.get(Order.create_id(intent))]
            return {**order_row(order), "events": events}

        return await self._run(request, read)

    def _desk(self) -> Desk:
        try:
            return self.rt.ledger.repository.get(Desk.create_id(DESK))
        except AggregateNotFoundError:
            return Desk(name=DESK)

    async def reconciliation(self, request: Request) -> Response:
        def read() -> dict[str, Any]:
            desk = self._desk()
            return {"reconciled_at": wire.iso(desk.reconciled_at), "findings": desk.findings,
                    "halted": desk.halted}

        return await self._run(request, read)

    async def reconcile(self, request: Request) -> Response:
        """POST /reconcile: compare with the broker now (this instance's broker adapter)."""
        desk = self.rt.desk() if self.rt.desk is not None else None
        if desk is None:
            return error(503, "not_the_desk", "the order desk runs on the instance that holds "
                         "the orders term; ask it (GET /health on each says which leads)",
                         headers={"Retry-After": "1"})
        return await self._run(request, lambda: {"findings": desk.reconcile()})

    async def halt(self, request: Request) -> Response:
        reason = (request.query_params.get("reason") or "operator")[:REASON_CHARS_MAX]

        def write() -> dict[str, Any]:
            desk = self._desk()
            desk.halt(reason, datetime.now(UTC))
            self.rt.ledger.save(desk)
            return {"halted": True, "reason": desk.reason}

        return await self._run(request, write)

    async def resume(self, request: Request) -> Response:
        def write() -> dict[str, Any]:
            desk = self._desk()
            desk.resume(datetime.now(UTC))
            self.rt.ledger.save(desk)
            return {"halted": False}

        return await self._run(request, write)


__all__ = ["STATES", "Orders"]
