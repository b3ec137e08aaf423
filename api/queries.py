"""The books over HTTP: GET /portfolio, /positions, /positions/{id}, /positions/{id}/history,
/signals, /signals/{fingerprint}/trail. Bearer ``LEDGER_API_TOKEN`` when one is set; answered
by the ``ReadModel``, except the audit reads (a signal's trail, the books ``as_of`` a time),
which are always computed from the event log itself.

400 bad query or path parameter (each one named) · 401 token missing or wrong · 404 unknown
portfolio, position or signal · 503 store unavailable or too slow.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import PersistenceError
from starlette.requests import Request
from starlette.responses import Response

from api.auth import bearer_ok
from api.pool import DeadlineExceeded, Overloaded
from api.reads import POSITION_STATUSES
from api.responses import JSONResponse, error
from ledger.application import StoreNotReady, UnknownPortfolio, UnknownPosition, UnknownSignal
from ledger.config import is_portfolio_name
from ledger.signals import Problem, is_fingerprint, parse_instant

if TYPE_CHECKING:
    from api.app import Runtime

INSTRUMENT_CHARS_MAX = 40


class Queries:
    """The read endpoints, bound to one running service."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def _answer(self, request: Request, problems: list[Problem],
                      read: Callable[[], Any]) -> Response:
        if not bearer_ok(request, self.rt.settings.api_token):
            return error(401, "unauthorized", "a valid bearer token is required",
                         headers={"WWW-Authenticate": 'Bearer realm="ledger"'})
        if problems:
            return error(400, "invalid_query", "the query cannot be answered",
                         problems=problems)
        try:
            result = await self.rt.reads_pool.run(
                read, timeout_s=self.rt.settings.request_timeout_ms / 1000)
        except UnknownPosition as e:
            return error(404, "unknown_position", f"no position {e.args[0]!r}")
        except UnknownPortfolio as e:
            return error(404, "unknown_portfolio", f"no portfolio {e.args[0]!r}")
        except UnknownSignal as e:
            return error(404, "unknown_signal", f"no signal {e.args[0]!r}")
        except (PersistenceError, StoreNotReady, DeadlineExceeded, Overloaded):
            return error(503, "store_unavailable", "the event store did not answer in time",
                         headers={"Retry-After": "1"})
        return JSONResponse(result)

    def _portfolio_param(self, request: Request, problems: list[Problem]) -> str | None:
        name = request.query_params.get("portfolio")
        if name is not None and not is_portfolio_name(name):
            problems.append(Problem("portfolio", "is 1-32 of a-z, 0-9, '_' or '-'"))
            return None
        return name

    def _limit_param(self, request: Request, problems: list[Problem]) -> int:
        s = self.rt.settings
        raw = request.query_params.get("limit")
        if raw is None:
            return s.list_limit_default
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= s.list_limit_max:
            problems.append(Problem("limit", f"must be an integer from 1 to {s.list_limit_max}"))
            return s.list_limit_default
        return int(raw)

    async def portfolio(self, request: Request) -> Response:
        problems: list[Problem] = []
        name = self._portfolio_param(request, problems) or "default"
        as_of = request.query_params.get("as_of")
        at = None if as_of is None else parse_instant(as_of, "as_of", problems)
        if at is None:
            return await self._answer(request, problems, partial(self.rt.reads.portfolio, name))
        # The past is in the log only: read models hold the present.
        return await self._answer(request, problems,
                                  partial(self.rt.ledger.portfolio_as_of, name, at))

    async def positions(self, request: Request) -> Response:
        problems: list[Problem] = []
        portfolio = self._portfolio_param(request, problems)
        status = request.query_params.get("status") or None
        if status is not None and status not in POSITION_STATUSES:
            problems.append(Problem("status", f"must be one of {', '.join(POSITION_STATUSES)}"))
        instrument = request.query_params.get("instrument") or None
        if instrument is not None and (len(instrument) > INSTRUMENT_CHARS_MAX
                                       or not instrument.replace("_", "").isalnum()
                                       or not instrument.isascii()):
            problems.append(Problem("instrument", "must be an instrument name like BANK_NIFTY"))
        limit = self._limit_param(request, problems)
        def read() -> dict[str, Any]:
            return {"positions": self.rt.reads.positions(
                portfolio=portfolio, status=status,
                instrument=instrument.upper() if instrument else None, limit=limit)}

        return await self._answer(request, problems, read)

    async def position(self, request: Request) -> Response:
        position_id = request.path_params["position_id"]
        return await self._answer(request, [], partial(self.rt.reads.position, position_id))

    async def position_history(self, request: Request) -> Response:
        position_id = request.path_params["position_id"]
        def read() -> dict[str, Any]:
            return {"position_id": position_id,
                    "events": self.rt.reads.position_history(position_id)}

        return await self._answer(request, [], read)

    async def signals(self, request: Request) -> Response:
        problems: list[Problem] = []
        portfolio = self._portfolio_param(request, problems)
        limit = self._limit_param(request, problems)
        def read() -> dict[str, Any]:
            return {"signals": self.rt.reads.signals(portfolio=portfolio, limit=limit)}

        return await self._answer(request, problems, read)

    async def signal_trail(self, request: Request) -> Response:
        fingerprint = request.path_params["fingerprint"]
        problems = [] if is_fingerprint(fingerprint) else [
            Problem("fingerprint", "must be 64 lowercase hex digits, as a decision's "
                                   "`fingerprint`")]
        return await self._answer(request, problems,
                                  partial(self.rt.ledger.signal_trail, fingerprint))
