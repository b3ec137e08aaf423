"""The OpenAlgo adapter against a real HTTP server speaking OpenAlgo's contract (the fake in
brokers/simulator.py): every answer mapped to its result, and the fake's own count of what
it received and placed as the ground truth for "placed exactly once"."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal as D

import httpx2 as httpx
import orjson
import pytest

from brokers import (
    BadAnswer,
    Broker,
    BrokerPosition,
    BrokerRefused,
    BrokerUnavailable,
    Cancelled,
    Funds,
    NotSent,
    OpenAlgoBroker,
    OrderNotFound,
    OrderRequest,
    Placed,
    RateLimited,
    Rejected,
    SymbolInfo,
    TokenBucket,
    Unknown,
    legs,
)
from brokers.openalgo import SEMI_AUTO_REASON
from brokers.simulator import (
    BrokerRejects,
    Delay,
    FakeOpenAlgo,
    PartialFills,
    Raw,
    Refuse,
    Resting,
    SemiAuto,
    ServerError,
    TooMany,
    serving,
)
from ledger.calendar import contract_for
from ledger.config import BANK_NIFTY, GOLD_MINI, default_config

GOLD = OrderRequest(symbol="GOLDM05JAN26FUT", exchange="MCX", side="BUY", quantity=100)
SHORT_READ_MS = 200  # the client's read timeout where a test makes the server slower
SLOW_ANSWER_MS = 1_000
SERVER_STOP_S = 5


@pytest.fixture
def fake() -> FakeOpenAlgo:
    return FakeOpenAlgo()


@pytest.fixture
def url(fake: FakeOpenAlgo) -> Iterator[str]:
    with serving(fake) as base_url:
        yield base_url


@pytest.fixture
def broker(fake: FakeOpenAlgo, url: str) -> OpenAlgoBroker:
    return OpenAlgoBroker(url, fake.api_key, "ledger-test", connect_timeout_ms=1_000,
                          read_timeout_ms=2_000)


def json_raw(status: int, body: object, **kwargs: object) -> Raw:
    return Raw(status, orjson.dumps(body), "application/json", **kwargs)  # type: ignore[arg-type]


# --- Placing: every answer and what it says about the order --------------------------------


def test_it_is_a_broker(broker: OpenAlgoBroker):
    assert isinstance(broker, Broker)


def test_a_market_order_is_placed_once_with_openalgos_fields(fake, broker):
    fake.set_price(GOLD.symbol, D("129512.5"))
    placed = broker.place(GOLD)
    assert isinstance(placed, Placed) and not placed.analyze
    assert fake.placed_count == 1 and len(fake.received()) == 1
    order = fake.order(placed.order_id)
    assert (order.symbol, order.exchange, order.action, order.quantity, order.pricetype,
            order.product, order.strategy) == (GOLD.symbol, "MCX", "BUY", 100, "MARKET",
                                               "NRML", "ledger-test")
    state = broker.order_status(placed.order_id)
    assert (state.status, state.filled_quantity, state.average_price, state.side,
            state.quantity, state.exchange) == ("complete", 100, D("129512.5"), "BUY", 100, "MCX")


def test_a_limit_order_carries_its_decimal_price_and_its_own_strategy(fake, broker):
    request = OrderRequest(symbol=GOLD.symbol, exchange="MCX", side="SELL", quantity=200,
                           price_type="LIMIT", price=D("129600.25"), strategy="trend-gold")
    placed = broker.place(request)
    order = fake.order(placed.order_id)
    assert (order.price, order.strategy, order.action) == (D("129600.25"), "trend-gold", "SELL")
    assert broker.order_status(placed.order_id).average_price == D("129600.25")


def test_a_validation_error_is_a_rejection_with_openalgos_message(fake, broker):
    bad_exchange = OrderRequest(symbol=GOLD.symbol, exchange="LME", side="BUY", quantity=1)
    result = broker.place(bad_exchange)
    assert isinstance(result, Rejected) and result.http_status == 400
    assert "exchange" in result.reason and "Must be one of" in result.reason
    assert fake.placed_count == 0


def test_a_wrong_api_key_is_a_rejection(fake, url):
    result = OpenAlgoBroker(url, "not-the-key", "ledger-test").place(GOLD)
    assert result == Rejected("Invalid openalgo apikey", http_status=403)
    assert fake.placed_count == 0


@pytest.mark.parametrize("status", [400, 404])
def test_a_refusal_is_a_rejection(fake, broker, status):
    fake.inject("placeorder", Refuse("Broker-specific module not found", status))
    assert broker.place(GOLD) == Rejected("Broker-specific module not found", http_status=status)
    assert fake.placed_count == 0


def test_a_broker_side_rejection_is_placed_and_its_status_says_rejected(fake, broker):
    fake.inject("placeorder", BrokerRejects("RMS: margin exceeds"))
    placed = broker.place(GOLD)
    assert isinstance(placed, Placed)
    state = broker.order_status(placed.order_id)
    assert (state.status, state.filled_quantity, state.average_price) == ("rejected", 0, None)


def test_429_is_rate_limited_with_the_servers_retry_after(fake, broker):
    fake.inject("placeorder", TooMany(retry_after_s=7.5))
    assert broker.place(GOLD) == RateLimited(retry_after_s=7.5)
    assert fake.placed_count == 0 and len(fake.received()) == 1


def test_429_with_only_a_retry_after_header_is_read_from_the_header(fake, broker):
    fake.inject("placeorder", json_raw(429, {"status": "error", "message": "slow down"},
                                       headers={"Retry-After": "3"}))
    assert broker.place(GOLD) == RateLimited(retry_after_s=3.0)


def test_semi_auto_mode_is_a_rejection_and_nothing_is_placed(fake, broker):
    fake.inject("placeorder", SemiAuto())
    assert broker.place(GOLD) == Rejected(SEMI_AUTO_REASON, http_status=200)
    assert fake.placed_count == 0 and len(fake.received()) == 1
    assert broker.order_book() == []


def test_a_timeout_after_sending_is_unknown_and_the_order_was_placed_once(fake, url):
    """The classic unknown outcome: the server placed it, the answer came too late."""
    impatient = OpenAlgoBroker(url, fake.api_key, "ledger-test", read_timeout_ms=SHORT_READ_MS)
    fake.inject("placeorder", Delay(ms=SLOW_ANSWER_MS))
    started = time.monotonic()
    result = impatient.place(GOLD)
    assert isinstance(result, Unknown) and "no answer within 0.2 s" in result.reason
    assert time.monotonic() - started < SLOW_ANSWER_MS / 1000  # it did not wait for it
    assert fake.placed_count == 1 and len(fake.received()) == 1  # the adapter never resent
    # Resolved by reading the books, not by sending again:
    [order] = impatient.order_book()
    assert (order.symbol, order.quantity, order.status) == (GOLD.symbol, 100, "complete")
    assert len(fake.received()) == 1


@pytest.mark.parametrize(("fault", "placed"), [
    (ServerError(after_placing=True), 1),
    (ServerError(after_placing=False), 0),
])
def test_500_is_unknown_whether_or_not_it_was_placed(fake, broker, fault, placed):
    fake.inject("placeorder", fault)
    result = broker.place(GOLD)
    assert isinstance(result, Unknown) and result.http_status == 500
    assert "internal error" in result.reason
    assert fake.placed_count == placed and len(fake.received()) == 1


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_proxy_error_is_unknown(fake, broker, status):
    fake.inject("placeorder", Raw(status, b"<html><body>Bad Gateway</body></html>", place=True))
    result = broker.place(GOLD)
    assert isinstance(result, Unknown) and result.http_status == status
    assert "Bad Gateway" in result.reason
    assert fake.placed_count == 1 and len(fake.received()) == 1


@pytest.mark.parametrize("fault", [
    # OpenAlgo answers an uncaught error with a redirect to its error page.
    Raw(302, b"", headers={"Location": "/error"}, place=True),
    Raw(200, b"<html>oops</html>", place=True),
    json_raw(200, {"status": "success"}, place=True),
    json_raw(200, {"status": "error", "message": "broker said no"}, place=True),
])
def test_an_answer_that_does_not_say_what_happened_is_unknown(fake, broker, fault):
    fake.inject("placeorder", fault)
    assert isinstance(broker.place(GOLD), Unknown)
    assert len(fake.received()) == 1


def test_an_answer_past_the_size_bound_is_unknown(fake, url):
    small = OpenAlgoBroker(url, fake.api_key, "ledger-test", answer_bytes_max=1_024)
    fake.inject("placeorder", Raw(200, b"x" * 100_000, "application/json", place=True))
    result = small.place(GOLD)
    assert isinstance(result, Unknown) and "larger than 1024 bytes" in result.reason


@contextlib.contextmanager
def refusing_port() -> Iterator[str]:
    """A port bound but not listening: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_refused_connection_is_not_sent():
    with refusing_port() as base_url:
        result = OpenAlgoBroker(base_url, "key", "ledger-test").place(GOLD)
    assert isinstance(result, NotSent) and "ConnectionRefusedError" in result.reason


@contextlib.contextmanager
def full_backlog() -> Iterator[str]:
    """A listener that never accepts, its queue filled: a new connection's handshake never
    completes, so the client's connect times out (Linux drops the SYN)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers: list[socket.socket] = []
        try:
            for _ in range(3):  # until one connection cannot complete: the queue is full
                filler = socket.socket()
                filler.settimeout(0.2)
                fillers.append(filler)
                try:
                    filler.connect(address)
                except TimeoutError:
                    break
            else:
                raise AssertionError("could not fill the listen queue")
            yield f"http://127.0.0.1:{address[1]}"
        finally:
            for filler in fillers:
                filler.close()


def test_a_connect_timeout_is_not_sent():
    with full_backlog() as base_url:
        started = time.monotonic()
        result = OpenAlgoBroker(base_url, "key", "ledger-test", connect_timeout_ms=200).place(GOLD)
    assert isinstance(result, NotSent) and "timed out" in result.reason
    assert time.monotonic() - started < 2


@contextlib.contextmanager
def resetting_server() -> Iterator[tuple[str, list[bytes]]]:
    """Reads one whole request, then resets the connection (RST) without answering."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def run() -> None:
        conn, _ = listener.accept()
        conn.settimeout(SERVER_STOP_S)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65_536)
        head, _, body = data.partition(b"\r\n\r\n")
        match = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
        while match and len(body) < int(match.group(1)):
            body += conn.recv(65_536)
        received.append(body)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        thread.join(SERVER_STOP_S)
        listener.close()


def test_a_connection_reset_after_sending_is_unknown():
    with resetting_server() as (base_url, received):
        result = OpenAlgoBroker(base_url, "key", "ledger-test").place(GOLD)
    assert isinstance(result, Unknown)
    assert len(received) == 1 and orjson.loads(received[0])["symbol"] == GOLD.symbol


def test_concurrent_orders_are_each_sent_once(fake, broker):
    results: list[object] = []
    lock = threading.Lock()

    def send() -> None:
        result = broker.place(GOLD)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len({r.order_id for r in results if isinstance(r, Placed)}) == 12
    assert fake.placed_count == 12 and len(fake.received()) == 12


# --- The rate limiter ----------------------------------------------------------------------


def test_the_rate_limiter_holds_25_order_calls_to_at_least_two_seconds(fake, broker):
    started = time.monotonic()
    results = [broker.place(GOLD) for _ in range(25)]
    assert all(isinstance(r, Placed) for r in results)
    received = fake.received()  # the server's clock, not ours
    assert len(received) == 25
    assert received[-1] - received[0] >= 2.0
    # Paced, not bursty: no eleven calls inside one second (OpenAlgo's moving window).
    assert min(received[i + 10] - received[i] for i in range(15)) >= 0.95
    assert time.monotonic() - started < 10


def test_a_wait_past_the_bound_is_refused_without_sending(fake, url):
    slow = OpenAlgoBroker(url, fake.api_key, "ledger-test", order_calls_per_s=1,
                          read_calls_per_s=1, rate_wait_ms_max=100)
    assert isinstance(slow.place(GOLD), Placed)
    second = slow.place(GOLD)
    assert isinstance(second, RateLimited) and 0.5 < second.retry_after_s <= 1.0
    assert len(fake.received()) == 1
    slow.positions()
    with pytest.raises(BrokerUnavailable) as refused:
        slow.positions()
    assert refused.value.retry_after_s is not None and refused.value.retry_after_s > 0.5
    assert len(fake.received("positionbook")) == 1


def test_a_token_bucket_saves_up_its_burst_then_paces():
    bucket = TokenBucket(20, burst=3, wait_ms_max=1_000)
    started = time.monotonic()
    for _ in range(3):
        assert bucket.acquire() is None
    assert time.monotonic() - started < 0.04  # the burst: no waiting
    for _ in range(4):
        assert bucket.acquire() is None
    assert time.monotonic() - started >= 4 / 20 - 0.01  # then one every 50 ms


# --- Reads: the books ----------------------------------------------------------------------


def test_partial_fills_are_summed_from_the_trade_book(fake, broker):
    fake.inject("placeorder", PartialFills((60, 40), (D("129500"), D("129525"))))
    placed = broker.place(GOLD)
    trades = [t for t in broker.trade_book() if t.order_id == placed.order_id]
    assert [(t.quantity, t.price) for t in trades] == [(60, D("129500")), (40, D("129525"))]
    assert sum(t.quantity for t in trades) == 100
    state = broker.order_status(placed.order_id)
    assert (state.status, state.filled_quantity, state.average_price) == (
        "complete", 100, D("129510"))  # weighted, not the first trade's price
    assert broker.order_book() == [state]


def test_an_order_filled_in_part_is_open_with_its_fills(fake, broker):
    fake.inject("placeorder", PartialFills((30,)))
    placed = broker.place(GOLD)
    state = broker.order_status(placed.order_id)
    assert (state.status, state.filled_quantity, state.quantity) == ("open", 30, 100)


def test_a_resting_order_can_be_cancelled_once(fake, broker):
    fake.inject("placeorder", Resting())
    placed = broker.place(GOLD)
    assert broker.order_status(placed.order_id).status == "open"
    assert broker.cancel(placed.order_id) == Cancelled(placed.order_id)
    state = broker.order_status(placed.order_id)
    assert (state.status, state.filled_quantity, state.average_price) == ("cancelled", 0, None)
    assert broker.cancel(placed.order_id) == Rejected(
        "Cannot cancel order in cancelled status", http_status=400)
    assert broker.cancel("nope") == Rejected("Order nope not found", http_status=404)


@pytest.mark.parametrize(("fault", "expected"), [
    (ServerError(after_placing=False), Unknown),
    (TooMany(2), RateLimited),
])
def test_a_cancel_answers_like_a_placement(fake, broker, fault, expected):
    fake.inject("cancelorder", fault)
    assert isinstance(broker.cancel("123"), expected)


def test_an_unknown_order_id_is_not_found(broker):
    with pytest.raises(OrderNotFound) as missing:
        broker.order_status("999")
    assert missing.value.http_status == 404


@pytest.mark.parametrize(("order_status", "expected"), [
    ("trigger pending", "open"), ("pending", "open"), ("OPEN", "open"),
    ("Complete", "complete"), ("REJECTED", "rejected"), ("canceled", "cancelled"),
])
def test_openalgo_statuses_map_to_four(fake, broker, order_status, expected):
    row = {"orderid": "7", "symbol": GOLD.symbol, "exchange": "MCX", "action": "buy",
           "quantity": "100", "order_status": order_status, "average_price": 0}
    fake.inject("orderstatus", json_raw(200, {"status": "success", "data": row}))
    assert broker.order_status("7").status == expected


def test_positions_are_signed_and_include_planted_ones(fake, broker):
    fake.plant_position("BANKNIFTY30DEC2552000PE", "NFO", "NRML", -35)
    broker.place(GOLD)
    broker.place(OrderRequest(symbol=GOLD.symbol, exchange="MCX", side="SELL", quantity=300))
    assert sorted(broker.positions(), key=lambda p: p.symbol) == [
        BrokerPosition("BANKNIFTY30DEC2552000PE", "NFO", "NRML", -35),
        BrokerPosition(GOLD.symbol, "MCX", "NRML", -200)]


def test_bank_nifty_legs_go_through_as_two_orders(fake, broker):
    contract = contract_for(BANK_NIFTY, datetime.fromisoformat("2025-12-08T05:00:00+00:00"),
                            D("52049"), default_config())
    entry = legs("synthetic_future", contract, 1, contract.lot_size, True, exchange="NFO")
    results = [broker.place(leg.order()) for leg in entry]
    assert all(isinstance(r, Placed) for r in results)
    assert sorted((p.symbol, p.quantity) for p in broker.positions()) == [
        ("BANKNIFTY30DEC2552000CE", 35), ("BANKNIFTY30DEC2552000PE", -35)]


def test_the_analyzer_mode_books_carry_their_own_fills():
    fake = FakeOpenAlgo(analyze=True)
    fake.inject("placeorder", PartialFills((60, 40), (D("10"), D("13"))))
    with serving(fake) as base_url:
        broker = OpenAlgoBroker(base_url, fake.api_key, "ledger-test")
        placed = broker.place(GOLD)
        assert isinstance(placed, Placed) and placed.analyze
        state = broker.order_status(placed.order_id)
        assert (state.filled_quantity, state.average_price) == (100, D("11.2"))
        assert broker.order_book() == [state]
        assert broker.analyze_mode() is True
    assert fake.received("tradebook") == []  # the order rows said it all


def test_expiries_cross_check_the_ledgers_calendar(fake, broker):
    fake.set_expiries("BANKNIFTY", "NFO", "options", ["27-JAN-26", "30-DEC-25", "24-FEB-26"])
    fake.set_expiries("GOLDM", "MCX", "futures", ["05-JAN-26", "05-FEB-26"])
    listed = broker.expiry("BANKNIFTY", "NFO", "options")
    assert listed == [date(2025, 12, 30), date(2026, 1, 27), date(2026, 2, 24)]
    at = datetime.fromisoformat("2025-12-08T05:00:00+00:00")
    assert contract_for(BANK_NIFTY, at, D("52049"), default_config()).expiry in listed
    assert contract_for(GOLD_MINI, at, D("129500"), default_config()).expiry in broker.expiry(
        "GOLDM", "MCX", "futures")
    assert broker.expiry("SILVERM", "MCX", "futures") == []
    with pytest.raises(BrokerRefused) as refused:
        broker.expiry("GOLDM", "MCX", "weekly")
    assert refused.value.http_status == 400


def test_the_brokers_lot_size_decides_what_quantity_one_lot_is(fake, broker):
    """Some brokers list MCX futures with lot size 1 (quantity in lots): sending the ledger's
    units there would be a hundred times the position."""
    at = datetime.fromisoformat("2025-12-08T05:00:00+00:00")
    gold = contract_for(GOLD_MINI, at, D("129500"), default_config())
    fake.set_symbol("GOLDM05JAN26FUT", "MCX", lotsize=1, freeze_qty=0, tick_size=1.0,
                    expiry="05-JAN-26")
    fake.set_symbol("BANKNIFTY30DEC2552000CE", "NFO", lotsize=35, freeze_qty=600,
                    expiry="30-DEC-25")
    info = broker.symbol_info("GOLDM05JAN26FUT", "MCX")
    assert info == SymbolInfo("GOLDM05JAN26FUT", "MCX", 1, D("1.0"), None, date(2026, 1, 5))
    assert info.expiry == gold.expiry
    [leg] = legs("future", gold, 3, info.lot_size, True, exchange="MCX")
    assert leg.quantity == 3  # not 300
    option = broker.symbol_info("BANKNIFTY30DEC2552000CE", "NFO")
    assert (option.lot_size, option.freeze_quantity) == (35, 600)
    with pytest.raises(BrokerRefused) as missing:
        broker.symbol_info("BANKNIFTY30DEC2552100CE", "NFO")
    assert missing.value.http_status == 404 and "not found" in str(missing.value)


def test_live_mode_is_reported(broker):
    assert broker.analyze_mode() is False


def test_funds_are_decimals(broker):
    assert broker.funds() == Funds(D("500000.00"), D("0.00"), D("0.00"), D("0.00"), D("0.00"))


@pytest.mark.parametrize(("fault", "error", "http_status"), [
    (ServerError(after_placing=False), BrokerUnavailable, 500),
    (Raw(502, b"<html>Bad Gateway</html>"), BrokerUnavailable, 502),
    (TooMany(4), BrokerUnavailable, 429),
    (Refuse("{'foo': ['Unknown field.']}", 400), BrokerRefused, 400),
    (Raw(200, b"<html>login</html>"), BadAnswer, None),
    (json_raw(200, {"status": "success", "data": {"orders": [{"orderid": "1", "symbol": "X",
     "action": "BUY", "quantity": "1.5", "order_status": "open"}]}}), BadAnswer, None),
])
def test_a_read_that_fails_raises_what_kind_of_failure_it_was(fake, broker, fault, error,
                                                              http_status):
    fake.inject("orderbook", fault)
    with pytest.raises(error) as raised:
        broker.order_book()
    assert getattr(raised.value, "http_status", None) == http_status
    if http_status == 429:
        assert raised.value.retry_after_s == 4


def test_reads_fail_as_unavailable_when_the_server_is_away_or_slow(fake, url):
    with refusing_port() as base_url, pytest.raises(BrokerUnavailable, match="Refused"):
        OpenAlgoBroker(base_url, "key", "ledger-test").trade_book()
    impatient = OpenAlgoBroker(url, fake.api_key, "ledger-test", read_timeout_ms=SHORT_READ_MS)
    fake.inject("positionbook", Delay(ms=SLOW_ANSWER_MS))
    with pytest.raises(BrokerUnavailable, match="no answer"):
        impatient.positions()
    with pytest.raises(BrokerRefused) as refused:
        OpenAlgoBroker(url, "not-the-key", "ledger-test").order_book()
    assert refused.value.http_status == 403


# --- The key stays secret; the fake validates like OpenAlgo --------------------------------


def test_the_api_key_is_never_logged_shown_or_quoted(fake, url, caplog):
    caplog.set_level(logging.DEBUG)
    broker = OpenAlgoBroker(url, fake.api_key, "ledger-test", read_timeout_ms=SHORT_READ_MS)
    fake.inject("placeorder", Refuse(f"apikey {fake.api_key} is not allowed"),
                ServerError(after_placing=True), Delay(ms=SLOW_ANSWER_MS), SemiAuto())
    results = [broker.place(GOLD) for _ in range(5)]
    fake.inject("orderbook", Refuse(f"bad {fake.api_key}"))
    with pytest.raises(BrokerRefused) as refused:
        broker.order_book()
    shown = " ".join([caplog.text, repr(broker), repr(results), str(refused.value),
                      *(str(r.args) for r in caplog.records)])
    assert fake.api_key not in shown
    assert results[0] == Rejected("apikey *** is not allowed", http_status=400)
    assert any("openalgo placeorder" in r.getMessage() for r in caplog.records)


def test_the_fake_validates_requests_like_openalgo(fake, url):
    valid = {"apikey": fake.api_key, "strategy": "s", "symbol": GOLD.symbol, "exchange": "MCX",
             "action": "BUY", "quantity": 1}
    with httpx.Client(base_url=url, timeout=5) as client:
        unknown = client.post("/api/v1/placeorder", json={**valid, "tag": "x"})
        assert unknown.status_code == 400
        assert unknown.json() == {"status": "error", "message": "{'tag': ['Unknown field.']}"}
        missing = client.post("/api/v1/placeorder",
                              json={k: v for k, v in valid.items() if k != "symbol"})
        assert missing.status_code == 400
        assert missing.json()["message"] == "{'symbol': ['Missing data for required field.']}"
        fractional = client.post("/api/v1/placeorder", json={**valid, "quantity": 1.5})
        assert "Fractional quantity" in fractional.json()["message"]
        wrong_key = client.post("/api/v1/placeorder", json={**valid, "apikey": "other"})
        assert wrong_key.status_code == 403
        assert client.post("/api/v1/placeorder", json=valid).json()["status"] == "success"
    assert fake.placed_count == 1 and len(fake.received()) == 5
