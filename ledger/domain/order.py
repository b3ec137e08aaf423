"""``order:<intent id>``: one broker order's life, from the decision that wants it to its fills.

An order is intended only after the decision that wants it has committed (the order desk
follows the log), under an id derived from that decision and the leg, so recording it twice
is impossible: the stream's version 1 exists once. Sending is recorded *before* the broker is
called (``OrderSent``, with the leader's epoch), the answer after; a send whose answer was
never recorded (a crash in between, a timeout, a 5xx) is in doubt and is never sent again
until the broker's own books say it has no such order (``OrderResolved``).

``desk:<name>`` (``Desk``) holds the kill switch: halted, nothing is sent; intents are still
recorded and go out on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.domain.values import NAMESPACE, stream_id, topic

# What an order does to its position.
OPEN, CLOSE, REDUCE, ROLL_CLOSE, ROLL_OPEN = "open", "close", "reduce", "roll_close", "roll_open"
PURPOSES = (OPEN, CLOSE, REDUCE, ROLL_CLOSE, ROLL_OPEN)

# Order states. ``sendable``: nothing is at the broker (yet, or provably); ``in_doubt``: it may
# be; ``working``: the broker has it; the rest are final.
INTENDED, SENT, UNKNOWN, NOT_PLACED = "intended", "sent", "unknown", "not_placed"
ACKNOWLEDGED, PARTIALLY_FILLED, FILLED, REJECTED = (
    "acknowledged", "partially_filled", "filled", "rejected")
SENDABLE = (INTENDED, NOT_PLACED)
IN_DOUBT = (SENT, UNKNOWN)
WORKING = (ACKNOWLEDGED, PARTIALLY_FILLED)
FINAL = (FILLED, REJECTED)


@dataclass(frozen=True)
class Intent:
    """What a committed decision wants a broker to do, one leg of it."""

    intent_id: str
    portfolio: str
    position_id: str
    cause: str  # the decision's signal fingerprint, or a command id (``roll:...``)
    purpose: str  # PURPOSES
    leg: str  # CE, PE or FUT
    symbol: str
    exchange: str
    side: str  # BUY or SELL
    quantity: int  # units, as the broker counts them
    product: str  # NRML: F&O carried overnight
    price_type: str  # MARKET
    reference_price: Decimal  # the price the decision used: slippage is measured from it
    decided_at: datetime


def intent_id(cause: str, position_id: str, purpose: str, leg: str) -> str:
    """The same decision, position, purpose and leg always give the same id."""
    return str(uuid5(NAMESPACE, f"order:{cause}:{position_id}:{purpose}:{leg}"))


class Order(Aggregate):
    """One leg's order: intended, sent, answered, filled."""

    TOPIC = topic("Order")

    class Created(Aggregate.Created):  # the library's base of the first event; never stored
        TOPIC = topic("Order.Created")

    @staticmethod
    def create_id(intent_id: str) -> UUID:
        return stream_id("order", intent_id)

    @classmethod
    def intend(cls, intent: Intent) -> Order:
        return cls._create(cls.OrderIntended, id=cls.create_id(intent.intent_id),
                           intent=intent)

    @event("OrderIntended", topic=topic("Order.OrderIntended"))
    def __init__(self, intent: Intent) -> None:
        self.intent = intent
        self.status = INTENDED
        self.attempts = 0
        self.sent_epoch: int | None = None
        self.sent_at: datetime | None = None
        self.broker_order_id: str | None = None
        self.filled_quantity = 0
        self.filled_value = Decimal(0)  # Σ quantity × price of the fills
        self.trade_ids: list[str] = []
        self.reason: str | None = None

    # -- readings -------------------------------------------------------------------------

    @property
    def average_price(self) -> Decimal | None:
        return self.filled_value / self.filled_quantity if self.filled_quantity else None

    @property
    def slippage(self) -> Decimal | None:
        """Per unit, against the decided price, signed so that positive costs money. Only a
        futures leg trades the decided price's instrument: an option leg's price is a
        premium (a synthetic future's price is strike + CE - PE, across both legs)."""
        average = self.average_price
        if average is None or self.intent.leg != "FUT":
            return None
        difference = average - self.intent.reference_price
        return difference if self.intent.side == "BUY" else -difference

    # -- commands -------------------------------------------------------------------------

    def send(self, epoch: int, at: datetime) -> None:
        """Record that the broker is about to be asked (before asking it)."""
        assert self.status in SENDABLE, f"{self.intent.intent_id} is {self.status}"
        self._sent(epoch=epoch, at=at, attempt=self.attempts + 1)

    def acknowledge(self, broker_order_id: str, at: datetime) -> None:
        assert self.status in (SENT, UNKNOWN), self.status
        self._acknowledged(broker_order_id=broker_order_id, at=at)

    def reject(self, reason: str, at: datetime) -> None:
        assert self.status in (SENT, UNKNOWN, *WORKING), self.status
        self._rejected(reason=reason, at=at)

    def outcome_unknown(self, reason: str, at: datetime) -> None:
        assert self.status == SENT, self.status
        self._outcome_unknown(reason=reason, at=at)

    def resolve(self, broker_order_id: str | None, evidence: str, at: datetime) -> None:
        """An order in doubt, settled by the broker's books: found (it is working there) or
        provably absent (it may be sent again)."""
        assert self.status in IN_DOUBT, self.status
        self._resolved(broker_order_id=broker_order_id, evidence=evidence, at=at)

    def not_placed(self, reason: str, at: datetime) -> None:
        """The broker answered and placed nothing (rate limited, refused before sending)."""
        assert self.status == SENT, self.status
        self._resolved(broker_order_id=None, evidence=reason, at=at)

    def fill(self, trade_id: str, quantity: int, price: Decimal, at: datetime) -> bool:
        """Count one trade of this order once (a trade seen again is ignored): False if
        it was counted already."""
        if trade_id in self.trade_ids:
            return False
        assert self.status in WORKING, self.status
        assert 0 < quantity <= self.intent.quantity - self.filled_quantity, (
            f"{self.intent.intent_id}: a fill of {quantity} past the order's quantity")
        self._filled(trade_id=trade_id, quantity=quantity, price=price, at=at)
        return True

    # -- facts ----------------------------------------------------------------------------

    @event("OrderSent", topic=topic("Order.OrderSent"))
    def _sent(self, epoch: int, at: datetime, attempt: int) -> None:
        self.status = SENT
        self.attempts = attempt
        self.sent_epoch = epoch
        self.sent_at = at

    @event("OrderAcknowledged", topic=topic("Order.OrderAcknowledged"))
    def _acknowledged(self, broker_order_id: str, at: datetime) -> None:
        self.status = ACKNOWLEDGED
        self.broker_order_id = broker_order_id

    @event("OrderRejected", topic=topic("Order.OrderRejected"))
    def _rejected(self, reason: str, at: datetime) -> None:
        self.status = REJECTED
        self.reason = reason

    @event("OrderOutcomeUnknown", topic=topic("Order.OrderOutcomeUnknown"))
    def _outcome_unknown(self, reason: str, at: datetime) -> None:
        self.status = UNKNOWN
        self.reason = reason

    @event("OrderResolved", topic=topic("Order.OrderResolved"))
    def _resolved(self, broker_order_id: str | None, evidence: str, at: datetime) -> None:
        if broker_order_id is None:
            self.status = NOT_PLACED
        else:
            self.status = ACKNOWLEDGED
            self.broker_order_id = broker_order_id
        self.reason = evidence

    @event("OrderFilled", topic=topic("Order.OrderFilled"))
    def _filled(self, trade_id: str, quantity: int, price: Decimal, at: datetime) -> None:
        self.trade_ids = [*self.trade_ids, trade_id]
        self.filled_quantity += quantity
        self.filled_value += quantity * price
        self.status = FILLED if self.filled_quantity == self.intent.quantity else PARTIALLY_FILLED


class Desk(Aggregate):
    """``desk:<name>``: the kill switch of the order desk."""

    TOPIC = topic("Desk")

    class Created(Aggregate.Created):  # never stored
        TOPIC = topic("Desk.Created")

    @staticmethod
    def create_id(name: str) -> UUID:
        return stream_id("desk", name)

    @event("DeskOpened", topic=topic("Desk.DeskOpened"))
    def __init__(self, name: str) -> None:
        self.name = name
        self.halted = False
        self.reason: str | None = None
        self.findings: list[dict[str, Any]] = []  # the last reconciliation's
        self.reconciled_at: datetime | None = None

    def reconciled(self, findings: list[dict[str, Any]], at: datetime) -> None:
        """Record a reconciliation whose findings differ from the last one's (an unchanged
        result is not news: the log would fill with the same facts every few minutes; a
        first clean one is not news either)."""
        if findings != self.findings:
            self._reconciled(findings=findings, at=at)

    def halt(self, reason: str, at: datetime) -> None:
        if not self.halted:
            self._halted(reason=reason, at=at)

    def resume(self, at: datetime) -> None:
        if self.halted:
            self._resumed(at=at)

    @event("Halted", topic=topic("Desk.Halted"))
    def _halted(self, reason: str, at: datetime) -> None:
        self.halted = True
        self.reason = reason

    @event("Resumed", topic=topic("Desk.Resumed"))
    def _resumed(self, at: datetime) -> None:
        self.halted = False
        self.reason = None

    @event("Reconciled", topic=topic("Desk.Reconciled"))
    def _reconciled(self, findings: list[dict[str, Any]], at: datetime) -> None:
        self.findings = findings
        self.reconciled_at = at
