"""OpenAlgo over HTTP: ``POST <base_url>/api/v1/<endpoint>`` with JSON carrying ``apikey``.

Why it is written the way it is:

- **OpenAlgo gives no idempotency.** There is no client order id and no tag, so an order
  sent twice is two orders. The adapter therefore sends each order exactly once and says
  precisely what it knows: ``NotSent`` when the connection was refused before a byte of the
  request left (safe to retry), ``Unknown`` when the request left and no readable answer
  came back (it may be placed: the caller reads the books, never resends blindly).
- **A fresh connection per call** (``Connection: close``): a reused keep-alive connection
  that the server had already closed fails *after* sending, which would turn a harmless
  "not sent" into an ``Unknown``. At ten calls a second the handshake costs nothing.
- **Bounded everything**: connect and read timeouts, the size of an answer, the wait for a
  rate-limit token — each named with its unit.
- **The API key is never logged** nor shown by ``repr``; any answer text that echoes it is
  scrubbed before it reaches a result or an exception.
"""

from __future__ import annotations

import http.client
import logging
import math
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import orjson

from brokers.base import (
    SIDES,
    BadAnswer,
    BrokerPosition,
    BrokerRefused,
    BrokerUnavailable,
    Cancelled,
    CancelResult,
    NotSent,
    OrderNotFound,
    OrderRequest,
    OrderState,
    OrderStatus,
    Placed,
    PlaceResult,
    RateLimited,
    Rejected,
    Side,
    Trade,
    Unknown,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
ORDER_ENDPOINTS = frozenset({"placeorder", "cancelorder"})  # logged at INFO, reads at DEBUG
SEMI_AUTO_REASON = "semi-auto: pending approval, not placed"
# OpenAlgo's own defaults: ORDER_RATE_LIMIT and API_RATE_LIMIT are "10 per second", counted
# per client address and per endpoint in a moving one-second window.
OPENALGO_CALLS_PER_S = 10.0
RETRY_AFTER_DEFAULT_S = 1.0  # a 429 that names no wait
RETRY_AFTER_MAX_S = 3600.0  # a longer wait is not believed
READ_CHUNK_BYTES = 65_536
REASON_CHARS_MAX = 500  # of answer text quoted in a result or an error
TIMEOUT_MS_MAX = 120_000
# Order statuses OpenAlgo reports (complete, open, pending, trigger pending, rejected,
# cancelled). Anything not known to be finished is treated as open: still live.
_FINISHED: Mapping[str, OrderStatus] = {
    "complete": "complete", "completed": "complete",
    "rejected": "rejected",
    "cancelled": "cancelled", "canceled": "cancelled",
}


class _NotSent(Exception):
    """Nothing of the request left this process."""


class _NoAnswer(Exception):
    """The request (or part of it) left, and no complete answer came back."""


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any  # the parsed JSON, or None when the answer was not JSON
    text: str  # the start of the answer, for reasons
    retry_after_header: str | None


@dataclass(frozen=True)
class Funds:
    """The account's funds as OpenAlgo reports them (rupees)."""

    available_cash: Decimal
    collateral: Decimal
    m2m_realized: Decimal
    m2m_unrealized: Decimal
    utilised_debits: Decimal


@dataclass(frozen=True)
class SymbolInfo:
    """A symbol as OpenAlgo's master contract (the broker's) lists it.

    ``lot_size`` is what the broker counts an order's quantity in: NFO options list the
    exchange lot (35, 30...), while some brokers list MCX futures with lot size 1, meaning
    their quantity is in lots, not units. ``freeze_quantity``: the most one order may carry.
    """

    symbol: str
    exchange: str
    lot_size: int
    tick_size: Decimal
    freeze_quantity: int | None
    expiry: date | None


class TokenBucket:
    """``calls_per_s`` tokens a second, at most ``burst`` saved up; a wait is bounded.

    Implemented as its equivalent, the generic cell rate algorithm: one "theoretical arrival
    time" and a lock, so concurrent callers each reserve their own slot. A caller whose slot
    is further away than ``wait_ms_max`` is refused (and told how long) instead of queueing
    without bound. The default burst of 1 paces calls evenly: OpenAlgo counts a *moving*
    one-second window, which a burst followed by a full refill would overrun.
    """

    def __init__(self, calls_per_s: float, *, burst: int = 1, wait_ms_max: int = 3_000) -> None:
        if not (0 < calls_per_s <= 1_000) or burst < 1 or not (0 <= wait_ms_max <= 60_000):
            raise ValueError("need 0 < calls_per_s <= 1000, burst >= 1, 0 <= wait_ms_max <= 60000")
        self._interval_s = 1.0 / calls_per_s
        self._tolerance_s = (burst - 1) * self._interval_s
        self._wait_max_s = wait_ms_max / 1000
        self._tat = 0.0  # theoretical arrival time of the next call (monotonic seconds)
        self._lock = threading.Lock()

    def acquire(self) -> float | None:
        """Take a token, sleeping for it if need be. None: granted; else the wait refused."""
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat, now)
            wait_s = tat - self._tolerance_s - now
            if wait_s > self._wait_max_s:
                return wait_s
            self._tat = tat + self._interval_s
        if wait_s > 0:
            time.sleep(wait_s)
        return None


def _bounded_ms(name: str, value: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= TIMEOUT_MS_MAX:
        raise ValueError(f"{name} must be an int in (0, {TIMEOUT_MS_MAX}]")
    return value / 1000


class OpenAlgoBroker:
    """A ``Broker`` on an OpenAlgo server. Thread-safe: no connection is shared."""

    def __init__(self, base_url: str, api_key: str, strategy: str, *,
                 connect_timeout_ms: int = 2_000, read_timeout_ms: int = 5_000,
                 order_calls_per_s: float = OPENALGO_CALLS_PER_S, order_burst: int = 1,
                 read_calls_per_s: float = OPENALGO_CALLS_PER_S,
                 rate_wait_ms_max: int = 3_000, answer_bytes_max: int = 4 * 1024 * 1024,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be http(s)://host[:port][/prefix]")
        if not api_key or not strategy:
            raise ValueError("api_key and strategy are required")
        if not (1_024 <= answer_bytes_max <= 64 * 1024 * 1024):
            raise ValueError("answer_bytes_max must be between 1 KiB and 64 MiB")
        self.base_url = base_url.rstrip("/")
        self.strategy = strategy
        self._api_key = api_key
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/") + API_PREFIX
        self._connect_timeout_s = _bounded_ms("connect_timeout_ms", connect_timeout_ms)
        self._read_timeout_s = _bounded_ms("read_timeout_ms", read_timeout_ms)
        self._answer_bytes_max = answer_bytes_max
        self._ssl = ssl_context or (ssl.create_default_context() if self._https else None)
        self._orders = TokenBucket(order_calls_per_s, burst=order_burst,
                                   wait_ms_max=rate_wait_ms_max)
        self._reads = TokenBucket(read_calls_per_s, wait_ms_max=rate_wait_ms_max)

    def __repr__(self) -> str:
        return f"OpenAlgoBroker(base_url={self.base_url!r}, strategy={self.strategy!r})"

    # --- Orders -----------------------------------------------------------------------------

    def place(self, request: OrderRequest) -> PlaceResult:
        """Send ``request`` once and say what is known about it (see the module's notes)."""
        payload: dict[str, Any] = {
            "apikey": self._api_key,
            "strategy": request.strategy or self.strategy,
            "symbol": request.symbol,
            "exchange": request.exchange,
            "action": request.side,
            "quantity": request.quantity,
            "pricetype": request.price_type,
            "product": request.product,
        }
        if request.price is not None:
            payload["price"] = str(request.price)
        if request.trigger_price is not None:
            payload["trigger_price"] = str(request.trigger_price)
        outcome = self._order_call("placeorder", payload)
        if not isinstance(outcome, _Reply):
            return outcome
        body = outcome.body if isinstance(outcome.body, dict) else {}
        if outcome.status == 200 and body.get("status") == "success":
            if body.get("orderid") not in (None, ""):
                return Placed(str(body["orderid"]), analyze=body.get("mode") == "analyze")
            if body.get("pending_order_id") is not None:
                # Queued in OpenAlgo's Action Center for a human to approve: not placed.
                log.warning("openalgo placeorder queued for approval (semi-auto mode): "
                            "pending_order_id %s", body["pending_order_id"])
                return Rejected(SEMI_AUTO_REASON, http_status=200)
            return Unknown("success without an order id", http_status=200)
        return self._refusal(outcome, "placeorder")

    def cancel(self, order_id: str) -> CancelResult:
        outcome = self._order_call("cancelorder", {"apikey": self._api_key,
                                                   "strategy": self.strategy,
                                                   "orderid": order_id})
        if not isinstance(outcome, _Reply):
            return outcome
        body = outcome.body if isinstance(outcome.body, dict) else {}
        if outcome.status == 200 and body.get("status") == "success":
            return Cancelled(str(body.get("orderid") or order_id))
        return self._refusal(outcome, "cancelorder")

    def _order_call(self, endpoint: str, payload: dict[str, Any]
                    ) -> _Reply | RateLimited | NotSent | Unknown:
        refused_for_s = self._orders.acquire()
        if refused_for_s is not None:
            return RateLimited(retry_after_s=refused_for_s)
        try:
            return self._post(endpoint, payload)
        except _NotSent as error:
            return NotSent(str(error))
        except _NoAnswer as error:
            log.warning("openalgo %s: outcome unknown (%s)", endpoint, error)
            return Unknown(str(error))

    def _refusal(self, reply: _Reply, endpoint: str) -> Rejected | RateLimited | Unknown:
        """A non-success answer to an order call, by what it says about the order."""
        status, reason = reply.status, self._reason(reply)
        if status == 429:
            return RateLimited(retry_after_s=self._retry_after(reply))
        if 400 <= status < 500:  # refused before anything was done
            return Rejected(reason, http_status=status)
        # 5xx; a redirect (OpenAlgo answers an uncaught error with a redirect to /error); a 200
        # that is not a success with an id (OpenAlgo itself turns a broker's failure into a
        # 500, so even a 200 saying "error" is abnormal): processed to an unknown point.
        log.warning("openalgo %s: outcome unknown (HTTP %s)", endpoint, status)
        return Unknown(f"HTTP {status}: {reason}", http_status=status)

    # --- Reads ------------------------------------------------------------------------------

    def order_status(self, order_id: str) -> OrderState:
        body = self._read("orderstatus", {"strategy": self.strategy, "orderid": order_id})
        order = body.get("data")
        if not isinstance(order, dict):
            raise BadAnswer("orderstatus: no order in the answer")
        fills = None if "filled_quantity" in order else self._fills().get(order_id, [])
        return _order_state(order, fills)

    def order_book(self) -> list[OrderState]:
        body = self._read("orderbook", {})
        data = body.get("data")
        orders = data.get("orders") if isinstance(data, dict) else data
        if orders is None:
            orders = []
        if not isinstance(orders, list) or not all(isinstance(o, dict) for o in orders):
            raise BadAnswer("orderbook: orders is not a list of objects")
        fills = self._fills() if any("filled_quantity" not in o for o in orders) else {}
        return [_order_state(o, None if "filled_quantity" in o
                             else fills.get(str(o.get("orderid")), [])) for o in orders]

    def trade_book(self) -> list[Trade]:
        body = self._read("tradebook", {})
        rows = body.get("data") or []
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise BadAnswer("tradebook: data is not a list of objects")
        return [Trade(order_id=_text(r, "orderid"), symbol=_text(r, "symbol"), side=_side(r),
                      quantity=_int(r.get("quantity"), "quantity"),
                      price=_decimal(r.get("average_price"), "average_price"),
                      time=str(r.get("timestamp", ""))) for r in rows]

    def positions(self) -> list[BrokerPosition]:
        body = self._read("positionbook", {})
        rows = body.get("data") or []
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise BadAnswer("positionbook: data is not a list of objects")
        return [BrokerPosition(symbol=_text(r, "symbol"), exchange=_text(r, "exchange"),
                               product=str(r.get("product", "")),
                               quantity=_int(r.get("quantity"), "quantity")) for r in rows]

    def expiry(self, symbol: str, exchange: str, instrumenttype: str) -> list[date]:
        """The expiries OpenAlgo's master contract lists for an underlying, nearest first.

        For cross-checking the ledger's calendar, e.g. ``("BANKNIFTY", "NFO", "options")``
        or ``("GOLDM", "MCX", "futures")``. Weekly expiries are included where they exist.
        """
        body = self._read("expiry", {"symbol": symbol, "exchange": exchange,
                                     "instrumenttype": instrumenttype})
        rows = body.get("data") or []
        if not isinstance(rows, list):
            raise BadAnswer("expiry: data is not a list")
        return sorted(_expiry_date(str(row)) for row in rows)

    def symbol_info(self, symbol: str, exchange: str) -> SymbolInfo:
        """Lot size, tick size, freeze quantity and expiry of one symbol, as the broker has
        them: check before the first order for a symbol what one lot is in the broker's
        quantity (a 404 here also catches a symbol the ledger built wrongly)."""
        data = self._read("symbol", {"symbol": symbol, "exchange": exchange}).get("data")
        if not isinstance(data, dict):
            raise BadAnswer("symbol: no data")
        freeze = data.get("freeze_qty")
        expiry = str(data.get("expiry") or "").strip()
        return SymbolInfo(symbol=_text(data, "symbol"), exchange=_text(data, "exchange"),
                          lot_size=_int(data.get("lotsize"), "lotsize"),
                          tick_size=_decimal(data.get("tick_size") or 0, "tick_size"),
                          freeze_quantity=None if freeze in (None, "", 0) else _int(
                              freeze, "freeze_qty"),
                          expiry=_expiry_date(expiry) if expiry else None)

    def analyze_mode(self) -> bool:
        """Whether OpenAlgo routes orders to its analyzer (sandbox) rather than the broker:
        worth asserting before the first order after pointing the ledger at a server."""
        data = self._read("analyzer", {}).get("data")
        if not isinstance(data, dict) or not isinstance(data.get("analyze_mode"), bool):
            raise BadAnswer("analyzer: no analyze_mode")
        return data["analyze_mode"]

    def funds(self) -> Funds:
        data = self._read("funds", {}).get("data")
        if not isinstance(data, dict):
            raise BadAnswer("funds: no data")
        return Funds(*(_decimal(data.get(key), key) for key in (
            "availablecash", "collateral", "m2mrealized", "m2munrealized", "utiliseddebits")))

    def _fills(self) -> dict[str, list[Trade]]:
        """The trade book by order id: the order book of a live broker has no fill counts."""
        by_order: dict[str, list[Trade]] = {}
        for trade in self.trade_book():
            by_order.setdefault(trade.order_id, []).append(trade)
        return by_order

    def _read(self, endpoint: str, fields: dict[str, Any]) -> dict[str, Any]:
        """A successful answer's body, or the ``BrokerError`` that says why not."""
        refused_for_s = self._reads.acquire()
        if refused_for_s is not None:
            raise BrokerUnavailable(f"{endpoint}: our rate limit", retry_after_s=refused_for_s)
        try:
            reply = self._post(endpoint, {"apikey": self._api_key, **fields})
        except (_NotSent, _NoAnswer) as error:
            raise BrokerUnavailable(f"{endpoint}: {error}") from None
        reason = f"{endpoint}: {self._reason(reply)}"
        if reply.status == 429:
            raise BrokerUnavailable(reason, retry_after_s=self._retry_after(reply),
                                    http_status=429)
        if reply.status == 404 and endpoint == "orderstatus":
            raise OrderNotFound(reason, http_status=404)
        if 400 <= reply.status < 500:
            raise BrokerRefused(reason, http_status=reply.status)
        if reply.status != 200:
            raise BrokerUnavailable(reason, http_status=reply.status)
        if not isinstance(reply.body, dict) or reply.body.get("status") != "success":
            raise BadAnswer(reason)
        return reply.body

    # --- HTTP -------------------------------------------------------------------------------

    def _post(self, endpoint: str, payload: dict[str, Any]) -> _Reply:
        """One POST on a fresh connection; ``_NotSent`` / ``_NoAnswer`` say how it failed."""
        started = time.monotonic()
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, context=self._ssl,
                                               timeout=self._connect_timeout_s)
        else:
            conn = http.client.HTTPConnection(self._host, self._port,
                                              timeout=self._connect_timeout_s)
        try:
            try:
                conn.connect()
            except (OSError, ssl.SSLError) as error:  # refused, unreachable, DNS, handshake
                raise _NotSent(f"connect to {self._host}:{self._port}: "
                               f"{type(error).__name__}: {error}") from None
            reply = self._exchange(conn, endpoint, orjson.dumps(payload))
        finally:
            conn.close()
        log.log(logging.INFO if endpoint in ORDER_ENDPOINTS else logging.DEBUG,
                "openalgo %s -> HTTP %s in %.0f ms", endpoint, reply.status,
                (time.monotonic() - started) * 1000)
        return reply

    def _exchange(self, conn: http.client.HTTPConnection, endpoint: str, body: bytes) -> _Reply:
        deadline = time.monotonic() + self._read_timeout_s
        try:
            sock = conn.sock  # kept: the connection lets go of it once the answer is read
            assert sock is not None
            sock.settimeout(self._read_timeout_s)
            conn.request("POST", f"{self._prefix}/{endpoint}", body=body, headers={
                "Content-Type": "application/json", "Accept": "application/json",
                "Connection": "close", "User-Agent": "portfolio-ledger-brokers"})
            response = conn.getresponse()
            chunks: list[bytes] = []
            size = 0
            while not response.isclosed():  # closed: the whole answer has been read
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise _NoAnswer(f"answer not complete within {self._read_timeout_s:g} s")
                sock.settimeout(remaining_s)
                chunk = response.read(READ_CHUNK_BYTES)
                if not chunk:
                    break
                size += len(chunk)
                if size > self._answer_bytes_max:
                    raise _NoAnswer(f"answer larger than {self._answer_bytes_max} bytes")
                chunks.append(chunk)
        except TimeoutError:
            raise _NoAnswer(f"no answer within {self._read_timeout_s:g} s") from None
        except (OSError, http.client.HTTPException) as error:  # reset, closed, garbled
            raise _NoAnswer(f"{type(error).__name__}: {error}") from None
        raw = b"".join(chunks)
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        text = self._scrub(raw[:REASON_CHARS_MAX].decode("utf-8", "replace"))
        return _Reply(response.status, parsed, text, response.getheader("Retry-After"))

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***")

    def _reason(self, reply: _Reply) -> str:
        body = reply.body
        if isinstance(body, dict) and body.get("message") not in (None, ""):
            return self._scrub(str(body["message"]))[:REASON_CHARS_MAX]
        return reply.text or f"HTTP {reply.status}"

    @staticmethod
    def _retry_after(reply: _Reply) -> float:
        """The server's wait: the body's ``retry_after`` (OpenAlgo), else the header."""
        candidates = (reply.body.get("retry_after") if isinstance(reply.body, dict) else None,
                      reply.retry_after_header)
        for value in candidates:
            try:
                seconds = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if math.isfinite(seconds) and 0 <= seconds <= RETRY_AFTER_MAX_S:
                return seconds
        return RETRY_AFTER_DEFAULT_S


# --- Reading OpenAlgo's answers -------------------------------------------------------------


def _decimal(value: Any, name: str) -> Decimal:
    """OpenAlgo sends money as numbers or strings, depending on the endpoint and broker."""
    if isinstance(value, bool) or value is None:
        raise BadAnswer(f"{name}: not a number: {value!r}")
    try:
        number = Decimal(str(value).strip() or "0")
    except InvalidOperation:
        raise BadAnswer(f"{name}: not a number: {value!r}") from None
    if not number.is_finite():
        raise BadAnswer(f"{name}: not finite: {value!r}")
    return number


def _int(value: Any, name: str) -> int:
    number = _decimal(value, name)
    if number != number.to_integral_value():
        raise BadAnswer(f"{name}: not a whole number: {value!r}")
    return int(number)


def _text(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value in (None, ""):
        raise BadAnswer(f"{name} missing")
    return str(value)


def _side(row: Mapping[str, Any]) -> Side:
    side = str(row.get("action", "")).upper()
    if side not in SIDES:
        raise BadAnswer(f"action: {row.get('action')!r}")
    return side  # type: ignore[return-value]


def _order_state(order: Mapping[str, Any], fills: list[Trade] | None) -> OrderState:
    """An order from the order book or ``orderstatus``; fills from the trade book when the
    order itself carries no filled quantity (live brokers' books do not)."""
    status = _FINISHED.get(str(order.get("order_status", "")).strip().lower(), "open")
    quantity = _int(order.get("quantity"), "quantity")
    stated_average = _decimal(order.get("average_price") or 0, "average_price")
    if fills is None:
        filled = _int(order.get("filled_quantity"), "filled_quantity")
        average = stated_average if filled and stated_average else None
    else:
        filled = sum(t.quantity for t in fills)
        if filled:
            average = sum((t.price * t.quantity for t in fills), Decimal(0)) / filled
        elif status == "complete":
            # Complete, but the trade book has not caught up: the order says it is all done.
            filled, average = quantity, stated_average or None
        else:
            average = None
    return OrderState(order_id=_text(order, "orderid"), status=status, filled_quantity=filled,
                      average_price=average, symbol=_text(order, "symbol"), side=_side(order),
                      quantity=quantity, exchange=str(order.get("exchange", "")))


def _expiry_date(text: str) -> date:
    """OpenAlgo's ``DD-MMM-YY`` (e.g. ``30-DEC-25``), or a four-digit year."""
    for pattern in ("%d-%b-%y", "%d-%b-%Y"):
        try:
            return datetime.strptime(text.strip(), pattern).date()
        except ValueError:
            continue
    raise BadAnswer(f"expiry: not a DD-MMM-YY date: {text!r}")
