"""Values the aggregates decide with and record: frozen, compared by value, stored in events.

Stream ids are here too: every stream's id is derived from a readable name, so the receipt of
a signal, a position and a portfolio can each be found (and conflict) by name alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

# Stream ids are uuid5 of a readable stream name under this namespace. Changing it orphans
# every stored stream: never do.
NAMESPACE = UUID("6a1f8a52-3c2e-4f2b-9a59-0b4c6d9e7f10")
HALF = Decimal("0.5")


def stream_name(kind: str, key: str) -> str:
    return f"{kind}:{key}"


def stream_id(kind: str, key: str) -> UUID:
    return uuid5(NAMESPACE, stream_name(kind, key))



# --- The signal being decided ------------------------------------------------------------


class SignalType(StrEnum):
    BASE_ENTRY = "BASE_ENTRY"
    PYRAMID = "PYRAMID"
    EXIT = "EXIT"
    MARKET_DATA = "MARKET_DATA"


ENTRY_TYPES = (SignalType.BASE_ENTRY, SignalType.PYRAMID)
BASE_LABEL = "Long_1"
EXIT_ALL = "ALL"


@dataclass(frozen=True)
class Signal:
    """A validated alert, normalized: upper-case type and instrument, canonical label, UTC."""

    portfolio: str
    type: SignalType
    instrument: str
    position: str | None  # "Long_N", or "ALL" on an EXIT; None on MARKET_DATA
    price: Decimal
    timestamp: datetime
    stop: Decimal | None = None
    atr: Decimal | None = None
    er: Decimal | None = None
    reason: str | None = None
    payload: Mapping[str, Any] | None = None  # the alert as received, secret removed
    raw: str | None = None  # its JSON text as received, the secret's member cut out

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.portfolio, self.instrument, self.type, self.position,
                           self.timestamp)



def fingerprint(portfolio: str, instrument: str, signal_type: str, position: str | None,
                timestamp: datetime) -> str:
    """SHA-256 over the normalized (portfolio, instrument, type, position, UTC second)."""
    second = timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = "|".join((portfolio, instrument.upper(), signal_type.upper(), position or "", second))
    return hashlib.sha256(text.encode()).hexdigest()


# --- The contract traded ----------------------------------------------------------------


@dataclass(frozen=True)
class Contract:
    """The monthly contract a position trades, and what is in force for it."""

    instrument: str
    expiry: date
    lot_size: int
    point_value: Decimal
    margin_per_lot: Decimal
    strike: int | None = None  # synthetic futures: the ATM strike of both legs
    ce_symbol: str | None = None
    pe_symbol: str | None = None
    futures_symbol: str | None = None

    @property
    def contract_month(self) -> str:
        return f"{self.expiry:%Y-%m}"


# --- What decisions read and record -------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """The latest price seen for an instrument, and the signal time it was seen at."""

    price: Decimal
    timestamp: datetime


@dataclass(frozen=True)
class Holding:
    """An open position as the portfolio sees it: what decisions read."""

    position_id: str
    instrument: str
    label: str
    is_base: bool
    lots: int
    entry_price: Decimal
    entry_timestamp: datetime
    initial_stop: Decimal
    current_stop: Decimal
    highest_close: Decimal
    atr: Decimal
    point_value: Decimal
    margin_per_lot: Decimal

    @property
    def risk(self) -> Decimal:
        return max(Decimal(0), self.entry_price - self.current_stop) * self.lots * self.point_value

    @property
    def volatility(self) -> Decimal:
        return self.atr * self.lots * self.point_value

    @property
    def margin(self) -> Decimal:
        return self.lots * self.margin_per_lot

    def pnl_at(self, price: Decimal, lots: int | None = None) -> Decimal:
        return (price - self.entry_price) * (self.lots if lots is None else lots) * self.point_value


@dataclass(frozen=True)
class PyramidState:
    """Per instrument: the base the pyramids build on, the last pyramid price, how many."""

    base_position_id: str | None
    last_pyramid_price: Decimal | None
    pyramids: int


@dataclass(frozen=True)
class StopChange:
    position_id: str
    highest_close: Decimal
    current_stop: Decimal
    previous_stop: Decimal


@dataclass(frozen=True)
class StopBreach:
    """A bar closed at or below a position's stop (the stop before this bar trailed it)."""

    position_id: str
    close: Decimal
    current_stop: Decimal
    at: datetime  # the bar's signal time


@dataclass(frozen=True)
class Closing:
    """Lots closed at a price, and the P&L realized into closed equity."""

    position_id: str
    lots: int
    price: Decimal
    realized_pnl: Decimal
    reason: str


@dataclass(frozen=True)
class Reason:
    code: str
    message: str


# Rejection reason codes (docs/EVENTS.md lists them with their meaning).
BASE_ALREADY_OPEN = "base_already_open"
POSITION_ALREADY_OPEN = "position_already_open"
NO_EQUITY = "no_equity"
ZERO_LOTS = "zero_lots"
RISK_CAP = "risk_cap"
VOLATILITY_CAP = "volatility_cap"
MARGIN_CAP = "margin_cap"
NO_BASE_POSITION = "no_base_position"
MAX_PYRAMIDS = "max_pyramids"
ONE_R_GATE = "one_r_gate"
ATR_SPACING_GATE = "atr_spacing_gate"
PROFIT_GATE = "profit_gate"
PYRAMID_RISK_CAP = "pyramid_risk_cap"
PYRAMID_VOLATILITY_CAP = "pyramid_volatility_cap"
POSITION_NOT_OPEN = "position_not_open"
NO_OPEN_POSITIONS = "no_open_positions"

# Closing reasons the ledger gives itself (an EXIT's own reason is the alert's).
PEEL_OFF = "peel_off"
STOP_HIT = "stop_hit"  # closed by its instrument's `exit` stop policy


@dataclass(frozen=True)
class Opening:
    """The facts of a new position, as PositionOpened records them."""

    position_id: str
    portfolio: str
    instrument: str
    label: str
    is_base: bool
    base_position_id: str | None
    fingerprint: str
    entry_timestamp: datetime
    entry_price: Decimal
    lots: int
    lot_size: int
    quantity: int
    point_value: Decimal
    margin_per_lot: Decimal
    initial_stop: Decimal
    signal_stop: Decimal
    atr: Decimal
    er: Decimal | None
    limiter: str
    sizing: dict[str, Decimal]
    equity: Decimal
    risk_contribution: Decimal
    vol_contribution: Decimal
    expiry: str
    contract_month: str
    strike: int | None
    ce_symbol: str | None
    pe_symbol: str | None
    futures_symbol: str | None

    def holding(self) -> Holding:
        return Holding(
            position_id=self.position_id,
            instrument=self.instrument,
            label=self.label,
            is_base=self.is_base,
            lots=self.lots,
            entry_price=self.entry_price,
            entry_timestamp=self.entry_timestamp,
            initial_stop=self.initial_stop,
            current_stop=self.initial_stop,
            highest_close=self.entry_price,
            atr=self.atr,
            point_value=self.point_value,
            margin_per_lot=self.margin_per_lot,
        )


@dataclass(frozen=True)
class Roll:
    """The facts of moving a position to the next contract."""

    position_id: str
    command_id: str
    at: datetime
    close_price: Decimal  # old contract closed here
    open_price: Decimal  # new contract opened here
    rollover_pnl: Decimal  # realized on the old contract
    old_expiry: str
    new_expiry: str
    old_strike: int | None
    new_strike: int | None
    lot_size: int
    point_value: Decimal
    margin_per_lot: Decimal
    quantity: int
    contract_month: str
    ce_symbol: str | None
    pe_symbol: str | None
    futures_symbol: str | None


@dataclass(frozen=True)
class Outcome:
    """What the portfolio decided about one signal, for the service layer to apply."""

    accepted: bool
    equity: Decimal | None = None
    reasons: tuple[Reason, ...] = ()
    lots: int | None = None
    limiter: str | None = None
    sizing: dict[str, Decimal] | None = None
    opened: Opening | None = None
    trailed: tuple[StopChange, ...] = ()
    closed: tuple[Closing, ...] = ()
    breached: tuple[StopBreach, ...] = ()
    position_ids: tuple[str, ...] = ()


# Value objects stored inside events: each is transcoded as a JSON object of its fields.
VALUE_TYPES: tuple[type, ...] = (Mark, Holding, PyramidState, StopChange, Closing, Opening, Roll)


def topic(name: str) -> str:
    """The stored topic of an aggregate or event class (``Position.PositionOpened``).

    Explicit, so classes can move between modules without orphaning stored events: every
    event ever written names its class under ``ledger.domain``, where the first version of
    the code defined them all. Changing a topic is a migration, never a refactoring.
    """
    return f"ledger.domain:{name}"
