"""``position:<position id>``: one position's lifecycle, the audit trail of a trade.

Written in the same transaction as the portfolio event that caused each change: opened,
trailed, reduced (peel-off), rolled to the next contract, exited.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.domain.values import (
    Closing,
    Contract,
    Opening,
    Roll,
    StopBreach,
    StopChange,
    stream_id,
    topic,
)

_OPENING_FIELDS = tuple(f.name for f in fields(Opening))
_ROLL_FIELDS = tuple(f.name for f in fields(Roll))


class Position(Aggregate):
    """One position from entry to exit: the audit trail of a trade."""

    TOPIC = topic("Position")

    # When a bar first closed at or below the stop (StopBreached); None until one does. A
    # class default, not set by PositionOpened: the state of a position never breached reads
    # exactly as it did before breaches were recorded.
    stop_breached_at = None

    class Created(Aggregate.Created):  # the library's base of the first event; never stored
        TOPIC = topic("Position.Created")

    @staticmethod
    def create_id(position_id: str) -> UUID:
        return stream_id("position", position_id)

    class PositionOpened(Aggregate.Created):
        """A position opened. Version 2 carries the ``Opening`` whole; version 1 (stores
        written before) spelled out its fields one by one."""

        TOPIC = topic("Position.PositionOpened")
        class_version = 2
        opening: Opening

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["opening"] = Opening(**{f: state.pop(f) for f in _OPENING_FIELDS})

    @event(PositionOpened)
    def __init__(self, opening: Opening) -> None:
        o = opening  # the fields of a new position keep the requirements' names
        self.position_id = o.position_id
        self.portfolio = o.portfolio
        self.instrument = o.instrument
        self.label = o.label
        self.is_base_position = o.is_base
        self.base_position_id = o.base_position_id
        self.fingerprint = o.fingerprint
        self.status = "open"
        self.entry_timestamp = o.entry_timestamp
        self.entry_price = o.entry_price
        self.lots = o.lots
        self.lot_size = o.lot_size
        self.quantity = o.quantity
        self.point_value = o.point_value
        self.margin_per_lot = o.margin_per_lot
        self.initial_stop = o.initial_stop
        self.current_stop = o.initial_stop
        self.highest_close = o.entry_price
        self.signal_stop = o.signal_stop
        self.atr = o.atr
        self.er = o.er
        self.limiter = o.limiter
        self.sizing = o.sizing
        self.equity_at_entry = o.equity
        self.risk_contribution = o.risk_contribution
        self.vol_contribution = o.vol_contribution
        self.realized_pnl = Decimal(0)
        self.expiry = o.expiry
        self.contract_month = o.contract_month
        self.strike = o.strike
        self.ce_symbol = o.ce_symbol
        self.pe_symbol = o.pe_symbol
        self.futures_symbol = o.futures_symbol
        self.rollover_status = "none"
        self.original_expiry = o.expiry
        self.original_strike = o.strike
        self.original_entry_price = o.entry_price
        self.rollover_timestamp: datetime | None = None
        self.rollover_pnl = Decimal(0)
        self.rollover_count = 0
        self.exit_price: Decimal | None = None
        self.exit_timestamp: datetime | None = None
        self.exit_reason: str | None = None

    @classmethod
    def open(cls, opening: Opening) -> Position:
        """A new position; its stream is named by its position id (``create_id``)."""
        return cls._create(cls.PositionOpened, id=cls.create_id(opening.position_id),
                           opening=opening)

    @property
    def is_open(self) -> bool:
        return self.status != "closed"

    def trail(self, fingerprint: str, change: StopChange, close: Decimal, atr: Decimal,
              at: datetime) -> None:
        assert self.is_open, f"{self.position_id} is closed"
        assert change.current_stop >= self.current_stop, "a stop never falls"
        assert change.highest_close >= self.highest_close
        self._stop_trailed(fingerprint=fingerprint, close=close, atr=atr,
                           highest_close=change.highest_close, current_stop=change.current_stop,
                           previous_stop=self.current_stop, at=at)

    def breach(self, fingerprint: str, breach: StopBreach) -> None:
        """Record that a bar closed at or below the stop (whatever the policy does next)."""
        assert self.is_open, f"{self.position_id} is closed"
        assert breach.position_id == self.position_id and breach.close <= self.current_stop
        self._stop_breached(fingerprint=fingerprint, close=breach.close,
                            current_stop=breach.current_stop, at=breach.at)

    def close(self, fingerprint: str, closing: Closing, at: datetime) -> None:
        """Close some lots (peel-off) or all of them (exit)."""
        assert self.is_open, f"{self.position_id} is closed"
        assert 0 < closing.lots <= self.lots
        if closing.lots < self.lots:
            self._position_reduced(fingerprint=fingerprint, lots_closed=closing.lots,
                                   lots_remaining=self.lots - closing.lots, price=closing.price,
                                   realized_pnl=closing.realized_pnl, reason=closing.reason, at=at)
        else:
            self._exited(fingerprint=fingerprint, exit_price=closing.price, exit_timestamp=at,
                         lots=closing.lots, realized_pnl=closing.realized_pnl,
                         reason=closing.reason)

    def plan_roll(self, contract: Contract, close_price: Decimal, open_price: Decimal,
                  at: datetime, command_id: str) -> Roll:
        """The facts of rolling this position into ``contract`` at the given leg prices."""
        assert self.is_open, f"{self.position_id} is closed"
        return Roll(
            position_id=self.position_id, command_id=command_id, at=at,
            close_price=close_price, open_price=open_price,
            rollover_pnl=(close_price - self.entry_price) * self.lots * self.point_value,
            old_expiry=self.expiry, new_expiry=contract.expiry.isoformat(),
            old_strike=self.strike, new_strike=contract.strike, lot_size=contract.lot_size,
            point_value=contract.point_value, margin_per_lot=contract.margin_per_lot,
            quantity=self.lots * contract.lot_size, contract_month=contract.contract_month,
            ce_symbol=contract.ce_symbol, pe_symbol=contract.pe_symbol,
            futures_symbol=contract.futures_symbol,
        )

    def roll(self, roll: Roll) -> None:
        assert self.is_open, f"{self.position_id} is closed"
        assert roll.position_id == self.position_id
        self._rolled_over(roll=roll)

    @event("StopTrailed", topic=topic("Position.StopTrailed"))
    def _stop_trailed(self, fingerprint: str, close: Decimal, atr: Decimal,
                      highest_close: Decimal, current_stop: Decimal, previous_stop: Decimal,
                      at: datetime) -> None:
        self.highest_close = highest_close
        self.current_stop = current_stop

    @event("StopBreached", topic=topic("Position.StopBreached"))
    def _stop_breached(self, fingerprint: str, close: Decimal, current_stop: Decimal,
                       at: datetime) -> None:
        first = self.stop_breached_at
        self.stop_breached_at = at if first is None else min(first, at)

    @event("PositionReduced", topic=topic("Position.PositionReduced"))
    def _position_reduced(self, fingerprint: str, lots_closed: int, lots_remaining: int,
                          price: Decimal, realized_pnl: Decimal, reason: str,
                          at: datetime) -> None:
        self.lots = lots_remaining
        self.quantity = lots_remaining * self.lot_size
        self.realized_pnl += realized_pnl
        self.status = "partial"

    @event("Exited", topic=topic("Position.Exited"))
    def _exited(self, fingerprint: str, exit_price: Decimal, exit_timestamp: datetime, lots: int,
                realized_pnl: Decimal, reason: str) -> None:
        self.status = "closed"
        self.realized_pnl += realized_pnl
        self.exit_price = exit_price
        self.exit_timestamp = exit_timestamp
        self.exit_reason = reason

    class RolledOver(Aggregate.Event):
        """Moved to the next contract. Version 2 carries the ``Roll`` whole; version 1
        spelled out its fields one by one."""

        TOPIC = topic("Position.RolledOver")
        class_version = 2
        roll: Roll

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["roll"] = Roll(**{f: state.pop(f) for f in _ROLL_FIELDS})

    @event(RolledOver)
    def _rolled_over(self, roll: Roll) -> None:
        r = roll
        self.entry_price = r.open_price
        self.expiry = r.new_expiry
        self.strike = r.new_strike
        self.lot_size = r.lot_size
        self.point_value = r.point_value
        self.margin_per_lot = r.margin_per_lot
        self.quantity = r.quantity
        self.contract_month = r.contract_month
        self.ce_symbol = r.ce_symbol
        self.pe_symbol = r.pe_symbol
        self.futures_symbol = r.futures_symbol
        self.rollover_status = "rolled"
        self.rollover_timestamp = r.at
        self.rollover_pnl += r.rollover_pnl
        self.rollover_count += 1

    def state(self) -> dict[str, Any]:
        """The position's fields (requirements' names), for history and projections."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
