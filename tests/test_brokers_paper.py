"""The paper broker: immediate fills at the price it is given, books in memory, thread-safe."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from brokers import (
    Broker,
    BrokerPosition,
    OrderNotFound,
    OrderRequest,
    OrderState,
    PaperBroker,
    Placed,
    Rejected,
    Trade,
)

CE, PE = "BANKNIFTY30DEC2552000CE", "BANKNIFTY30DEC2552000PE"
AT = datetime(2025, 12, 8, 9, 15, tzinfo=UTC)


def order(symbol: str, side: str, quantity: int, **kwargs) -> OrderRequest:
    return OrderRequest(symbol=symbol, exchange="NFO", side=side, quantity=quantity, **kwargs)


def test_it_is_a_broker():
    assert isinstance(PaperBroker(), Broker)


def test_an_order_fills_at_once_at_the_price_set_for_its_symbol():
    paper = PaperBroker(clock=lambda: AT)
    paper.set_price(CE, D("812.5"))
    placed = paper.place(order(CE, "BUY", 70))
    assert placed == Placed("PAPER-000001")
    assert paper.order_status(placed.order_id) == OrderState(
        order_id="PAPER-000001", status="complete", filled_quantity=70,
        average_price=D("812.5"), symbol=CE, side="BUY", quantity=70, exchange="NFO")
    assert paper.trade_book() == [Trade("PAPER-000001", CE, "BUY", 70, D("812.5"),
                                        "2025-12-08T09:15:00+00:00")]


def test_an_order_with_its_own_price_fills_there():
    paper = PaperBroker(prices={CE: D("800")})
    placed = paper.place(order(CE, "BUY", 35, price_type="LIMIT", price=D("805.25")))
    assert paper.order_status(placed.order_id).average_price == D("805.25")


def test_without_a_price_it_refuses_rather_than_guess():
    paper = PaperBroker()
    assert paper.place(order(CE, "BUY", 35)) == Rejected(f"paper: no price for {CE}")
    assert paper.placed_count == 0
    assert paper.order_book() == [] and paper.trade_book() == [] and paper.positions() == []


def test_positions_are_net_and_signed_by_symbol_exchange_and_product():
    paper = PaperBroker(prices={CE: D("800"), PE: D("700")})
    for request in (order(CE, "BUY", 70), order(PE, "SELL", 70), order(CE, "SELL", 35),
                    order(PE, "BUY", 35), order(CE, "BUY", 35, product="MIS")):
        assert isinstance(paper.place(request), Placed)
    assert sorted(paper.positions(), key=lambda p: (p.symbol, p.product)) == [
        BrokerPosition(CE, "NFO", "MIS", 35), BrokerPosition(CE, "NFO", "NRML", 35),
        BrokerPosition(PE, "NFO", "NRML", -35)]
    assert [o.order_id for o in paper.order_book()] == [f"PAPER-00000{i}" for i in range(1, 6)]


def test_nothing_is_cancellable_and_unknown_orders_are_not_found():
    paper = PaperBroker(prices={CE: D("800")})
    placed = paper.place(order(CE, "BUY", 35))
    assert paper.cancel(placed.order_id) == Rejected("cannot cancel order in complete status")
    assert paper.cancel("nope") == Rejected("order nope not found")
    with pytest.raises(OrderNotFound):
        paper.order_status("nope")


def test_a_price_must_be_a_decimal():
    with pytest.raises(ValueError, match="Decimal"):
        PaperBroker().set_price(CE, 800.0)  # type: ignore[arg-type]


def test_concurrent_orders_are_each_placed_once_and_the_books_agree():
    paper = PaperBroker(prices={CE: D("800")})
    threads_n, orders_each = 8, 50
    results: list[Placed | Rejected] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(orders_each):
            result = paper.place(order(CE, "BUY", 35))
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    ids = {r.order_id for r in results if isinstance(r, Placed)}
    assert len(ids) == paper.placed_count == threads_n * orders_each
    assert len(paper.trade_book()) == threads_n * orders_each
    assert paper.positions() == [BrokerPosition(CE, "NFO", "NRML", 35 * threads_n * orders_each)]
