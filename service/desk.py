"""The order desk: committed decisions become broker orders, each sent once.

It follows the event log (never a webhook's request) and, as the leader, in four steps:

1. **Intents.** Every position event that changes what the broker should hold (opened,
   reduced, exited, rolled) becomes order intents, one per leg, under ids derived from the
   decision and the leg: a second recording of the same intent fails on the store's unique
   key, so re-reading the log after a crash records nothing twice.
2. **Sends.** An intent is marked ``OrderSent`` (with the leader's epoch, fenced: a stale
   leader's mark is refused by the database) *before* the broker is called, and the answer
   is recorded after. Nothing is sent while the desk is halted, or while the leader's term
   does not cover the broker's timeout.
3. **Doubts.** A send without a recorded answer (a crash in between, or an answer that may
   hide a placed order: a timeout, a 5xx) is never sent again blindly: the broker's order
   book decides. A matching order there (same symbol, side and quantity, not claimed by
   another of our orders) is adopted; none is proof enough to send again.
4. **Fills.** Working orders are asked for their fills, each counted once.

The books keep deciding on the decided prices; a fill's price is recorded beside them and
its difference is the order's slippage (docs/ORDERS.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from brokers.base import (
    Broker,
    BrokerError,
    Leg,
    NotSent,
    OrderRequest,
    Placed,
    RateLimited,
    Rejected,
    Unknown,
    legs,
    order_exchange,
)
from ledger.application import Ledger
from ledger.domain import Contract, Desk, Intent, Order, Position, intent_id
from ledger.domain.order import (
    CLOSE,
    IN_DOUBT,
    OPEN,
    REDUCE,
    ROLL_CLOSE,
    ROLL_OPEN,
    SENDABLE,
    WORKING,
)
from projections.projector import read_chunk
from projections.schema import ORDERS
from projections.tables import TableStore

log = logging.getLogger("ledger.orders")

DESK = "orders"  # the kill switch's stream: desk:orders
TRACKING_NAME = "order_desk"  # the desk's log position, beside the projections' own


@dataclass(frozen=True)
class DeskSettings:
    """Every bound of the desk, with its unit."""

    log_batch_events: int = 1000  # events read per step while recording intents
    sends_per_run_max: int = 20  # orders sent in one run (the broker allows 10 a second)
    broker_timeout_ms: int = 5000  # the longest one broker call may take (the adapter's own)
    doubt_settle_ms: int = 3000  # an order in doubt younger than this is not judged yet
    product: str = "NRML"  # F&O carried overnight
    # Paper: send the decided price (the paper broker fills at it). A real broker: MARKET.
    price_orders: bool = False


@dataclass
class DeskReport:
    intended: int = 0
    sent: int = 0
    resolved: int = 0
    fills: int = 0
    halted: bool = False
    errors: list[str] = field(default_factory=list)


class OrderDesk:
    def __init__(self, ledger: Ledger, broker: Broker, *,
                 fence: Callable[[int], Callable[[Any], None]] | None = None,
                 settings: DeskSettings | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """``fence(epoch)``: the check to run inside each write's transaction (the
        coordinator's ``fenced``); None where one process is the only writer (tests, CLI)."""
        self.ledger = ledger
        self.broker = broker
        self.fence = fence
        self.settings = settings or DeskSettings()
        self.clock = clock
        self.tables = TableStore(ledger)
        # Broker order ids this desk recorded, for claims the orders table may not show yet.
        self._recorded_ids: set[str] = set()

    # -- the kill switch --------------------------------------------------------------------

    def desk(self) -> Desk:
        try:
            return self.ledger.repository.get(Desk.create_id(DESK))
        except AggregateNotFoundError:
            return Desk(name=DESK)

    def halt(self, reason: str) -> bool:
        """Stop sending (intents are still recorded). False if already halted."""
        desk = self.desk()
        if desk.halted:
            return False
        desk.halt(reason, self.clock())
        self.ledger.save(desk)
        return True

    def resume(self) -> bool:
        desk = self.desk()
        if not desk.halted:
            return False
        desk.resume(self.clock())
        self.ledger.save(desk)
        return True

    # -- one run ----------------------------------------------------------------------------

    def run(self, epoch: int | None, *, lease_remaining_ms: Callable[[], int] | None = None
            ) -> DeskReport:
        """Record new intents, resolve doubts, send what is sendable, collect fills."""
        report = DeskReport()
        fence = self.fence(epoch) if self.fence is not None and epoch is not None else None
        report.intended = self.record_intents(fence)
        report.resolved = self.resolve_doubts(fence)
        report.halted = self.desk().halted
        working: list[str] = []
        if not report.halted:
            report.sent = self.send_pending(epoch or 0, fence, lease_remaining_ms, working)
        report.fills = self.collect_fills(fence, working)
        return report

    # -- 1. intents -------------------------------------------------------------------------

    def _tracked(self) -> int | None:
        """The desk's log position (None: the desk never ran on this store)."""
        with self.ledger.transaction(read_only=True) as cursor:
            return self.tables.tracked_or_none(cursor, TRACKING_NAME)

    def _track(self, position: int, fence: Callable[[Any], None] | None) -> None:
        with self.ledger.transaction() as cursor:
            self.tables.track(cursor, TRACKING_NAME, position)
            if fence is not None:
                fence(cursor)

    def record_intents(self, fence: Callable[[Any], None] | None = None) -> int:
        """Intents for every position event after the desk's log position; the number new.

        A desk with no position yet starts at the log's end: decisions made before the
        desk ran were never meant for a broker (reconciliation shows any that were)."""
        position = self._tracked()
        if position is None:
            position = self.ledger.recorder.max_notification_id() or 0
            self._track(position, fence)
        recorded = 0
        while batch := read_chunk(self.ledger, position, self.settings.log_batch_events):
            for notification in batch:
                if notification.topic not in _POSITION_TOPICS:
                    continue
                event = self.ledger.mapper.to_domain_event(notification)
                intents = self._intents(event)
                if intents:
                    recorded += self._record(intents, fence)
            position = batch[-1].id
            self._track(position, fence)
        return recorded

    def _record(self, intents: list[Intent], fence: Callable[[Any], None] | None) -> int:
        orders = [Order.intend(i) for i in intents]
        try:
            self.ledger.save(*orders, fence=fence)
        except IntegrityError:
            return 0  # recorded before (a run that crashed before tracking its position)
        return len(orders)

    def _intents(self, event: Any) -> list[Intent]:
        if isinstance(event, Position.PositionOpened):
            o = event.opening
            contract = Contract(o.instrument, date.fromisoformat(o.expiry), o.lot_size,
                                o.point_value, o.margin_per_lot, o.strike, o.ce_symbol,
                                o.pe_symbol, o.futures_symbol)
            return self._plan(o.portfolio, o.position_id, o.instrument, o.fingerprint, OPEN,
                              contract, o.lots, True, o.entry_price, event.timestamp)
        if isinstance(event, Position.PositionReduced | Position.Exited):
            before = self._position(event.originator_id, event.originator_version - 1)
            lots = event.lots_closed if isinstance(event, Position.PositionReduced) else event.lots
            price = event.price if isinstance(event, Position.PositionReduced) else event.exit_price
            purpose = REDUCE if isinstance(event, Position.PositionReduced) else CLOSE
            return self._plan(before.portfolio, before.position_id, before.instrument,
                              event.fingerprint, purpose, _contract(before), lots, False, price,
                              event.timestamp)
        if isinstance(event, Position.RolledOver):
            before = self._position(event.originator_id, event.originator_version - 1)
            after = event.mutate(self._position(event.originator_id,
                                                event.originator_version - 1))
            assert isinstance(after, Position)
            r = event.roll
            return [
                *self._plan(before.portfolio, before.position_id, before.instrument,
                            r.command_id, ROLL_CLOSE, _contract(before), before.lots, False,
                            r.close_price, event.timestamp),
                *self._plan(after.portfolio, after.position_id, after.instrument, r.command_id,
                            ROLL_OPEN, _contract(after), after.lots, True, r.open_price,
                            event.timestamp),
            ]
        return []

    def _position(self, originator_id: Any, version: int) -> Position:
        position = self.ledger.repository.get(originator_id, version=version)
        assert isinstance(position, Position)
        return position

    def _plan(self, portfolio: str, position_id: str, instrument_name: str, cause: str,
              purpose: str, contract: Contract, lots: int, opening: bool, price: Decimal,
              at: datetime) -> list[Intent]:
        instrument = self.ledger.config.instrument(instrument_name)
        assert instrument is not None, instrument_name
        planned: list[Leg] = legs(instrument.product, contract, lots, contract.lot_size,
                                  opening, exchange=order_exchange(instrument))
        return [Intent(intent_id=intent_id(cause, position_id, purpose, leg.right),
                       portfolio=portfolio, position_id=position_id, cause=cause,
                       purpose=purpose, leg=leg.right, symbol=leg.symbol,
                       exchange=leg.exchange, side=leg.side, quantity=leg.quantity,
                       product=self.settings.product,
                       price_type="LIMIT" if self.settings.price_orders else "MARKET",
                       reference_price=price, decided_at=at)
                for leg in planned]

    # -- 2. sends ---------------------------------------------------------------------------

    def _ids(self, statuses: tuple[str, ...]) -> list[str]:
        """Intent ids in these states, oldest decision first and within one its buys first
        (a failure between two legs then never leaves a short option unhedged), from the
        orders table; each is read from its own stream before anything is done with it."""
        p = self.tables.p
        marks = ", ".join([p] * len(statuses))
        with self.ledger.transaction(read_only=True) as cursor:
            rows = self.tables.read(cursor, ORDERS, f"WHERE status IN ({marks}) ORDER BY "
                                    f"decided_at, CASE side WHEN 'BUY' THEN 0 ELSE 1 END, "
                                    f"intent_id", statuses)
        return [row["intent_id"] for row in rows]

    def _order(self, intent: str) -> Order:
        order = self.ledger.repository.get(Order.create_id(intent))
        assert isinstance(order, Order)
        return order

    def send_pending(self, epoch: int, fence: Callable[[Any], None] | None,
                     lease_remaining_ms: Callable[[], int] | None = None,
                     acknowledged: list[str] | None = None) -> int:
        """Send what is sendable (oldest first, bounded); ``acknowledged`` collects the ids
        the broker took, for this run's fills."""
        sent = 0
        for intent in self._ids(SENDABLE)[:self.settings.sends_per_run_max]:
            if lease_remaining_ms is not None and (
                    lease_remaining_ms() < self.settings.broker_timeout_ms):
                break  # the term may not outlast the call: the next leader sends it
            order = self._order(intent)
            if order.status not in SENDABLE:
                continue
            order.send(epoch, self.clock())
            self.ledger.save(order, fence=fence)  # recorded before the broker is asked
            result = self.broker.place(self._request(order))
            now = self.clock()
            if isinstance(result, Placed):
                order.acknowledge(result.order_id, now)
                self._recorded_ids.add(result.order_id)
                if acknowledged is not None:
                    acknowledged.append(intent)
            elif isinstance(result, Rejected):
                order.reject(result.reason, now)
                log.warning("order %s rejected by the broker: %s", intent, result.reason)
            elif isinstance(result, RateLimited | NotSent):
                order.not_placed(f"{type(result).__name__}: nothing placed", now)
            elif isinstance(result, Unknown):
                order.outcome_unknown(result.reason, now)
                log.warning("order %s: outcome unknown (%s); the order book will tell",
                            intent, result.reason)
            self.ledger.save(order, fence=fence)
            sent += 1
            if isinstance(result, RateLimited):
                time.sleep(min(result.retry_after_s, 1.0))  # bounded: the next run goes on
        return sent

    def _request(self, order: Order) -> OrderRequest:
        i = order.intent
        return OrderRequest(symbol=i.symbol, exchange=i.exchange, side=i.side,  # type: ignore[arg-type]
                            quantity=i.quantity, price_type=i.price_type,  # type: ignore[arg-type]
                            product=i.product,  # type: ignore[arg-type]
                            price=i.reference_price if i.price_type == "LIMIT" else None)

    # -- 3. doubts --------------------------------------------------------------------------

    def resolve_doubts(self, fence: Callable[[Any], None] | None) -> int:
        """Settle every order in doubt old enough to judge, by the broker's order book."""
        doubtful = [self._order(i) for i in self._ids(IN_DOUBT)]
        now = self.clock()
        settle_s = self.settings.doubt_settle_ms / 1000
        doubtful = [o for o in doubtful if o.status in IN_DOUBT and o.sent_at is not None
                    and (now - o.sent_at).total_seconds() >= settle_s]
        if not doubtful:
            return 0
        try:
            book = self.broker.order_book()
        except BrokerError as e:
            log.warning("order book unreadable (%s): %d orders stay in doubt", e, len(doubtful))
            return 0
        claimed = self._claimed_ids()
        resolved = 0
        for order in doubtful:
            i = order.intent
            match = next((b for b in book if b.order_id not in claimed and b.symbol == i.symbol
                          and b.side == i.side and b.quantity == i.quantity), None)
            if match is not None:
                claimed.add(match.order_id)
                self._recorded_ids.add(match.order_id)
                order.resolve(match.order_id, f"found in the order book as {match.order_id}",
                              self.clock())
            else:
                order.resolve(None, "not in the order book: nothing was placed", self.clock())
            self.ledger.save(order, fence=fence)
            resolved += 1
        return resolved

    def _claimed_ids(self) -> set[str]:
        with self.ledger.transaction(read_only=True) as cursor:
            cursor.execute("SELECT broker_order_id FROM orders WHERE broker_order_id IS NOT NULL")
            rows = cursor.fetchall()
        return {r["broker_order_id"] if isinstance(r, dict) else r[0] for r in rows} | set(
            self._recorded_ids)

    # -- 4. fills ---------------------------------------------------------------------------

    def collect_fills(self, fence: Callable[[Any], None] | None,
                      also: list[str] | None = None) -> int:
        """Record what working orders filled since last asked, each part once: a fill's
        id is the broker's order id and the cumulative quantity it brings the order to.
        ``also``: orders acknowledged in this run (the table may not list them yet)."""
        counted = 0
        for intent in dict.fromkeys([*self._ids(WORKING), *(also or [])]):
            order = self._order(intent)
            if order.status not in WORKING or order.broker_order_id is None:
                continue
            try:
                state = self.broker.order_status(order.broker_order_id)
            except BrokerError as e:
                log.warning("order %s: status unreadable (%s)", intent, e)
                continue
            if state.status == "rejected" and not state.filled_quantity:
                order.reject("rejected by the exchange", self.clock())
                self.ledger.save(order, fence=fence)
                continue
            new = state.filled_quantity - order.filled_quantity
            if new <= 0 or state.average_price is None:
                continue
            # The new part's price, from the cumulative average the broker reports.
            value = state.average_price * state.filled_quantity - order.filled_value
            trade = f"{order.broker_order_id}:{state.filled_quantity}"
            if order.fill(trade, new, value / new, self.clock()):
                self.ledger.save(order, fence=fence)
                counted += 1
        return counted

    # -- reconciliation ---------------------------------------------------------------------

    def expected_positions(self) -> dict[tuple[str, str], int]:
        """What the broker should hold for the ledger's open positions: signed units per
        (symbol, exchange). A synthetic future is long its CE and short its PE."""
        expected: dict[tuple[str, str], int] = {}
        for name in sorted(self.ledger.config.portfolios):
            for position_id in self.ledger.portfolio(name).holdings:
                position = self.ledger.position(position_id)
                instrument = self.ledger.config.instrument(position.instrument)
                assert instrument is not None
                for leg in legs(instrument.product, _contract(position), position.lots,
                                position.lot_size, True, exchange=order_exchange(instrument)):
                    key = (leg.symbol, leg.exchange)
                    signed = leg.quantity if leg.side == "BUY" else -leg.quantity
                    expected[key] = expected.get(key, 0) + signed
        return {key: quantity for key, quantity in expected.items() if quantity}

    def reconcile(self, fence: Callable[[Any], None] | None = None) -> list[dict[str, Any]]:
        """Compare the ledger's open quantities with the broker's position book; record the
        findings when they changed (``Desk.Reconciled``) and return them. Never trades: a
        repair goes through intents, by an operator's explicit decision."""
        expected = self.expected_positions()
        held: dict[tuple[str, str], int] = {}
        for p in self.broker.positions():
            held[(p.symbol, p.exchange)] = held.get((p.symbol, p.exchange), 0) + p.quantity
        findings = []
        for key in sorted(set(expected) | set(held)):
            want, have = expected.get(key, 0), held.get(key, 0)
            if want == have:
                continue
            kind = ("orphaned" if not have else "missing" if not want else
                    "quantity_mismatch")
            findings.append({"kind": kind, "symbol": key[0], "exchange": key[1],
                             "ledger_quantity": want, "broker_quantity": have})
        desk = self.desk()
        unchanged = len(desk.pending_events)  # a new desk's DeskOpened is not news either
        desk.reconciled(findings, self.clock())
        if len(desk.pending_events) > unchanged:
            self.ledger.save(desk, fence=fence)
        for finding in findings:
            log.warning("reconciliation: %s %s on %s: ledger %d, broker %d", finding["kind"],
                        finding["symbol"], finding["exchange"], finding["ledger_quantity"],
                        finding["broker_quantity"])
        return findings

    def orders(self) -> Iterator[Order]:
        """Every order, from the table's list, read from its stream."""
        for intent in self._ids(("intended", "sent", "unknown", "not_placed", "acknowledged",
                                 "partially_filled", "filled", "rejected")):
            yield self._order(intent)


def _contract(position: Position) -> Contract:
    return Contract(position.instrument, date.fromisoformat(position.expiry),
                    position.lot_size, position.point_value, position.margin_per_lot,
                    position.strike, position.ce_symbol, position.pe_symbol,
                    position.futures_symbol)


_POSITION_TOPICS = frozenset(get_topic(cls) for cls in (
    Position.PositionOpened, Position.PositionReduced, Position.Exited, Position.RolledOver))
