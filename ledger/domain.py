"""The event catalogue and the aggregates that decide.

Three kinds of stream (see docs/ARCHITECTURE.md):

- ``portfolio:<name>`` (Portfolio): the decision journal. Every decision appends exactly one
  event here, so two deciders working from the same portfolio version conflict and one retries.
  Its state is everything a decision reads: closed equity, marks, open holdings, pyramiding.
- ``position:<position id>`` (Position): one position's lifecycle, from PositionOpened to
  Exited, written in the same transaction as the portfolio event that caused it.
- ``signal:<fingerprint>`` (SignalRecord): version 1 is the receipt of a decided signal. Its
  unique key is what makes a second delivery of the same alert a duplicate.

Command methods decide and raise nothing for business outcomes: a rejection is an event.
Methods decorated with ``@event`` only apply facts (they run again on every replay).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger import sizing
from ledger.calendar import Contract
from ledger.config import Instrument, PortfolioParams
from ledger.signals import BASE_LABEL, EXIT_ALL, Signal, SignalType

# Stream ids are uuid5 of a readable stream name under this namespace. Changing it orphans
# every stored stream: never do.
NAMESPACE = UUID("6a1f8a52-3c2e-4f2b-9a59-0b4c6d9e7f10")
HALF = Decimal("0.5")


def stream_name(kind: str, key: str) -> str:
    return f"{kind}:{key}"


def stream_id(kind: str, key: str) -> UUID:
    return uuid5(NAMESPACE, stream_name(kind, key))


# --- Value objects carried in events and state ------------------------------------------


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
    position_ids: tuple[str, ...] = ()


VALUE_TYPES: tuple[type, ...] = (Mark, Holding, PyramidState, StopChange, Closing, Roll)


# --- Portfolio: the decider --------------------------------------------------------------


class Portfolio(Aggregate):
    """A named portfolio's books and its decision journal."""

    @staticmethod
    def create_id(name: str) -> UUID:
        return stream_id("portfolio", name)

    @event("PortfolioOpened")
    def __init__(self, name: str, initial_capital: Decimal) -> None:
        self.name = name
        self.initial_capital = initial_capital
        self.closed_equity = initial_capital
        self.holdings: dict[str, Holding] = {}
        self.marks: dict[str, Mark] = {}
        self.pyramiding: dict[str, PyramidState] = {}
        self.entries: dict[str, int] = {}  # "INSTRUMENT/Long_N" -> positions opened so far

    # -- readings -------------------------------------------------------------------------

    def holdings_of(self, instrument: str) -> list[Holding]:
        return [h for h in self.holdings.values() if h.instrument == instrument]

    def unrealized(self, marks: dict[str, Mark] | None = None,
                   instrument: str | None = None) -> Decimal:
        marks = self.marks if marks is None else marks
        return sum(
            (h.pnl_at(marks[h.instrument].price) for h in self.holdings.values()
             if instrument is None or h.instrument == instrument),
            Decimal(0),
        )

    def equity(self, mode: str, marks: dict[str, Mark] | None = None) -> Decimal:
        """Equity for decisions: closed, open (closed + unrealized) or blended (+ half)."""
        if mode == "closed":
            return self.closed_equity
        unrealized = self.unrealized(marks)
        return self.closed_equity + (unrealized if mode == "open" else unrealized * HALF)

    @property
    def open_risk(self) -> Decimal:
        return sum((h.risk for h in self.holdings.values()), Decimal(0))

    @property
    def open_volatility(self) -> Decimal:
        return sum((h.volatility for h in self.holdings.values()), Decimal(0))

    @property
    def margin_used(self) -> Decimal:
        return sum((h.margin for h in self.holdings.values()), Decimal(0))

    def base_of(self, instrument: str) -> Holding | None:
        state = self.pyramiding.get(instrument)
        if state is None or state.base_position_id is None:
            return None
        return self.holdings.get(state.base_position_id)

    def open_label(self, instrument: str, label: str) -> Holding | None:
        for h in self.holdings_of(instrument):
            if h.label == label:
                return h
        return None

    def _marks_with(self, instrument: str, mark: Mark) -> dict[str, Mark]:
        """Marks after seeing ``mark``: a price counts only if it is not older than the last."""
        current = self.marks.get(instrument)
        if current is not None and current.timestamp > mark.timestamp:
            return self.marks
        return {**self.marks, instrument: mark}

    # -- commands -------------------------------------------------------------------------

    def decide(self, signal: Signal, params: PortfolioParams, instrument: Instrument,
               contract: Contract) -> Outcome:
        """Decide one validated signal; append exactly one event to this stream."""
        assert signal.portfolio == self.name and signal.instrument == instrument.name
        mark = Mark(signal.price, signal.timestamp)
        marks = self._marks_with(signal.instrument, mark)
        if signal.type is SignalType.BASE_ENTRY:
            outcome = self._decide_base_entry(signal, params, instrument, contract, marks)
        elif signal.type is SignalType.PYRAMID:
            outcome = self._decide_pyramid(signal, params, instrument, contract, marks)
        elif signal.type is SignalType.EXIT:
            outcome = self._decide_exit(signal, marks)
        else:
            outcome = self._decide_market_data(signal, params, instrument, marks)

        if not outcome.accepted:
            self._signal_rejected(
                fingerprint=signal.fingerprint, signal_type=signal.type.value,
                instrument=signal.instrument, position=signal.position, mark=mark,
                reasons=[{"code": r.code, "message": r.message} for r in outcome.reasons],
            )
        elif outcome.opened is not None:
            self._entry_accepted(fingerprint=signal.fingerprint, holding=outcome.opened.holding(),
                                 mark=mark, equity=outcome.equity)
        elif signal.type is SignalType.EXIT:
            self._exit_accepted(fingerprint=signal.fingerprint, instrument=signal.instrument,
                                mark=mark, closings=list(outcome.closed))
        else:
            self._market_marked(fingerprint=signal.fingerprint, instrument=signal.instrument,
                                mark=mark, atr=signal.atr, trailed=list(outcome.trailed),
                                reductions=list(outcome.closed))
        return outcome

    def _caps(self, equity: Decimal, risk_cap: Decimal, vol_cap: Decimal, new_risk: Decimal,
              new_vol: Decimal, codes: tuple[str, str]) -> list[Reason]:
        reasons = []
        risk_pct = sizing.percent(self.open_risk + new_risk, equity)
        vol_pct = sizing.percent(self.open_volatility + new_vol, equity)
        if risk_pct > risk_cap:
            reasons.append(Reason(codes[0], f"open risk would be {risk_pct:.2f}% of equity, "
                                            f"cap {risk_cap}%"))
        if vol_pct > vol_cap:
            reasons.append(Reason(codes[1], f"open volatility would be {vol_pct:.2f}% of "
                                            f"equity, cap {vol_cap}%"))
        return reasons

    def _opening(self, signal: Signal, instrument: Instrument, contract: Contract, lots: int,
                 sized: sizing.Sizing, equity: Decimal, base_position_id: str | None) -> Opening:
        assert signal.atr is not None and signal.stop is not None and signal.position
        initial_stop = signal.price - instrument.initial_atr_multiple * signal.atr
        key = f"{instrument.name}/{signal.position}"
        number = self.entries.get(key, 0) + 1
        risk = (signal.price - initial_stop) * lots * contract.point_value
        vol = signal.atr * lots * contract.point_value
        return Opening(
            position_id=f"{self.name}:{instrument.name}:{signal.position}:{number}",
            portfolio=self.name,
            instrument=instrument.name,
            label=signal.position,
            is_base=base_position_id is None,
            base_position_id=base_position_id,
            fingerprint=signal.fingerprint,
            entry_timestamp=signal.timestamp,
            entry_price=signal.price,
            lots=lots,
            lot_size=contract.lot_size,
            quantity=lots * contract.lot_size,
            point_value=contract.point_value,
            margin_per_lot=contract.margin_per_lot,
            initial_stop=initial_stop,
            signal_stop=signal.stop,
            atr=signal.atr,
            er=signal.er,
            limiter=sized.limiter,
            sizing=sized.recorded(),
            equity=equity,
            risk_contribution=sizing.percent(risk, equity).quantize(sizing.RATIO_PLACES),
            vol_contribution=sizing.percent(vol, equity).quantize(sizing.RATIO_PLACES),
            expiry=contract.expiry.isoformat(),
            contract_month=contract.contract_month,
            strike=contract.strike,
            ce_symbol=contract.ce_symbol,
            pe_symbol=contract.pe_symbol,
            futures_symbol=contract.futures_symbol,
        )

    def _decide_base_entry(self, signal: Signal, params: PortfolioParams,
                           instrument: Instrument, contract: Contract,
                           marks: dict[str, Mark]) -> Outcome:
        assert signal.stop is not None and signal.atr is not None and signal.er is not None
        equity = self.equity(params.equity_mode, marks)
        base = self.base_of(instrument.name)
        if base is not None:
            return Outcome(False, equity, (Reason(
                BASE_ALREADY_OPEN, f"{base.position_id} is the open base on {instrument.name}"),))
        if equity <= 0:
            return Outcome(False, equity, (Reason(NO_EQUITY, f"equity is {equity}"),))
        if self.open_label(instrument.name, BASE_LABEL) is not None:  # pragma: no cover
            raise AssertionError("an open Long_1 is always the base")
        available = equity * params.max_margin_percent / sizing.HUNDRED - self.margin_used
        sized = sizing.size_base_entry(
            equity=equity, available_margin=available, price=signal.price,
            signal_stop=signal.stop, atr=signal.atr, er=signal.er,
            point_value=contract.point_value, margin_per_lot=contract.margin_per_lot,
            initial_risk_percent=instrument.initial_risk_percent,
            initial_vol_percent=instrument.initial_vol_percent,
        )
        lots = sized.lots
        initial_stop = signal.price - instrument.initial_atr_multiple * signal.atr
        reasons: list[Reason] = []
        if lots == 0:
            reasons.append(Reason(ZERO_LOTS, f"sizing gives 0 lots (limiter {sized.limiter}: "
                                             f"{sized.candidates[sized.limiter]:.4f})"))
        reasons += self._caps(
            equity, params.max_risk_percent, params.max_vol_percent,
            lots * (signal.price - initial_stop) * contract.point_value,
            lots * signal.atr * contract.point_value, (RISK_CAP, VOLATILITY_CAP))
        margin_cap = equity * params.max_margin_percent / sizing.HUNDRED
        if self.margin_used + lots * contract.margin_per_lot > margin_cap:
            reasons.append(Reason(MARGIN_CAP, f"margin would exceed {params.max_margin_percent}%"
                                              f" of equity"))
        if reasons:
            return Outcome(False, equity, tuple(reasons), lots, sized.limiter, sized.recorded())
        opening = self._opening(signal, instrument, contract, lots, sized, equity, None)
        return Outcome(True, equity, (), lots, sized.limiter, sized.recorded(), opened=opening,
                       position_ids=(opening.position_id,))

    def _decide_pyramid(self, signal: Signal, params: PortfolioParams, instrument: Instrument,
                        contract: Contract, marks: dict[str, Mark]) -> Outcome:
        assert signal.stop is not None and signal.atr is not None and signal.position
        equity = self.equity(params.equity_mode, marks)
        reasons: list[Reason] = []
        taken = self.open_label(instrument.name, signal.position)
        if taken is not None:
            reasons.append(Reason(POSITION_ALREADY_OPEN, f"{taken.position_id} is open"))
        base = self.base_of(instrument.name)
        if base is None:
            reasons.append(Reason(NO_BASE_POSITION, f"no open base position on {instrument.name}"))
            return Outcome(False, equity, tuple(reasons))
        if equity <= 0:
            reasons.append(Reason(NO_EQUITY, f"equity is {equity}"))
            return Outcome(False, equity, tuple(reasons))
        state = self.pyramiding[instrument.name]
        price = signal.price
        if state.pyramids >= instrument.max_pyramids:
            reasons.append(Reason(MAX_PYRAMIDS, f"{state.pyramids} pyramids taken, "
                                                f"max {instrument.max_pyramids}"))
        one_r = base.entry_price - base.initial_stop
        if not price - base.entry_price > one_r:
            reasons.append(Reason(ONE_R_GATE, f"price - base entry = {price - base.entry_price} "
                                              f"is not above 1R = {one_r}"))
        last = state.last_pyramid_price
        if last is None:
            last = base.entry_price
        spacing = (price - last) / signal.atr
        if spacing < params.pyramid_spacing_atr:
            reasons.append(Reason(ATR_SPACING_GATE, f"{spacing:.4f} ATR from the last pyramid at "
                                                    f"{last}, need {params.pyramid_spacing_atr}"))
        unrealized = sum((h.pnl_at(price) for h in self.holdings_of(instrument.name)), Decimal(0))
        if not unrealized > 0:
            reasons.append(Reason(PROFIT_GATE, f"{instrument.name} unrealized P&L at {price} "
                                               f"is {unrealized}"))
        available = equity * params.max_margin_percent / sizing.HUNDRED - self.margin_used
        base_risk = one_r * base.lots * base.point_value
        sized = sizing.size_pyramid(
            available_margin=available, margin_per_lot=contract.margin_per_lot,
            base_lots=base.lots, base_fraction=params.pyramid_base_fraction,
            instrument_unrealized=unrealized, base_risk=base_risk,
            profit_fraction=params.pyramid_profit_fraction, price=price,
            signal_stop=signal.stop, point_value=contract.point_value,
        )
        lots = sized.lots
        if lots == 0:
            reasons.append(Reason(ZERO_LOTS, f"sizing gives 0 lots (limiter {sized.limiter}: "
                                             f"{sized.candidates[sized.limiter]:.4f})"))
        initial_stop = price - instrument.initial_atr_multiple * signal.atr
        reasons += self._caps(
            equity, params.pyramid_max_risk_percent, params.pyramid_max_vol_percent,
            lots * (price - initial_stop) * contract.point_value,
            lots * signal.atr * contract.point_value,
            (PYRAMID_RISK_CAP, PYRAMID_VOLATILITY_CAP))
        if reasons:
            return Outcome(False, equity, tuple(reasons), lots, sized.limiter, sized.recorded())
        opening = self._opening(signal, instrument, contract, lots, sized, equity,
                                base.position_id)
        return Outcome(True, equity, (), lots, sized.limiter, sized.recorded(), opened=opening,
                       position_ids=(opening.position_id,))

    def _decide_exit(self, signal: Signal, marks: dict[str, Mark]) -> Outcome:
        # Only positions entered at or before the exit's own time: a late EXIT never closes a
        # position opened after it was sent.
        candidates = [h for h in self.holdings_of(signal.instrument)
                      if h.entry_timestamp <= signal.timestamp]
        if signal.position == EXIT_ALL:
            targets = candidates
            if not targets:
                return Outcome(False, reasons=(Reason(
                    NO_OPEN_POSITIONS, f"no open positions on {signal.instrument}"),))
        else:
            targets = [h for h in candidates if h.label == signal.position]
            if not targets:
                return Outcome(False, reasons=(Reason(
                    POSITION_NOT_OPEN, f"{signal.position} is not open on {signal.instrument}"),))
        reason = signal.reason or "exit_signal"
        closings = tuple(Closing(h.position_id, h.lots, signal.price, h.pnl_at(signal.price),
                                 reason) for h in targets)
        return Outcome(True, lots=sum(c.lots for c in closings), closed=closings,
                       position_ids=tuple(c.position_id for c in closings))

    def _decide_market_data(self, signal: Signal, params: PortfolioParams,
                            instrument: Instrument, marks: dict[str, Mark]) -> Outcome:
        assert signal.atr is not None
        trailed: list[StopChange] = []
        trailed_stops: dict[str, Decimal] = {}
        for h in self.holdings_of(instrument.name):
            if h.entry_timestamp > signal.timestamp:
                continue  # a bar from before the entry says nothing about this position
            highest, stop = sizing.trail(h.highest_close, h.current_stop, signal.price,
                                         signal.atr, instrument.trailing_atr_multiple)
            trailed_stops[h.position_id] = stop
            if (highest, stop) != (h.highest_close, h.current_stop):
                trailed.append(StopChange(h.position_id, highest, stop, h.current_stop))
        reductions: list[Closing] = []
        equity = self.equity(params.equity_mode, marks)
        if params.peel_off and equity > 0:
            reductions = self._peel_off(instrument, trailed_stops, marks, equity)
        return Outcome(True, equity, trailed=tuple(trailed), closed=tuple(reductions),
                       position_ids=tuple(dict.fromkeys(
                           [t.position_id for t in trailed] + [r.position_id for r in reductions])))

    def _peel_off(self, instrument: Instrument, stops: dict[str, Decimal],
                  marks: dict[str, Mark], equity: Decimal) -> list[Closing]:
        """Shed lots from positions whose risk or volatility exceeds the ongoing limits."""
        price = marks[instrument.name].price
        risk_limit = equity * instrument.ongoing_risk_percent / sizing.HUNDRED
        vol_limit = equity * instrument.ongoing_vol_percent / sizing.HUNDRED
        reductions = []
        for h in self.holdings_of(instrument.name):
            if h.position_id not in stops:
                continue
            per_lot_risk = max(Decimal(0), h.entry_price - stops[h.position_id]) * h.point_value
            per_lot_vol = h.atr * h.point_value
            shed = max(
                sizing.peel_off_lots(amount=per_lot_risk * h.lots, limit=risk_limit,
                                     per_lot=per_lot_risk),
                sizing.peel_off_lots(amount=per_lot_vol * h.lots, limit=vol_limit,
                                     per_lot=per_lot_vol),
            )
            if shed:
                shed = min(shed, h.lots)
                reductions.append(Closing(h.position_id, shed, price, h.pnl_at(price, shed),
                                          "peel_off"))
        return reductions

    def roll(self, roll: Roll) -> None:
        """Move an open position to the next contract; its old-contract P&L is realized."""
        holding = self.holdings.get(roll.position_id)
        if holding is None:
            raise ValueError(f"{roll.position_id} is not open")
        self._position_rolled(roll=roll)

    # -- facts ----------------------------------------------------------------------------

    def _apply_mark(self, instrument: str, mark: Mark) -> None:
        self.marks = self._marks_with(instrument, mark)

    def _close(self, closing: Closing) -> None:
        holding = self.holdings[closing.position_id]
        self.closed_equity += closing.realized_pnl
        if closing.lots < holding.lots:
            self.holdings[holding.position_id] = replace(holding, lots=holding.lots - closing.lots)
            return
        del self.holdings[holding.position_id]
        state = self.pyramiding.get(holding.instrument)
        if state is not None and state.base_position_id == holding.position_id:
            self.pyramiding[holding.instrument] = replace(state, base_position_id=None)

    @event("SignalRejected")
    def _signal_rejected(self, fingerprint: str, signal_type: str, instrument: str,
                         position: str | None, mark: Mark, reasons: list[dict[str, str]]) -> None:
        self._apply_mark(instrument, mark)

    @event("EntryAccepted")
    def _entry_accepted(self, fingerprint: str, holding: Holding, mark: Mark,
                        equity: Decimal) -> None:
        self._apply_mark(holding.instrument, mark)
        self.holdings[holding.position_id] = holding
        key = f"{holding.instrument}/{holding.label}"
        self.entries[key] = self.entries.get(key, 0) + 1
        if holding.is_base:
            self.pyramiding[holding.instrument] = PyramidState(
                holding.position_id, holding.entry_price, 0)
        else:
            state = self.pyramiding[holding.instrument]
            self.pyramiding[holding.instrument] = replace(
                state, last_pyramid_price=holding.entry_price, pyramids=state.pyramids + 1)

    @event("ExitAccepted")
    def _exit_accepted(self, fingerprint: str, instrument: str, mark: Mark,
                       closings: list[Closing]) -> None:
        self._apply_mark(instrument, mark)
        for closing in closings:
            self._close(closing)

    @event("MarketMarked")
    def _market_marked(self, fingerprint: str, instrument: str, mark: Mark, atr: Decimal,
                       trailed: list[StopChange], reductions: list[Closing]) -> None:
        self._apply_mark(instrument, mark)
        for change in trailed:
            self.holdings[change.position_id] = replace(
                self.holdings[change.position_id], highest_close=change.highest_close,
                current_stop=change.current_stop)
        for closing in reductions:
            self._close(closing)

    @event("PositionRolled")
    def _position_rolled(self, roll: Roll) -> None:
        holding = self.holdings[roll.position_id]
        self.closed_equity += roll.rollover_pnl
        self.holdings[roll.position_id] = replace(
            holding, entry_price=roll.open_price, point_value=roll.point_value,
            margin_per_lot=roll.margin_per_lot)


# --- Position: one lifecycle --------------------------------------------------------------


class Position(Aggregate):
    """One position from entry to exit: the audit trail of a trade."""

    @staticmethod
    def create_id(position_id: str) -> UUID:
        return stream_id("position", position_id)

    @event("PositionOpened")
    def __init__(self, position_id: str, portfolio: str, instrument: str, label: str,
                 is_base: bool, base_position_id: str | None, fingerprint: str,
                 entry_timestamp: datetime, entry_price: Decimal, lots: int, lot_size: int,
                 quantity: int, point_value: Decimal, margin_per_lot: Decimal,
                 initial_stop: Decimal, signal_stop: Decimal, atr: Decimal, er: Decimal | None,
                 limiter: str, sizing: dict[str, Decimal], equity: Decimal,
                 risk_contribution: Decimal, vol_contribution: Decimal, expiry: str,
                 contract_month: str, strike: int | None, ce_symbol: str | None,
                 pe_symbol: str | None, futures_symbol: str | None) -> None:
        self.position_id = position_id
        self.portfolio = portfolio
        self.instrument = instrument
        self.label = label
        self.is_base_position = is_base
        self.base_position_id = base_position_id
        self.fingerprint = fingerprint
        self.status = "open"
        self.entry_timestamp = entry_timestamp
        self.entry_price = entry_price
        self.lots = lots
        self.lot_size = lot_size
        self.quantity = quantity
        self.point_value = point_value
        self.margin_per_lot = margin_per_lot
        self.initial_stop = initial_stop
        self.current_stop = initial_stop
        self.highest_close = entry_price
        self.signal_stop = signal_stop
        self.atr = atr
        self.er = er
        self.limiter = limiter
        self.sizing = sizing
        self.equity_at_entry = equity
        self.risk_contribution = risk_contribution
        self.vol_contribution = vol_contribution
        self.realized_pnl = Decimal(0)
        self.expiry = expiry
        self.contract_month = contract_month
        self.strike = strike
        self.ce_symbol = ce_symbol
        self.pe_symbol = pe_symbol
        self.futures_symbol = futures_symbol
        self.rollover_status = "none"
        self.original_expiry = expiry
        self.original_strike = strike
        self.original_entry_price = entry_price
        self.rollover_timestamp: datetime | None = None
        self.rollover_pnl = Decimal(0)
        self.rollover_count = 0
        self.exit_price: Decimal | None = None
        self.exit_timestamp: datetime | None = None
        self.exit_reason: str | None = None

    @classmethod
    def open(cls, opening: Opening) -> Position:
        return cls(**opening.__dict__)

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
        self._rolled_over(**roll.__dict__)

    @event("StopTrailed")
    def _stop_trailed(self, fingerprint: str, close: Decimal, atr: Decimal,
                      highest_close: Decimal, current_stop: Decimal, previous_stop: Decimal,
                      at: datetime) -> None:
        self.highest_close = highest_close
        self.current_stop = current_stop

    @event("PositionReduced")
    def _position_reduced(self, fingerprint: str, lots_closed: int, lots_remaining: int,
                          price: Decimal, realized_pnl: Decimal, reason: str,
                          at: datetime) -> None:
        self.lots = lots_remaining
        self.quantity = lots_remaining * self.lot_size
        self.realized_pnl += realized_pnl
        self.status = "partial"

    @event("Exited")
    def _exited(self, fingerprint: str, exit_price: Decimal, exit_timestamp: datetime, lots: int,
                realized_pnl: Decimal, reason: str) -> None:
        self.status = "closed"
        self.realized_pnl += realized_pnl
        self.exit_price = exit_price
        self.exit_timestamp = exit_timestamp
        self.exit_reason = reason

    @event("RolledOver")
    def _rolled_over(self, position_id: str, command_id: str, at: datetime,
                     close_price: Decimal, open_price: Decimal, rollover_pnl: Decimal,
                     old_expiry: str, new_expiry: str, old_strike: int | None,
                     new_strike: int | None, lot_size: int, point_value: Decimal,
                     margin_per_lot: Decimal, quantity: int, contract_month: str,
                     ce_symbol: str | None, pe_symbol: str | None,
                     futures_symbol: str | None) -> None:
        self.entry_price = open_price
        self.expiry = new_expiry
        self.strike = new_strike
        self.lot_size = lot_size
        self.point_value = point_value
        self.margin_per_lot = margin_per_lot
        self.quantity = quantity
        self.contract_month = contract_month
        self.ce_symbol, self.pe_symbol, self.futures_symbol = ce_symbol, pe_symbol, futures_symbol
        self.rollover_status = "rolled"
        self.rollover_timestamp = at
        self.rollover_pnl += rollover_pnl
        self.rollover_count += 1

    def state(self) -> dict[str, Any]:
        """The position's fields (requirements' names), for history and projections."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


# --- SignalRecord: the receipt that makes a signal unique ---------------------------------


class SignalRecord(Aggregate):
    """Version 1 of ``signal:<fingerprint>``: the first decision, returned to every retry."""

    @staticmethod
    def create_id(fingerprint: str) -> UUID:
        return stream_id("signal", fingerprint)

    @event("SignalDecided")
    def __init__(self, fingerprint: str, portfolio: str, signal_type: str, instrument: str,
                 position: str | None, signal_timestamp: datetime, payload: dict[str, Any],
                 decision: dict[str, Any], received_at: datetime, instance_id: str) -> None:
        self.fingerprint = fingerprint
        self.portfolio = portfolio
        self.signal_type = signal_type
        self.instrument = instrument
        self.position = position
        self.signal_timestamp = signal_timestamp
        self.payload = payload
        self.decision = decision
        self.received_at = received_at
        self.instance_id = instance_id
        self.deliveries = 1

    def redeliver(self, received_at: datetime, instance_id: str) -> None:
        """Count another delivery of this signal; it is answered with the first decision."""
        self._redelivered(received_at=received_at, instance_id=instance_id)

    @event("SignalRedelivered")
    def _redelivered(self, received_at: datetime, instance_id: str) -> None:
        self.deliveries += 1



# --- Instance: a service process, for instance_metadata -----------------------------------


class Instance(Aggregate):
    """``instance:<host:pid>``: a `ledger serve` process started, and stopped cleanly.

    A process that never records InstanceStopped stopped uncleanly (or still runs); its
    heartbeats live in Redis, not in the log.
    """

    @staticmethod
    def create_id(instance_id: str) -> UUID:
        return stream_id("instance", instance_id)

    @event("InstanceStarted")
    def __init__(self, instance_id: str, hostname: str, port: int | None, software_version: str,
                 started_at: datetime) -> None:
        self.instance_id = instance_id
        self.hostname = hostname
        self.port = port
        self.software_version = software_version
        self.started_at = started_at
        self.stopped_at: datetime | None = None

    def stop(self, at: datetime) -> None:
        if self.stopped_at is None:
            self._stopped(at=at)

    @event("InstanceStopped")
    def _stopped(self, at: datetime) -> None:
        self.stopped_at = at
