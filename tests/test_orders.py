"""The order desk: committed decisions become broker orders, each placed exactly once.

Against the paper broker and a fake OpenAlgo over real HTTP (brokers/simulator.py, which
counts every order it placed: the ground truth). A "crash" here is the desk object dropped
mid-step (an exception at that step) and a new one built, as a restarted or newly elected
leader would: every step's state is in the log, none in the desk.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from brokers.openalgo import OpenAlgoBroker
from brokers.paper import PaperBroker
from brokers.simulator import (
    Delay,
    FakeOpenAlgo,
    PartialFills,
    Refuse,
    ServerError,
    TooMany,
    serving,
)
from ledger.domain.order import (
    ACKNOWLEDGED,
    CLOSE,
    FILLED,
    OPEN,
    PARTIALLY_FILLED,
    REJECTED,
    ROLL_CLOSE,
    ROLL_OPEN,
    SENT,
)
from projections.runner import ProjectionRunner
from projections.verify import verify
from service.desk import DeskSettings, OrderDesk
from tests.alerts import Alerts

READ_TIMEOUT_MS = 300  # the adapter's patience in these tests


class Clock:
    """Time the desk sees: moved by the tests (doubts are judged after a settle time)."""

    def __init__(self) -> None:
        self.now = datetime(2025, 11, 28, 5, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def fake() -> Iterator[tuple[FakeOpenAlgo, str]]:
    server = FakeOpenAlgo()
    with serving(server) as url:
        yield server, url


def openalgo(url: str, server: FakeOpenAlgo) -> OpenAlgoBroker:
    return OpenAlgoBroker(url, server.api_key, "ledger-test", connect_timeout_ms=1000,
                          read_timeout_ms=READ_TIMEOUT_MS)


def desk_on(ledger, broker, clock: Clock, **settings) -> OrderDesk:
    desk = OrderDesk(ledger, broker, clock=clock, settings=DeskSettings(**settings))
    desk.record_intents()  # a new desk starts at the log's end
    return desk


def run(desk: OrderDesk, epoch: int = 1) -> None:
    """One desk run, with the projection tables current before and after (the desk finds
    its work in the orders table, as the leader's runner keeps it)."""
    runner = ProjectionRunner(desk.ledger)
    runner.catch_up()
    desk.record_intents()
    runner.catch_up()
    desk.run(epoch)
    runner.catch_up()


def orders_of(desk: OrderDesk) -> list:
    return sorted(desk.orders(), key=lambda o: (o.intent.decided_at, o.intent.leg))


def test_a_bank_nifty_entry_is_two_legs_and_its_exit_closes_both(ledger):
    clock = Clock()
    desk = desk_on(ledger, PaperBroker(), clock, price_orders=True)
    a = Alerts()
    entry = ledger.decide(a.base(52000, 51900, 100))
    run(desk)
    opened = orders_of(desk)
    assert [(o.intent.purpose, o.intent.leg, o.intent.side) for o in opened] == [
        (OPEN, "CE", "BUY"), (OPEN, "PE", "SELL")]
    # Paper fills at the decided price; an option leg's price is a premium: no slippage.
    assert all(o.status == FILLED and o.average_price == 52000 and o.slippage is None
               for o in opened)
    assert opened[0].intent.quantity == entry.body["lots"] * 35
    ledger.decide(a.exit("Long_1", 52300))
    run(desk)
    closed = [o for o in orders_of(desk) if o.intent.purpose == CLOSE]
    assert sorted((o.intent.leg, o.intent.side) for o in closed) == [("CE", "SELL"),
                                                                     ("PE", "BUY")]
    assert all(o.status == FILLED for o in closed)
    assert verify(ledger)[1] == []


def test_a_roll_is_four_orders_and_gold_one_leg_each_way(ledger):
    clock = Clock()
    desk = desk_on(ledger, PaperBroker(), clock, price_orders=True)
    a = Alerts()
    bank = ledger.decide(a.base(52000, 51900, 100))
    gold = ledger.decide(a.base(72000, 71800, 200, instrument="GOLD_MINI"))
    run(desk)
    position = ledger.position(bank.position_id)
    ledger.roll(bank.position_id, position.expiry, Decimal(52100), Decimal(52150), clock())
    run(desk)
    rolls = [o for o in orders_of(desk) if o.intent.purpose in (ROLL_CLOSE, ROLL_OPEN)]
    assert len(rolls) == 4 and all(o.status == FILLED for o in rolls)
    gold_orders = [o for o in orders_of(desk) if o.intent.position_id == gold.position_id]
    assert [(o.intent.leg, o.intent.side) for o in gold_orders] == [("FUT", "BUY")]
    assert gold_orders[0].slippage == 0  # a futures leg: filled at the decided price


def test_a_desk_records_each_intent_once_however_often_it_reads_the_log(ledger):
    clock = Clock()
    broker = PaperBroker()
    desk = desk_on(ledger, broker, clock, price_orders=True)
    ledger.decide(Alerts().base(52000, 51900, 100))
    assert desk.record_intents() == 2
    # A desk that crashed before tracking its position reads the same events again.
    with ledger.transaction() as cursor:
        cursor.execute(f"UPDATE projection_tracking SET position = 0 "
                       f"WHERE name = {ledger.dialect.param}", ("order_desk",))
    again = OrderDesk(ledger, broker, clock=clock, settings=DeskSettings(price_orders=True))
    assert again.record_intents() == 0
    run(again)
    assert broker.placed_count == 2


def test_nothing_is_sent_while_halted_and_everything_on_resume(ledger):
    clock = Clock()
    broker = PaperBroker()
    desk = desk_on(ledger, broker, clock, price_orders=True)
    assert desk.halt("operator: broker maintenance")
    ledger.decide(Alerts().base(52000, 51900, 100))
    run(desk)
    assert broker.placed_count == 0 and len(list(desk.orders())) == 2
    assert desk.resume()
    run(desk)
    assert broker.placed_count == 2


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_fault_matrix_against_openalgo(ledger, fake):
    server, url = fake
    clock = Clock()
    desk = desk_on(ledger, openalgo(url, server), clock)
    a = Alerts()

    # Timeout after placing: in doubt, then found in the order book. One order.
    server.inject("placeorder", Delay(ms=READ_TIMEOUT_MS * 4))
    ledger.decide(a.base(72000, 71800, 200, instrument="GOLD_MINI"))
    run(desk)
    (order,) = orders_of(desk)
    assert order.status == "unknown"
    clock.advance(5)
    run(desk)
    assert server.placed_count == 1 and desk._order(order.intent.intent_id).status in (
        ACKNOWLEDGED, FILLED)

    # 500 before placing: in doubt, not in the book, sent again. Still one order.
    ledger.decide(a.exit("Long_1", 72100, instrument="GOLD_MINI"))
    server.inject("placeorder", ServerError(after_placing=False))
    run(desk)
    clock.advance(5)
    run(desk)
    run(desk)
    assert server.placed_count == 2
    assert all(o.status == FILLED for o in orders_of(desk))

    # 500 after placing: found, never placed twice.
    server.inject("placeorder", ServerError(after_placing=True))
    ledger.decide(a.base(72500, 72300, 200, instrument="GOLD_MINI"))
    run(desk)
    clock.advance(5)
    run(desk)
    run(desk)
    assert server.placed_count == 3

    # 429: nothing placed, sent on a later run.
    server.inject("placeorder", TooMany(retry_after_s=0.01))
    ledger.decide(a.exit("Long_1", 72600, instrument="GOLD_MINI"))
    run(desk)
    run(desk)
    assert server.placed_count == 4

    # A refusal: rejected, never resent.
    server.inject("placeorder", Refuse("Invalid symbol"))
    ledger.decide(a.base(73000, 72800, 200, instrument="GOLD_MINI"))
    run(desk)
    run(desk)
    assert server.placed_count == 4
    assert [o.status for o in orders_of(desk)][-1] == REJECTED

    # Partial fills: summed once, however often the desk asks.
    ledger.decide(a.base(52000, 51900, 100))
    server.inject("placeorder", PartialFills(parts=(35, 35)), PartialFills(parts=(70,)))
    for _ in range(3):
        run(desk)
    bank = [o for o in orders_of(desk) if o.intent.leg in ("CE", "PE")]
    assert all(o.filled_quantity <= o.intent.quantity for o in bank)
    assert server.placed_count == 6
    assert verify(ledger)[1] == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("crash", ["after_recording_the_send", "after_the_broker_placed"])
def test_a_crash_in_the_send_path_ends_with_exactly_one_order(ledger, fake, crash):
    server, url = fake
    clock = Clock()
    broker = openalgo(url, server)
    desk = desk_on(ledger, broker, clock)
    ledger.decide(Alerts().base(72000, 71800, 200, instrument="GOLD_MINI"))
    ProjectionRunner(ledger).catch_up()
    desk.record_intents()
    ProjectionRunner(ledger).catch_up()

    class Crash(Exception):
        pass

    place = broker.place

    def crashing_place(request):
        if crash == "after_the_broker_placed":
            place(request)
        raise Crash  # the process dies here: its answer is never recorded

    broker.place = crashing_place  # type: ignore[method-assign]
    with pytest.raises(Crash):
        desk.send_pending(1, None)
    ProjectionRunner(ledger).catch_up()
    (order,) = list(desk.orders())
    assert order.status == SENT  # recorded before the broker was asked

    broker.place = place  # type: ignore[method-assign]
    successor = OrderDesk(ledger, broker, clock=clock)  # a new leader, a later epoch
    clock.advance(5)
    for _ in range(3):
        run(successor, epoch=2)
    (order,) = list(successor.orders())
    assert server.placed_count == 1
    assert order.status in (ACKNOWLEDGED, PARTIALLY_FILLED, FILLED)


def test_an_unknown_outcome_is_never_resent_before_the_book_is_read(ledger, fake):
    server, url = fake
    clock = Clock()
    broker = openalgo(url, server)
    desk = desk_on(ledger, broker, clock)
    server.inject("placeorder", Delay(ms=READ_TIMEOUT_MS * 4))
    ledger.decide(Alerts().base(72000, 71800, 200, instrument="GOLD_MINI"))
    for _ in range(3):  # before the settle time: judged never, sent never again
        run(desk)
    assert server.placed_count == 1
    (order,) = list(desk.orders())
    assert order.status == "unknown" and order.attempts == 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_reconciliation_names_each_kind_of_mismatch_and_records_it(ledger, fake):
    server, url = fake
    clock = Clock()
    desk = desk_on(ledger, openalgo(url, server), clock)
    a = Alerts()
    gold = ledger.decide(a.base(72000, 71800, 200, instrument="GOLD_MINI"))
    run(desk)
    run(desk)
    assert desk.reconcile() == []  # the broker holds what the ledger does
    symbol = ledger.position(gold.position_id).futures_symbol
    server.plant_position(symbol, "MCX", "NRML", 100)  # quantity mismatch
    server.plant_position("NIFTY30DEC25FUT", "NFO", "NRML", 75)  # missing from the ledger
    desk.halt("test")
    bank = ledger.decide(a.base(52000, 51900, 100))  # never sent: orphaned at the broker
    run(desk)
    findings = {f["kind"]: f for f in desk.reconcile()}
    assert set(findings) == {"quantity_mismatch", "missing", "orphaned"}
    assert findings["missing"]["symbol"] == "NIFTY30DEC25FUT"
    assert findings["quantity_mismatch"]["broker_quantity"] == (
        findings["quantity_mismatch"]["ledger_quantity"] + 100)
    assert findings["orphaned"]["symbol"] in (ledger.position(bank.position_id).ce_symbol,
                                              ledger.position(bank.position_id).pe_symbol)
    assert desk.desk().findings == list(desk.reconcile())  # recorded, and not again
    assert server.placed_count == 1  # reconciliation never trades


def test_buys_go_first_so_no_option_is_ever_short_without_its_hedge(ledger):
    broker = PaperBroker()
    desk = desk_on(ledger, broker, Clock(), price_orders=True)
    ledger.decide(Alerts().base(52000, 51900, 100))
    run(desk)
    assert [t.side for t in broker.trade_book()] == ["BUY", "SELL"]


def test_orders_and_the_kill_switch_over_http(ledger, store_url):
    from tests.api_client import TOKEN, projected, service

    desk = desk_on(ledger, PaperBroker(), Clock(), price_orders=True)
    ledger.decide(Alerts().base(52000, 51900, 100))
    run(desk)
    auth = {"authorization": f"Bearer {TOKEN}"}
    with service(store_url, api_token=TOKEN) as api:
        projected(api)
        assert api.get("/orders").status_code == 401
        orders = api.get("/orders", headers=auth).json()["orders"]
        assert sorted(o["leg"] for o in orders) == ["CE", "PE"]
        assert {o["status"] for o in orders} == {FILLED}
        one = api.get(f"/orders/{orders[0]['intent_id']}", headers=auth).json()
        assert [e["type"] for e in one["events"]] == [
            "OrderIntended", "OrderSent", "OrderAcknowledged", "OrderFilled"]
        assert api.get("/orders", params={"state": "nope"}, headers=auth).status_code == 400
        assert api.get("/orders/no-such-order", headers=auth).status_code == 404
        assert api.post("/halt", params={"reason": "broker down"}).status_code == 401
        assert api.post("/halt", params={"reason": "broker down"}, headers=auth).json() == {
            "halted": True, "reason": "broker down"}
        assert desk.desk().halted
        assert api.get("/reconciliation", headers=auth).json()["halted"] is True
        assert api.post("/resume", headers=auth).json() == {"halted": False}
        assert not desk.desk().halted


def test_reconcile_over_http_asks_the_desk_only_where_it_runs(store_url, ledger):
    from tests.api_client import TOKEN, service

    auth = {"authorization": f"Bearer {TOKEN}"}
    with service(store_url, api_token=TOKEN) as api:
        answer = api.post("/reconcile", headers=auth)
        assert answer.status_code == 503 and answer.json()["error"] == "not_the_desk"
        desk = desk_on(ledger, PaperBroker(), Clock(), price_orders=True)
        api.app.state.runtime.desk = lambda: desk  # this instance runs the desk
        assert api.post("/reconcile", headers=auth).json() == {"findings": []}
