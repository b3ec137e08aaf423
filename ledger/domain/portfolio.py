"""``portfolio:<name>``: the decision journal, and the decider.

Every decision appends exactly one event here, so two deciders working from the same
portfolio version conflict on the stream's next version and one decides again. Its state is
everything a decision reads: closed equity, marks, open holdings, pyramiding.

Command methods decide and raise nothing for business outcomes: a rejection is an event.
Methods decorated with ``@event`` only apply facts (they run again on every replay).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger import sizing
from ledger.domain.params import Instrument, PortfolioParams
from ledger.domain.values import (
    ATR_SPACING_GATE,
    BASE_ALREADY_OPEN,
    BASE_LABEL,
    EXIT_ALL,
    HALF,
    MARGIN_CAP,
    MAX_PYRAMIDS,
    NO_BASE_POSITION,
    NO_EQUITY,
    NO_OPEN_POSITIONS,
    ONE_R_GATE,
    PEEL_OFF,
    POSITION_ALREADY_OPEN,
    POSITION_NOT_OPEN,
    PROFIT_GATE,
    PYRAMID_RISK_CAP,
    PYRAMID_VOLATILITY_CAP,
    RISK_CAP,
    STOP_HIT,
    VOLATILITY_CAP,
    ZERO_LOTS,
    Closing,
    Contract,
    Holding,
    Mark,
    Opening,
    Outcome,
    PyramidState,
    Reason,
    Roll,
    Signal,
    SignalType,
    StopBreach,
    StopChange,
    stream_id,
    topic,
)


class Portfolio(Aggregate):
    """A named portfolio's books and its decision journal."""

    TOPIC = topic("Portfolio")

    class Created(Aggregate.Created):  # the library's base of the first event; never stored
        TOPIC = topic("Portfolio.Created")

    @staticmethod
    def create_id(name: str) -> UUID:
        return stream_id("portfolio", name)

    @event("PortfolioOpened", topic=topic("Portfolio.PortfolioOpened"))
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
        breached: list[StopBreach] = []
        stopped: list[Closing] = []
        for h in self.holdings_of(instrument.name):
            if h.entry_timestamp > signal.timestamp:
                continue  # a bar from before the entry says nothing about this position
            if signal.price <= h.current_stop:  # judged on the stop before this bar trails it
                breached.append(StopBreach(h.position_id, signal.price, h.current_stop,
                                           signal.timestamp))
                if instrument.stop_policy == "exit":
                    stopped.append(Closing(h.position_id, h.lots, signal.price,
                                           h.pnl_at(signal.price), STOP_HIT))
                    continue  # closed on this bar: nothing to trail or peel off
            highest, stop = sizing.trail(h.highest_close, h.current_stop, signal.price,
                                         signal.atr, instrument.trailing_atr_multiple)
            trailed_stops[h.position_id] = stop
            if (highest, stop) != (h.highest_close, h.current_stop):
                trailed.append(StopChange(h.position_id, highest, stop, h.current_stop))
        reductions: list[Closing] = []
        equity = self.equity(params.equity_mode, marks)
        if params.peel_off and equity > 0:
            reductions = self._peel_off(instrument, trailed_stops, marks, equity)
        closed = stopped + reductions
        return Outcome(True, equity, trailed=tuple(trailed), closed=tuple(closed),
                       breached=tuple(breached),
                       position_ids=tuple(dict.fromkeys(
                           [b.position_id for b in breached] + [t.position_id for t in trailed]
                           + [c.position_id for c in closed])))

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
                                          PEEL_OFF))
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

    @event("SignalRejected", topic=topic("Portfolio.SignalRejected"))
    def _signal_rejected(self, fingerprint: str, signal_type: str, instrument: str,
                         position: str | None, mark: Mark, reasons: list[dict[str, str]]) -> None:
        self._apply_mark(instrument, mark)

    @event("EntryAccepted", topic=topic("Portfolio.EntryAccepted"))
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

    @event("ExitAccepted", topic=topic("Portfolio.ExitAccepted"))
    def _exit_accepted(self, fingerprint: str, instrument: str, mark: Mark,
                       closings: list[Closing]) -> None:
        self._apply_mark(instrument, mark)
        for closing in closings:
            self._close(closing)

    @event("MarketMarked", topic=topic("Portfolio.MarketMarked"))
    def _market_marked(self, fingerprint: str, instrument: str, mark: Mark, atr: Decimal,
                       trailed: list[StopChange], reductions: list[Closing]) -> None:
        self._apply_mark(instrument, mark)
        for change in trailed:
            self.holdings[change.position_id] = replace(
                self.holdings[change.position_id], highest_close=change.highest_close,
                current_stop=change.current_stop)
        for closing in reductions:
            self._close(closing)

    @event("PositionRolled", topic=topic("Portfolio.PositionRolled"))
    def _position_rolled(self, roll: Roll) -> None:
        holding = self.holdings[roll.position_id]
        self.closed_equity += roll.rollover_pnl
        self.holdings[roll.position_id] = replace(
            holding, entry_price=roll.open_price, point_value=roll.point_value,
            margin_per_lot=roll.margin_per_lot)


def signal_time(event: object) -> datetime | None:
    """When, in bar time, a portfolio event happened: the time of the signal it decided (its
    mark's), or a roll's own time; None for PortfolioOpened, which decides nothing."""
    if isinstance(event, Portfolio.PositionRolled):
        return event.roll.at
    if isinstance(event, (Portfolio.EntryAccepted, Portfolio.ExitAccepted,
                          Portfolio.MarketMarked, Portfolio.SignalRejected)):
        return event.mark.timestamp
    return None
