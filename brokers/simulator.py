"""A simulated OpenAlgo: a real HTTP server (Starlette under Hypercorn, in a thread) speaking
the same contract as OpenAlgo's ``/api/v1`` for the endpoints the adapters use. The tests and
`ledger chaos` point the OpenAlgo adapter at it; it ships with the package so that a drill can
run from an installed ledger, not only from a checkout.

It keeps an order book, a trade book and a position book, counts every ``placeorder`` it
received and every order it placed (the tests' ground truth for "placed exactly once"), and
takes faults for the next call(s) of an endpoint: latency past the client's timeout after
placing, 500 before or after placing, 429 with ``retry_after``, a 400 refusal, fills in
parts, semi-auto queueing, a broker-side rejection, a resting (unfilled) order, any raw
answer. Requests are validated like OpenAlgo's marshmallow schemas (an unknown field is a
400, a wrong key a 403). Positions can be planted for reconciliation tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

STOP_TIMEOUT_S = 10
GRACEFUL_TIMEOUT_S = 0.5  # a delayed answer still pending at shutdown is dropped
DEFAULT_PRICE = Decimal("100")

VALID_EXCHANGES = ("NSE", "NFO", "CDS", "BSE", "BFO", "BCD", "MCX", "NCDEX", "NCO",
                   "NSE_INDEX", "BSE_INDEX", "CRYPTO")
F_AND_O_EXCHANGES = ("NFO", "BFO", "MCX", "CDS", "BCD", "NCDEX", "NCO", "CRYPTO")

# endpoint -> {field: (required, validator)}; as OpenAlgo's schemas (unknown fields refused)
_STR = "str"
_NUMBER = "number"
_POSITIVE = "positive"
_INT = "int"


def _one_of(*choices: str) -> tuple[str, ...]:
    return choices


SCHEMAS: dict[str, dict[str, tuple[bool, Any]]] = {
    "placeorder": {
        "apikey": (True, _STR), "strategy": (True, _STR),
        "exchange": (True, VALID_EXCHANGES), "symbol": (True, _STR),
        "action": (True, _one_of("BUY", "SELL", "buy", "sell")),
        "quantity": (True, _POSITIVE),
        "pricetype": (False, _one_of("MARKET", "LIMIT", "SL", "SL-M")),
        "product": (False, _one_of("MIS", "NRML", "CNC")),
        "price": (False, _NUMBER), "trigger_price": (False, _NUMBER),
        "disclosed_quantity": (False, _INT), "underlying_ltp": (False, _NUMBER),
    },
    "cancelorder": {"apikey": (True, _STR), "strategy": (True, _STR), "orderid": (True, _STR)},
    "orderstatus": {"apikey": (True, _STR), "strategy": (True, _STR), "orderid": (True, _STR)},
    "orderbook": {"apikey": (True, _STR)},
    "tradebook": {"apikey": (True, _STR)},
    "positionbook": {"apikey": (True, _STR)},
    "funds": {"apikey": (True, _STR)},
    "analyzer": {"apikey": (True, _STR)},
    "symbol": {"apikey": (True, _STR), "symbol": (True, _STR),
               "exchange": (True, VALID_EXCHANGES)},
    "expiry": {"apikey": (True, _STR), "symbol": (True, _STR),
               "exchange": (True, F_AND_O_EXCHANGES),
               "instrumenttype": (True, _one_of("futures", "options"))},
}
ENDPOINTS = tuple(SCHEMAS)


# --- Faults: each is consumed by one call of the endpoint it was injected for -------------


@dataclass(frozen=True)
class Delay:
    """Place the order, then answer only after ``ms`` (the classic unknown outcome)."""

    ms: int


@dataclass(frozen=True)
class ServerError:
    """Answer 500; ``after_placing`` decides whether the order was placed first."""

    after_placing: bool


@dataclass(frozen=True)
class TooMany:
    """429, as OpenAlgo's rate limiter answers it (before anything is processed)."""

    retry_after_s: float = 60


@dataclass(frozen=True)
class Refuse:
    """A refusal with this status (400 by default), nothing placed."""

    message: str
    status: int = 400


@dataclass(frozen=True)
class PartialFills:
    """Fill the order in parts (quantities), at these prices; complete if they add up."""

    parts: tuple[int, ...]
    prices: tuple[Decimal, ...] | None = None


@dataclass(frozen=True)
class SemiAuto:
    """OpenAlgo in semi-auto mode: queued for approval in the Action Center, not placed."""


@dataclass(frozen=True)
class BrokerRejects:
    """The broker takes the order, gives it an id, and its book shows it rejected."""

    reason: str = "RMS: margin exceeds"


@dataclass(frozen=True)
class Resting:
    """The order is placed and rests open, unfilled."""


@dataclass(frozen=True)
class Raw:
    """Any answer: ``status``, body bytes, content type; ``place`` first if asked."""

    status: int
    body: bytes = b""
    content_type: str = "text/html"
    place: bool = False
    headers: dict[str, str] = field(default_factory=dict)


Fault = Delay | ServerError | TooMany | Refuse | PartialFills | SemiAuto | BrokerRejects \
    | Resting | Raw


@dataclass
class _Order:
    orderid: str
    symbol: str
    exchange: str
    action: str
    quantity: int
    price: Decimal
    trigger_price: Decimal
    pricetype: str
    product: str
    strategy: str
    status: str
    timestamp: datetime
    rejection_reason: str = ""


@dataclass
class _Trade:
    orderid: str
    symbol: str
    exchange: str
    product: str
    action: str
    quantity: int
    price: Decimal
    timestamp: datetime


def _number(value: Any) -> Decimal | None:
    """As marshmallow's Float: numbers and numeric strings; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except ArithmeticError:
            return None
        return number if number.is_finite() else None
    return None


def validate(endpoint: str, data: Any) -> dict[str, list[str]]:
    """Marshmallow-style error messages by field; empty when the request is valid."""
    if not isinstance(data, dict):
        return {"_schema": ["Invalid input type."]}
    schema = SCHEMAS[endpoint]
    errors: dict[str, list[str]] = {}
    for name in data:
        if name not in schema:
            errors[name] = ["Unknown field."]
    for name, (required, rule) in schema.items():
        if name not in data:
            if required:
                errors[name] = ["Missing data for required field."]
            continue
        value = data[name]
        if rule == _STR:
            if not isinstance(value, str) or (name == "apikey" and not 1 <= len(value) <= 256):
                errors[name] = ["Not a valid string."]
        elif isinstance(rule, tuple):
            if value not in rule:
                errors[name] = [f"Must be one of: {', '.join(rule)}."]
        else:
            number = _number(value)
            if number is None or (rule == _INT and number != int(number)):
                errors[name] = ["Not a valid number."]
            elif rule == _POSITIVE and number <= 0:
                errors[name] = ["Quantity must be a positive number."]
            elif rule in (_NUMBER, _INT) and number < 0:
                errors[name] = ["Must be a non-negative number."]
    if endpoint == "placeorder" and "quantity" not in errors and "quantity" in data:
        quantity = _number(data["quantity"])
        if quantity is not None and data.get("exchange") != "CRYPTO" and quantity != int(quantity):
            errors["quantity"] = [f"Fractional quantity ({data['quantity']}) is not allowed "
                                  "for non-crypto exchanges."]
    return errors


def _money(value: Decimal) -> float:
    return float(value)


class FakeOpenAlgo:
    """The server's state and its Starlette app. Thread-safe: tests read it while it serves."""

    def __init__(self, api_key: str = "fake-openalgo-key", *, analyze: bool = False) -> None:
        self.api_key = api_key
        self.analyze = analyze  # answer as OpenAlgo's analyzer (sandbox) mode does
        self._lock = threading.Lock()
        self._faults: dict[str, deque[Fault]] = {name: deque() for name in ENDPOINTS}
        self._received: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
        self._orders: dict[str, _Order] = {}
        self._trades: list[_Trade] = []
        self._planted: dict[tuple[str, str, str], int] = {}
        self._prices: dict[str, Decimal] = {}
        self._expiries: dict[tuple[str, str, str], list[str]] = {}
        self._symbols: dict[tuple[str, str], dict[str, Any]] = {}
        self._funds = {"availablecash": "500000.00", "collateral": "0.00",
                       "m2mrealized": "0.00", "m2munrealized": "0.00",
                       "utiliseddebits": "0.00"}
        self._ids = itertools.count(1)
        self._pending_ids = itertools.count(1)
        self.app = Starlette(routes=[Route(f"/api/v1/{name}", self._endpoint(name),
                                           methods=["POST"]) for name in ENDPOINTS])

    # --- What tests arrange ---------------------------------------------------------------

    def inject(self, endpoint: str, *faults: Fault) -> None:
        """Faults for the next calls of ``endpoint``, one per call, in order."""
        with self._lock:
            self._faults[endpoint].extend(faults)

    def set_price(self, symbol: str, price: Decimal) -> None:
        with self._lock:
            self._prices[symbol] = price

    def set_expiries(self, symbol: str, exchange: str, instrumenttype: str,
                     dates: list[str]) -> None:
        with self._lock:
            self._expiries[(symbol, exchange, instrumenttype)] = list(dates)

    def set_symbol(self, symbol: str, exchange: str, *, lotsize: int, freeze_qty: int = 0,
                   tick_size: float = 0.05, expiry: str = "") -> None:
        """A master-contract row, as the broker lists it (lot size 1: quantity in lots)."""
        kind = symbol[-2:] if symbol[-2:] in ("CE", "PE") else (
            "FUT" if symbol.endswith("FUT") else "")
        with self._lock:
            self._symbols[(symbol, exchange)] = {
                "symbol": symbol, "exchange": exchange, "lotsize": lotsize,
                "freeze_qty": freeze_qty, "tick_size": tick_size, "expiry": expiry,
                "name": symbol, "brsymbol": symbol, "brexchange": exchange, "token": "0",
                "instrumenttype": kind, "strike": 0, "id": len(self._symbols) + 1}

    def plant_position(self, symbol: str, exchange: str, product: str, quantity: int) -> None:
        """A position the broker holds that no order of ours made (for reconciliation)."""
        with self._lock:
            key = (symbol, exchange, product)
            self._planted[key] = self._planted.get(key, 0) + quantity

    # --- What tests check -----------------------------------------------------------------

    def received(self, endpoint: str = "placeorder") -> list[float]:
        """``time.monotonic()`` of every call of ``endpoint`` received, valid or not."""
        with self._lock:
            return list(self._received[endpoint])

    @property
    def placed_count(self) -> int:
        """Orders this server placed (an id was given and the order is in the book)."""
        with self._lock:
            return len(self._orders)

    def order(self, orderid: str) -> _Order:
        with self._lock:
            return self._orders[orderid]

    def orderids(self) -> list[str]:
        with self._lock:
            return list(self._orders)

    # --- The server -----------------------------------------------------------------------

    def _endpoint(self, name: str) -> Any:
        """The Starlette endpoint for ``name``: count, take the next fault, answer."""
        async def handle(request: Request) -> Response:
            with self._lock:
                self._received[name].append(time.monotonic())
                fault = self._faults[name].popleft() if self._faults[name] else None
            try:
                data = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                return self._error("Invalid JSON", 400)
            return await self._answer(name, data, fault)

        return handle

    def _error(self, message: Any, status: int) -> JSONResponse:
        body: dict[str, Any] = {"status": "error", "message": message}
        if self.analyze:
            body["mode"] = "analyze"
        return JSONResponse(body, status_code=status)

    def _ok(self, body: dict[str, Any]) -> JSONResponse:
        body = {"status": "success", **body}
        if self.analyze:
            body["mode"] = "analyze"
        return JSONResponse(body)

    async def _answer(self, name: str, data: Any, fault: Fault | None) -> Response:
        if isinstance(fault, TooMany):  # the limiter runs before the endpoint
            return JSONResponse({"status": "error", "message": "Rate limit exceeded. Please "
                                 "slow down your requests.", "retry_after": fault.retry_after_s},
                                status_code=429)
        key_ok = isinstance(data, dict) and data.get("apikey") == self.api_key
        if name == "placeorder" and isinstance(fault, SemiAuto) and key_ok:
            # OpenAlgo queues before it validates, once the key is known.
            return JSONResponse({"status": "success", "mode": "semi_auto",
                                 "message": "Order queued for approval in Action Center",
                                 "pending_order_id": next(self._pending_ids)})
        errors = validate(name, data)
        if errors:
            # placeorder and friends quote str(err.messages); account reads send the dict.
            message = errors if name in ("orderbook", "tradebook", "positionbook", "funds",
                                         "expiry", "analyzer", "symbol") else str(errors)
            return self._error(message, 400)
        if not key_ok:
            return self._error("Invalid openalgo apikey", 403)
        if isinstance(fault, Refuse):
            return self._error(fault.message, fault.status)
        if isinstance(fault, ServerError) and not fault.after_placing:
            return self._error("Failed to place order due to internal error", 500)
        if isinstance(fault, Raw) and not fault.place:
            return Response(fault.body, status_code=fault.status, media_type=fault.content_type,
                            headers=fault.headers)
        handler = getattr(self, f"_on_{name}")
        answer: Response = handler(data, fault)
        if isinstance(fault, ServerError):
            return self._error("Failed to place order due to internal error", 500)
        if isinstance(fault, Raw):
            return Response(fault.body, status_code=fault.status, media_type=fault.content_type,
                            headers=fault.headers)
        if isinstance(fault, Delay):
            await asyncio.sleep(fault.ms / 1000)
        return answer

    # Endpoint handlers: (validated request, fault) -> answer.

    def _on_placeorder(self, data: dict[str, Any], fault: Fault | None) -> Response:
        quantity = int(_number(data["quantity"]) or 0)
        pricetype = data.get("pricetype", "MARKET")
        limit = _number(data.get("price", 0)) or Decimal(0)
        now = datetime.now()
        with self._lock:
            orderid = f"{now:%y%m%d}{next(self._ids):09d}"
            fill_price = limit if pricetype in ("LIMIT", "SL") and limit else \
                self._prices.get(data["symbol"], DEFAULT_PRICE)
            order = _Order(orderid=orderid, symbol=data["symbol"], exchange=data["exchange"],
                           action=data["action"].upper(), quantity=quantity, price=limit,
                           trigger_price=_number(data.get("trigger_price", 0)) or Decimal(0),
                           pricetype=pricetype, product=data.get("product", "MIS"),
                           strategy=data["strategy"], status="complete", timestamp=now)
            self._orders[orderid] = order
            if isinstance(fault, BrokerRejects):
                order.status, order.rejection_reason = "rejected", fault.reason
            elif isinstance(fault, Resting):
                order.status = "open"
            else:
                parts = fault.parts if isinstance(fault, PartialFills) else (quantity,)
                prices = (fault.prices if isinstance(fault, PartialFills) and fault.prices
                          else (fill_price,) * len(parts))
                for part, price in zip(parts, prices, strict=True):
                    self._trades.append(_Trade(orderid, order.symbol, order.exchange,
                                               order.product, order.action, part, price, now))
                if sum(parts) < quantity:
                    order.status = "open"
        return self._ok({"orderid": orderid})

    def _on_cancelorder(self, data: dict[str, Any], fault: Fault | None) -> Response:
        with self._lock:
            order = self._orders.get(data["orderid"])
            if order is None:
                return self._error(f"Order {data['orderid']} not found", 404)
            if order.status != "open":
                return self._error(f"Cannot cancel order in {order.status} status", 400)
            order.status = "cancelled"
        return self._ok({"orderid": data["orderid"]})

    def _filled(self, orderid: str) -> tuple[int, Decimal]:
        trades = [t for t in self._trades if t.orderid == orderid]
        quantity = sum(t.quantity for t in trades)
        value = sum((t.price * t.quantity for t in trades), Decimal(0))
        return quantity, (value / quantity if quantity else Decimal(0))

    def _order_row(self, order: _Order) -> dict[str, Any]:
        """As OpenAlgo's order book: a live broker's row has no fill counts; the analyzer's
        (sandbox) row has ``filled_quantity`` and ``average_price``."""
        row: dict[str, Any] = {
            "action": order.action, "symbol": order.symbol, "exchange": order.exchange,
            "orderid": order.orderid, "product": order.product,
            "quantity": str(order.quantity),
            "price": 0.0 if order.pricetype == "MARKET" else _money(order.price),
            "pricetype": order.pricetype, "order_status": order.status,
            "trigger_price": _money(order.trigger_price),
            "timestamp": f"{order.timestamp:%d-%b-%Y %H:%M:%S}",
        }
        if self.analyze:
            filled, average = self._filled(order.orderid)
            row.update(filled_quantity=filled, pending_quantity=order.quantity - filled,
                       average_price=_money(average), rejection_reason=order.rejection_reason)
        return row

    def _on_orderstatus(self, data: dict[str, Any], fault: Fault | None) -> Response:
        with self._lock:
            order = self._orders.get(data["orderid"])
            if order is None:
                return self._error(f"Order {data['orderid']} not found", 404)
            row = self._order_row(order)
            if not self.analyze:
                # OpenAlgo takes the average price of the first matching trade, and only
                # for a complete order.
                first = next((t for t in self._trades if t.orderid == order.orderid), None)
                row["average_price"] = (_money(first.price)
                                        if first and order.status == "complete" else 0.0)
        return self._ok({"data": row})

    def _on_orderbook(self, data: dict[str, Any], fault: Fault | None) -> Response:
        with self._lock:
            rows = [self._order_row(o) for o in self._orders.values()]
        statistics = {
            "total_buy_orders": float(sum(r["action"] == "BUY" for r in rows)),
            "total_sell_orders": float(sum(r["action"] == "SELL" for r in rows)),
            "total_completed_orders": float(sum(r["order_status"] == "complete" for r in rows)),
            "total_open_orders": float(sum(r["order_status"] == "open" for r in rows)),
            "total_rejected_orders": float(sum(r["order_status"] == "rejected" for r in rows)),
        }
        return self._ok({"data": {"orders": rows, "statistics": statistics}})

    def _on_tradebook(self, data: dict[str, Any], fault: Fault | None) -> Response:
        with self._lock:
            rows = [{"action": t.action, "symbol": t.symbol, "exchange": t.exchange,
                     "orderid": t.orderid, "product": t.product, "quantity": float(t.quantity),
                     "average_price": _money(t.price), "timestamp": f"{t.timestamp:%H:%M:%S}",
                     "trade_value": _money(t.price * t.quantity)} for t in self._trades]
        return self._ok({"data": rows})

    def _on_positionbook(self, data: dict[str, Any], fault: Fault | None) -> Response:
        with self._lock:
            net = dict(self._planted)
            for t in self._trades:
                key = (t.symbol, t.exchange, t.product)
                net[key] = net.get(key, 0) + (t.quantity if t.action == "BUY" else -t.quantity)
        rows = [{"symbol": s, "exchange": e, "product": p, "quantity": str(q),
                 "average_price": "0.0", "ltp": "0.0", "pnl": "0.00"}
                for (s, e, p), q in net.items()]
        return self._ok({"data": rows})

    def _on_funds(self, data: dict[str, Any], fault: Fault | None) -> Response:
        with self._lock:
            return self._ok({"data": dict(self._funds)})

    def _on_symbol(self, data: dict[str, Any], fault: Fault | None) -> Response:
        with self._lock:
            row = self._symbols.get((data["symbol"], data["exchange"]))
        if row is None:
            return self._error(f"Symbol {data['symbol']} not found in exchange "
                               f"{data['exchange']}", 404)
        return self._ok({"data": dict(row)})

    def _on_analyzer(self, data: dict[str, Any], fault: Fault | None) -> Response:
        mode = "analyze" if self.analyze else "live"
        return self._ok({"data": {"analyze_mode": self.analyze, "mode": mode,
                                  "total_logs": 0}})

    def _on_expiry(self, data: dict[str, Any], fault: Fault | None) -> Response:
        key = (data["symbol"].upper(), data["exchange"], data["instrumenttype"])
        with self._lock:
            dates = list(self._expiries.get(key, []))
        return self._ok({"message": f"Found {len(dates)} expiry dates for {key[0]} {key[2]} "
                                    f"in {key[1]}", "data": dates})


@contextlib.contextmanager
def serving(fake: FakeOpenAlgo) -> Iterator[str]:
    """Serve ``fake`` on a spare 127.0.0.1 port in a background thread; yield its base URL.

    The socket is bound and listening before the thread starts, so the first request can
    never be refused; the server is always stopped (bounded) when the block ends.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.accesslog = None
    config.errorlog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve(fake.app, config,  # type: ignore[arg-type]
                                          shutdown_trigger=stop.wait))
        except BaseException as error:  # surfaced to the test below
            failure.append(error)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=f"fake-openalgo-{port}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            raise RuntimeError(f"the fake OpenAlgo did not stop within {STOP_TIMEOUT_S} s")
        if failure:
            raise RuntimeError("the fake OpenAlgo failed") from failure[0]
