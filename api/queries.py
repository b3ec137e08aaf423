"""The books over HTTP: GET /portfolio, /positions, /positions/{id}, /positions/{id}/history,
/signals, /signals/{fingerprint}/trail, /statistics. Bearer ``LEDGER_API_TOKEN`` when one is
set; answered by the ``ReadModel``, except the audit reads (a signal's trail, the books
``as_of`` a bar time or ``known_at`` a recording time), which are always computed from the
event log itself.

Lists page by keyset: an answer with more rows than ``limit`` carries ``next``, an opaque
cursor; the same query with ``?cursor=`` that value gives the rows after them (newest first,
so rows decided meanwhile never shift a page). A cursor names the endpoint and the filters it
was made for, and is refused (400 ``cursor``) with any others.

Read-your-writes: every webhook answer carries the ``log_position`` of its events; a read
given ``?after=N`` waits (at most ``projection_wait_ms_max``, and within the request's time)
until the tables have applied the log up to N, and answers 503 ``projections_behind`` if they
do not get there in time.

400 bad query or path parameter (each one named) · 401 token missing or wrong · 404 unknown
portfolio, position or signal · 503 store unavailable, too slow, or projections behind
``after``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from eventsourcing.persistence import PersistenceError
from starlette.requests import Request
from starlette.responses import Response

from api.auth import bearer_ok
from api.pool import DeadlineExceeded, Overloaded
from api.read_model import DECISIONS, POSITION_STATUSES
from api.responses import JSONResponse, error
from api.runtime import Runtime
from ledger import wire
from ledger.application import StoreNotReady, UnknownPortfolio, UnknownPosition, UnknownSignal
from ledger.config import is_portfolio_name
from ledger.domain import SignalType
from ledger.signals import Problem, is_fingerprint, parse_instant
from projections.read_model import with_projection_rows
from projections.runner import wait_for

INSTRUMENT_CHARS_MAX = 40
LOG_POSITION_DIGITS_MAX = 18  # fits a BIGINT
# A position id is portfolio (32) : instrument (INSTRUMENT_CHARS_MAX) : Long_NN : entry number;
# anything longer, or with a character that is not printable, names no position.
POSITION_ID_CHARS_MAX = 128
AFTER_WAIT_SHARE = 0.75  # of the request's time, for waiting on `after`; the rest reads
CURSOR_CHARS_MAX = 512  # a cursor we give out is under 200 characters
CURSOR_DIGEST_HEX = 16  # characters of the filters' SHA-256 a cursor carries
SIGNAL_TYPES = tuple(t.value for t in SignalType)


class Queries:
    """The read endpoints, bound to one running service."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def _answer(self, request: Request, problems: list[Problem],
                      read: Callable[[], Any]) -> Response:
        if not bearer_ok(request, self.rt.settings.api_token):
            return error(401, "unauthorized", "a valid bearer token is required",
                         headers={"WWW-Authenticate": 'Bearer realm="ledger"'})
        after = self._after_param(request, problems)
        if problems:
            return error(400, "invalid_query", "the query cannot be answered",
                         problems=problems)
        timeout_s = self.rt.settings.request_timeout_ms / 1000
        if after is not None:
            wait_s = min(self.rt.ledger.config.limits.projection_wait_ms_max / 1000,
                         timeout_s * AFTER_WAIT_SHARE)
            if self.rt.projections is not None:
                self.rt.projections.wake()
            try:
                head, reached = await self.rt.reads_pool.run(
                    partial(self._reach, after, wait_s), timeout_s=timeout_s)
            except (PersistenceError, StoreNotReady, DeadlineExceeded, Overloaded):
                return error(503, "store_unavailable", "the event store did not answer in time",
                             headers={"Retry-After": "1"})
            if after > head:
                return error(400, "invalid_query", "the query cannot be answered", problems=[
                    Problem("after", f"is beyond the log's last position ({head})")])
            if not reached:
                return error(503, "projections_behind",
                             f"the tables had not reached log position {after} within "
                             f"{wait_s * 1000:.0f} ms; retry", headers={"Retry-After": "1"},
                             after=after)
        try:
            result = await self.rt.reads_pool.run(read, timeout_s=timeout_s)
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

    def _reach(self, after: int, wait_s: float) -> tuple[int, bool]:
        """(the log's head, whether the tables reached ``after`` within ``wait_s``)."""
        ledger = self.rt.ledger
        head = ledger.recorder.max_notification_id() or 0
        return head, after <= head and wait_for(ledger, after, wait_s)

    def _after_param(self, request: Request, problems: list[Problem]) -> int | None:
        raw = request.query_params.get("after")
        if raw is None:
            return None
        if not raw.isascii() or not raw.isdigit() or len(raw) > LOG_POSITION_DIGITS_MAX:
            problems.append(Problem("after", "must be a log position (a non-negative integer, "
                                             "as the webhook answer's log_position)"))
            return None
        return int(raw)

    def _limit_param(self, request: Request, problems: list[Problem]) -> int:
        s = self.rt.settings
        raw = request.query_params.get("limit")
        if raw is None:
            return s.list_limit_default
        if (not raw.isascii() or not raw.isdigit() or len(raw) > len(str(s.list_limit_max))
                or not 1 <= int(raw) <= s.list_limit_max):
            problems.append(Problem("limit", f"must be an integer from 1 to {s.list_limit_max}"))
            return s.list_limit_default
        return int(raw)

    async def portfolio(self, request: Request) -> Response:
        problems: list[Problem] = []
        name = self._portfolio_param(request, problems) or "default"
        times = {}
        for key in ("as_of", "known_at"):
            raw = request.query_params.get(key)
            times[key] = None if raw is None else parse_instant(raw, key, problems)
        if times["as_of"] is None and times["known_at"] is None:
            return await self._answer(request, problems, partial(self.rt.reads.portfolio, name))
        # The past is in the log only: read models hold the present.
        return await self._answer(request, problems,
                                  partial(self.rt.ledger.portfolio_view, name, **times))

    def _instrument_param(self, request: Request, problems: list[Problem]) -> str | None:
        instrument = request.query_params.get("instrument") or None
        if instrument is not None and (len(instrument) > INSTRUMENT_CHARS_MAX
                                       or not instrument.replace("_", "").isalnum()
                                       or not instrument.isascii()):
            problems.append(Problem("instrument", "must be an instrument name like BANK_NIFTY"))
            return None
        return instrument.upper() if instrument else None

    def _range_params(self, request: Request, problems: list[Problem]
                      ) -> tuple[datetime | None, datetime | None]:
        """``from`` and ``to``: a half-open range of instants, each ISO 8601 with a zone."""
        bounds = []
        for name in ("from", "to"):
            raw = request.query_params.get(name) or None
            bounds.append(None if raw is None else parse_instant(raw, name, problems))
        start, end = bounds
        if start is not None and end is not None and end < start:
            problems.append(Problem("to", "must not be before `from`"))
        return start, end

    @staticmethod
    def _choice(request: Request, name: str, allowed: tuple[str, ...], normal: Callable[[str], str],
                problems: list[Problem]) -> str | None:
        raw = request.query_params.get(name) or None
        if raw is None:
            return None
        if normal(raw) not in allowed:
            problems.append(Problem(name, f"must be one of {', '.join(allowed)}"))
            return None
        return normal(raw)

    async def positions(self, request: Request) -> Response:
        problems: list[Problem] = []
        portfolio = self._portfolio_param(request, problems)
        status = self._choice(request, "status", POSITION_STATUSES, str, problems)
        instrument = self._instrument_param(request, problems)
        entered_from, entered_to = self._range_params(request, problems)
        limit = self._limit_param(request, problems)
        filters = ("positions", portfolio, status, instrument, wire.iso(entered_from),
                   wire.iso(entered_to))
        key = _read_cursor(request, filters, problems)
        before = None
        if key is not None:
            before = _position_key(key)
            if before is None:
                problems.append(Problem("cursor", CURSOR_INVALID))

        def read() -> dict[str, Any]:
            rows = self.rt.reads.positions(
                portfolio=portfolio, status=status, instrument=instrument, limit=limit + 1,
                entered_from=entered_from, entered_to=entered_to, before=before)
            return _page("positions", rows, limit, filters,
                         lambda last: [last["created_at"], last["position_id"]])

        return await self._answer(request, problems, read)

    def _position_id_param(self, request: Request, problems: list[Problem]) -> str:
        position_id: str = request.path_params["position_id"]
        if len(position_id) > POSITION_ID_CHARS_MAX or not position_id.isprintable():
            # Not echoed: it may be long, or hold characters the store refuses (NUL).
            problems.append(Problem("position_id", f"is at most {POSITION_ID_CHARS_MAX} "
                                                   f"printable characters, e.g. "
                                                   f"default:BANK_NIFTY:Long_1:1"))
        return position_id

    async def position(self, request: Request) -> Response:
        problems: list[Problem] = []
        position_id = self._position_id_param(request, problems)
        return await self._answer(request, problems,
                                  partial(self.rt.reads.position, position_id))

    async def position_history(self, request: Request) -> Response:
        problems: list[Problem] = []
        position_id = self._position_id_param(request, problems)
        def read() -> dict[str, Any]:
            return {"position_id": position_id,
                    "events": self.rt.reads.position_history(position_id)}

        return await self._answer(request, problems, read)

    async def signals(self, request: Request) -> Response:
        problems: list[Problem] = []
        portfolio = self._portfolio_param(request, problems)
        decision = self._choice(request, "decision", DECISIONS, str, problems)
        signal_type = self._choice(request, "type", SIGNAL_TYPES, str.upper, problems)
        instrument = self._instrument_param(request, problems)
        signal_from, signal_to = self._range_params(request, problems)
        limit = self._limit_param(request, problems)
        filters = ("signals", portfolio, decision, signal_type, instrument,
                   wire.iso(signal_from), wire.iso(signal_to))
        key = _read_cursor(request, filters, problems)
        before = None
        if key is not None:
            if len(key) == 1 and type(key[0]) is int and 0 < key[0] < 10 ** LOG_POSITION_DIGITS_MAX:
                before = key[0]
            else:
                problems.append(Problem("cursor", CURSOR_INVALID))

        def read() -> dict[str, Any]:
            rows = self.rt.reads.signals(
                portfolio=portfolio, decision=decision, signal_type=signal_type,
                instrument=instrument, signal_from=signal_from, signal_to=signal_to,
                before=before, limit=limit + 1)
            return _page("signals", rows, limit, filters, lambda last: [last["id"]])

        return await self._answer(request, problems, read)

    async def statistics(self, request: Request) -> Response:
        problems: list[Problem] = []
        portfolio = self._portfolio_param(request, problems)
        return await self._answer(request, problems,
                                  partial(self.rt.reads.statistics, portfolio=portfolio))

    async def signal_trail(self, request: Request) -> Response:
        fingerprint = request.path_params["fingerprint"]
        problems = [] if is_fingerprint(fingerprint) else [
            Problem("fingerprint", "must be 64 lowercase hex digits, as a decision's "
                                   "`fingerprint`")]
        def read() -> dict[str, Any]:
            ledger = self.rt.ledger
            return with_projection_rows(ledger, ledger.signal_trail(fingerprint))

        return await self._answer(request, problems, read)


# -- cursors -------------------------------------------------------------------------------

CURSOR_INVALID = ("is not a cursor this endpoint gave out: pass an answer's `next` as it was, "
                  "with the same filters")


def _digest(filters: tuple[str | None, ...]) -> str:
    text = json.dumps(filters, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:CURSOR_DIGEST_HEX]


def make_cursor(filters: tuple[str | None, ...], key: list[Any]) -> str:
    """Opaque to clients: the sort key of a page's last row, bound to the query's filters
    (its endpoint first) by a digest."""
    text = json.dumps([_digest(filters), *key], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _read_cursor(request: Request, filters: tuple[str | None, ...],
                 problems: list[Problem]) -> list[Any] | None:
    """The sort key a ``cursor`` carries (None: no cursor, or a Problem appended)."""
    raw = request.query_params.get("cursor")
    if raw is None:
        return None
    try:
        if len(raw) > CURSOR_CHARS_MAX or not raw.isascii():
            raise ValueError(raw)
        decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        problems.append(Problem("cursor", CURSOR_INVALID))
        return None
    if not isinstance(decoded, list) or len(decoded) < 2 or decoded[0] != _digest(filters):
        problems.append(Problem("cursor", CURSOR_INVALID))
        return None
    return decoded[1:]


def _position_key(key: list[Any]) -> tuple[str, str] | None:
    """(created_at, position_id) from a positions cursor, or None if it is not one."""
    if len(key) != 2 or not all(isinstance(k, str) for k in key):
        return None
    created_at, position_id = key
    if len(position_id) > POSITION_ID_CHARS_MAX or not position_id.isprintable():
        return None
    problems: list[Problem] = []
    if parse_instant(created_at, "cursor", problems) is None:
        return None
    return created_at, position_id


def _page(name: str, rows: list[dict[str, Any]], limit: int, filters: tuple[str | None, ...],
          key: Callable[[dict[str, Any]], list[Any]]) -> dict[str, Any]:
    """``limit`` rows (``limit + 1`` were read), and ``next`` when there are more."""
    page: dict[str, Any] = {name: rows[:limit]}
    if len(rows) > limit:
        page["next"] = make_cursor(filters, key(rows[limit - 1]))
    return page
