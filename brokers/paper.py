"""The default broker: every order fills at once, in full, at the price it is given.

No network and no market: the books live in memory, so the ledger can run its whole order
path (intents, sending, reconciliation) without an account. The fill price is the order's
own ``price`` when it has one, else the last price ``set_price`` gave for the symbol (the
price the ledger decided at); an order with neither is rejected, never filled at a guess.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from brokers.base import (
    BrokerPosition,
    CancelResult,
    OrderNotFound,
    OrderRequest,
    OrderState,
    Placed,
    PlaceResult,
    Rejected,
    Trade,
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PaperBroker:
    """Fills immediately; thread-safe (one lock around the books)."""

    def __init__(self, *, prices: dict[str, Decimal] | None = None,
                 clock: Callable[[], datetime] = _utc_now, id_prefix: str = "PAPER-") -> None:
        self._lock = threading.Lock()
        self._prices: dict[str, Decimal] = dict(prices or {})
        self._clock = clock
        self._ids = itertools.count(1)
        self._prefix = id_prefix
        self._orders: dict[str, OrderState] = {}
        self._trades: list[Trade] = []
        self._net: dict[tuple[str, str, str], int] = {}

    def set_price(self, symbol: str, price: Decimal) -> None:
        """The price the next orders for ``symbol`` fill at (unless they carry their own)."""
        if not isinstance(price, Decimal) or not price.is_finite() or price < 0:
            raise ValueError("price must be a finite, non-negative Decimal")
        with self._lock:
            self._prices[symbol] = price

    @property
    def placed_count(self) -> int:
        with self._lock:
            return len(self._orders)

    def place(self, request: OrderRequest) -> PlaceResult:
        with self._lock:
            price = request.price if request.price is not None else self._prices.get(
                request.symbol)
            if price is None:
                return Rejected(f"paper: no price for {request.symbol}")
            order_id = f"{self._prefix}{next(self._ids):06d}"
            self._orders[order_id] = OrderState(
                order_id=order_id, status="complete", filled_quantity=request.quantity,
                average_price=price, symbol=request.symbol, side=request.side,
                quantity=request.quantity, exchange=request.exchange)
            self._trades.append(Trade(order_id=order_id, symbol=request.symbol,
                                      side=request.side, quantity=request.quantity, price=price,
                                      time=self._clock().isoformat()))
            key = (request.symbol, request.exchange, request.product)
            signed = request.quantity if request.side == "BUY" else -request.quantity
            self._net[key] = self._net.get(key, 0) + signed
            return Placed(order_id)

    def cancel(self, order_id: str) -> CancelResult:
        """Paper orders are filled the moment they are placed: nothing is ever cancellable."""
        with self._lock:
            order = self._orders.get(order_id)
        if order is None:
            return Rejected(f"order {order_id} not found")
        return Rejected(f"cannot cancel order in {order.status} status")

    def order_status(self, order_id: str) -> OrderState:
        with self._lock:
            order = self._orders.get(order_id)
        if order is None:
            raise OrderNotFound(f"order {order_id} not found", http_status=404)
        return order

    def order_book(self) -> list[OrderState]:
        with self._lock:
            return list(self._orders.values())

    def trade_book(self) -> list[Trade]:
        with self._lock:
            return list(self._trades)

    def positions(self) -> list[BrokerPosition]:
        with self._lock:
            return [BrokerPosition(symbol, exchange, product, quantity)
                    for (symbol, exchange, product), quantity in self._net.items()]
