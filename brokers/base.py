"""What every broker adapter speaks: the order, the answers to placing it, and the books.

The answer to placing an order is a closed set of kinds, because the caller's next step
differs for each: ``Placed`` (record the order id), ``Rejected`` and ``NotSent`` (nothing
is at the broker), ``RateLimited`` (nothing is at the broker; wait), and ``Unknown`` (it may
be at the broker: read the books before doing anything else, never send it again blindly —
OpenAlgo has no client order id, so a resend is a second order).

Money is ``Decimal``, quantities are ``int`` (units, not lots). Reads that cannot be
answered raise a ``BrokerError``; reads are safe to repeat, placements are not.

``legs`` and ``roll_legs`` turn a position of the ledger (lots of a ``Contract``) into the
orders that open, close or roll it: pure, so the order outbox can record them as intents
before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol, get_args, runtime_checkable

from ledger.domain import Contract, Instrument, Product

Side = Literal["BUY", "SELL"]
PriceType = Literal["MARKET", "LIMIT", "SL", "SL-M"]
OrderProduct = Literal["MIS", "NRML", "CNC"]  # intraday, F&O overnight, equity delivery
OrderStatus = Literal["open", "complete", "rejected", "cancelled"]

SIDES: tuple[str, ...] = get_args(Side)
PRICE_TYPES: tuple[str, ...] = get_args(PriceType)
ORDER_PRODUCTS: tuple[str, ...] = get_args(OrderProduct)
ORDER_STATUSES: tuple[str, ...] = get_args(OrderStatus)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class OrderRequest:
    """One order for one symbol. Refused at construction if a broker would refuse it.

    ``strategy`` None means the adapter's own strategy name (OpenAlgo tags every order with
    one; it is a label for its books, not an idempotency key).
    """

    symbol: str
    exchange: str
    side: Side
    quantity: int
    price_type: PriceType = "MARKET"
    product: OrderProduct = "NRML"
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    strategy: str | None = None

    def __post_init__(self) -> None:
        if not self.symbol or not self.exchange:
            raise ValueError("symbol and exchange are required")
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {self.side!r}")
        if not _is_count(self.quantity):
            raise ValueError(f"quantity must be a positive int, not {self.quantity!r}")
        if self.price_type not in PRICE_TYPES:
            raise ValueError(f"price_type must be one of {PRICE_TYPES}")
        if self.product not in ORDER_PRODUCTS:
            raise ValueError(f"product must be one of {ORDER_PRODUCTS}")
        for name in ("price", "trigger_price"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite()
                                      or value < 0):
                raise ValueError(f"{name} must be a finite, non-negative Decimal")
        if self.price_type in ("LIMIT", "SL") and self.price is None:
            raise ValueError(f"a {self.price_type} order needs a price")
        if self.price_type in ("SL", "SL-M") and self.trigger_price is None:
            raise ValueError(f"a {self.price_type} order needs a trigger_price")


# --- What placing (or cancelling) an order can answer ---------------------------------------


@dataclass(frozen=True)
class Placed:
    """The broker took the order and named it. ``analyze``: OpenAlgo's analyzer (sandbox)
    took it, so no real order exists."""

    order_id: str
    analyze: bool = False


@dataclass(frozen=True)
class Rejected:
    """The broker refused it: nothing was placed (validation, a bad key, semi-auto
    mode queueing it for a human, a refusal from the broker)."""

    reason: str
    http_status: int | None = None


@dataclass(frozen=True)
class RateLimited:
    """Refused for rate, by the broker (429) or by our own limiter: nothing was placed."""

    retry_after_s: float


@dataclass(frozen=True)
class Unknown:
    """The request left us but no readable answer came back (timeout, reset, 5xx). The
    order MAY exist: resolve by reading the order book, never by sending it again."""

    reason: str
    http_status: int | None = None


@dataclass(frozen=True)
class NotSent:
    """Nothing left this process (connection refused, no route, DNS): safe to retry."""

    reason: str


@dataclass(frozen=True)
class Cancelled:
    order_id: str


PlaceResult = Placed | Rejected | RateLimited | Unknown | NotSent
CancelResult = Cancelled | Rejected | RateLimited | Unknown | NotSent


# --- The books ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderState:
    """An order as the broker's book shows it. ``average_price`` None: nothing filled."""

    order_id: str
    status: OrderStatus
    filled_quantity: int
    average_price: Decimal | None
    symbol: str
    side: Side
    quantity: int
    exchange: str = ""


@dataclass(frozen=True)
class Trade:
    """One fill. An order filled in parts has several. ``time`` is the broker's own text
    (its format differs from broker to broker; it is for people, not for ordering)."""

    order_id: str
    symbol: str
    side: Side
    quantity: int
    price: Decimal
    time: str


@dataclass(frozen=True)
class BrokerPosition:
    """The broker's net position: positive long, negative short, zero closed today."""

    symbol: str
    exchange: str
    product: str
    quantity: int


class BrokerError(Exception):
    """A read (or a cancel's lookup) the broker did not answer usefully."""


class BrokerUnavailable(BrokerError):
    """No answer: refused, timed out, 5xx, or rate-limited. A read may simply be repeated."""

    def __init__(self, message: str, *, retry_after_s: float | None = None,
                 http_status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.http_status = http_status


class BrokerRefused(BrokerError):
    """The broker answered with a refusal (4xx): repeating the same read will not help."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class OrderNotFound(BrokerRefused):
    """The broker does not know this order id."""


class BadAnswer(BrokerError):
    """An answer we cannot read (not JSON, a field missing, a quantity not a whole number)."""


@runtime_checkable
class Broker(Protocol):
    """What the order sender and the reconciler need from any broker."""

    def place(self, request: OrderRequest) -> PlaceResult:
        """Send one order, once. Never retries by itself."""
        ...

    def cancel(self, order_id: str) -> CancelResult:
        ...

    def order_status(self, order_id: str) -> OrderState:
        """Raises ``OrderNotFound`` for an id the broker does not know."""
        ...

    def order_book(self) -> list[OrderState]:
        ...

    def trade_book(self) -> list[Trade]:
        ...

    def positions(self) -> list[BrokerPosition]:
        ...


# --- Legs: the orders that open, close or roll a position -----------------------------------

Right = Literal["CE", "PE", "FUT"]

# Where an instrument's derivatives trade, by the exchange of its underlying (the ledger's
# Bank Nifty is an NSE index; its options trade on NSE's F&O segment, NFO).
DERIVATIVES_EXCHANGE = {"NSE": "NFO", "BSE": "BFO"}


def order_exchange(instrument: Instrument) -> str:
    """The exchange an instrument's orders go to: NFO for NSE index options, MCX for MCX."""
    return DERIVATIVES_EXCHANGE.get(instrument.exchange, instrument.exchange)


@dataclass(frozen=True)
class Leg:
    """One order of a position change: a symbol, a side and a quantity in units."""

    symbol: str
    exchange: str
    side: Side
    quantity: int
    right: Right
    opening: bool

    def order(self, *, strategy: str | None = None, product: OrderProduct = "NRML",
              price_type: PriceType = "MARKET", price: Decimal | None = None,
              trigger_price: Decimal | None = None) -> OrderRequest:
        """The order for this leg; NRML because F&O positions are held overnight."""
        return OrderRequest(symbol=self.symbol, exchange=self.exchange, side=self.side,
                            quantity=self.quantity, price_type=price_type, product=product,
                            price=price, trigger_price=trigger_price, strategy=strategy)


def _units(lots: int, lot_size: int) -> int:
    if not _is_count(lots) or not _is_count(lot_size):
        raise ValueError(f"lots and lot_size must be positive ints, not {lots!r}, {lot_size!r}")
    return lots * lot_size


def legs(product: Product, contract: Contract, lots: int, lot_size: int, opening: bool, *,
         exchange: str) -> list[Leg]:
    """The orders that open (``opening``) or close ``lots`` of a long position in ``contract``.

    ``lot_size`` is one lot in the broker's quantity: the contract's lot size on NFO; 1 at a
    broker that counts MCX futures in lots (OpenAlgo's ``symbol_info`` says which).

    A synthetic future is long the ATM call and short the ATM put: opening buys the CE and
    sells the PE, closing sells the CE and buys the PE. A future is one leg. Buys come
    first, so a failure between two legs never leaves a short option without its hedge.
    """
    quantity = _units(lots, lot_size)
    if product == "synthetic_future":
        if not (contract.ce_symbol and contract.pe_symbol):
            raise ValueError(f"contract {contract.instrument} {contract.expiry} has no CE/PE")
        ce = Leg(contract.ce_symbol, exchange, "BUY" if opening else "SELL", quantity, "CE",
                 opening)
        pe = Leg(contract.pe_symbol, exchange, "SELL" if opening else "BUY", quantity, "PE",
                 opening)
        return [ce, pe] if opening else [pe, ce]
    if product == "future":
        if not contract.futures_symbol:
            raise ValueError(f"contract {contract.instrument} {contract.expiry} has no future")
        return [Leg(contract.futures_symbol, exchange, "BUY" if opening else "SELL", quantity,
                    "FUT", opening)]
    raise ValueError(f"unknown product {product!r}")


def roll_legs(product: Product, old_contract: Contract, new_contract: Contract, lots: int, *,
              exchange: str, old_lot_size: int | None = None,
              new_lot_size: int | None = None) -> list[Leg]:
    """Close ``lots`` in the old contract, then open them in the new one.

    By default each side uses its own contract's lot size (a roll across a lot-size change
    keeps the lots and changes the units, as the ledger's ``Roll`` records); pass the
    broker's lot sizes where it counts quantity differently (some count MCX futures in
    lots: lot size 1). Four legs for a synthetic future, two for a future.
    """
    old_size = old_contract.lot_size if old_lot_size is None else old_lot_size
    new_size = new_contract.lot_size if new_lot_size is None else new_lot_size
    return [*legs(product, old_contract, lots, old_size, False, exchange=exchange),
            *legs(product, new_contract, lots, new_size, True, exchange=exchange)]
