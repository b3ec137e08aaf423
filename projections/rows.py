"""Rows from aggregate states: the one definition of every projected row.

Pure functions of the domain's own state (replayed by the library's mutators), JSON-ready:
money as strings rounded at the edge (``ledger.wire``), times ISO 8601 UTC. The projection
tables store exactly these, and ``ledger verify`` recomputes them from the log to compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger import wire
from ledger.domain import Order, Portfolio, PortfolioParams, Position
from ledger.presenters import book_figures, payload_as_sent, percent_of
from projections.schema import json_text

ZERO = Decimal(0)


def position_row(p: Position, book: Portfolio | None, equity: Decimal) -> dict[str, Any]:
    """A ``portfolio_positions`` row: the position's stream, marked by its portfolio."""
    holding = book.holdings.get(p.position_id) if book is not None and p.is_open else None
    mark = book.marks.get(p.instrument) if book is not None and p.is_open else None
    return {
        "position_id": p.position_id,
        "portfolio": p.portfolio,
        "instrument": p.instrument,
        "label": p.label,
        "status": p.status,
        "is_base_position": p.is_base_position,
        "base_position_id": p.base_position_id,
        "entry_fingerprint": p.fingerprint,
        "entry_timestamp": wire.iso(p.entry_timestamp),
        "entry_price": wire.number(p.entry_price),
        "lots": p.lots,
        "lot_size": p.lot_size,
        "quantity": p.quantity,
        "point_value": wire.number(p.point_value),
        "margin_per_lot": wire.number(p.margin_per_lot),
        "initial_stop": wire.number(p.initial_stop),
        "current_stop": wire.number(p.current_stop),
        "highest_close": wire.number(p.highest_close),
        "signal_stop": wire.number(p.signal_stop),
        "mark": wire.number(mark.price) if mark else None,
        "unrealized_pnl": wire.money(holding.pnl_at(mark.price) if holding and mark else ZERO),
        "realized_pnl": wire.money(p.realized_pnl),
        "risk_amount": wire.money(holding.risk if holding else ZERO),
        "margin": wire.money(holding.margin if holding else ZERO),
        "risk_contribution": percent_of(holding.risk, equity) if holding else wire.ratio(ZERO),
        "vol_contribution": percent_of(holding.volatility, equity) if holding else wire.ratio(ZERO),
        "entry_risk_contribution": wire.ratio(p.risk_contribution),
        "entry_vol_contribution": wire.ratio(p.vol_contribution),
        "equity_at_entry": wire.money(p.equity_at_entry),
        "rollover_status": p.rollover_status,
        "original_expiry": p.original_expiry,
        "original_strike": p.original_strike,
        "original_entry_price": wire.number(p.original_entry_price),
        "rollover_timestamp": wire.iso(p.rollover_timestamp),
        "rollover_pnl": wire.money(p.rollover_pnl),
        "rollover_count": p.rollover_count,
        "strike": p.strike,
        "expiry": p.expiry,
        "pe_symbol": p.pe_symbol,
        "ce_symbol": p.ce_symbol,
        # Broker legs: no broker places orders yet, so no leg has an order id or a fill.
        "pe_order_id": None,
        "ce_order_id": None,
        "pe_entry_price": None,
        "ce_entry_price": None,
        "contract_month": p.contract_month,
        "futures_symbol": p.futures_symbol,
        "futures_order_id": None,
        "atr": wire.number(p.atr),
        "er": wire.number(p.er),
        "limiter": p.limiter,
        "sizing": {k: wire.ratio(v) for k, v in p.sizing.items()},
        "exit_timestamp": wire.iso(p.exit_timestamp),
        "exit_price": wire.number(p.exit_price),
        "exit_reason": p.exit_reason,
        "stop_breached_at": wire.iso(p.stop_breached_at),
        "version": p.version,
        "created_at": wire.iso(p.created_on),
        "updated_at": wire.iso(p.modified_on),
    }


def portfolio_state_row(p: Portfolio, params: PortfolioParams | None) -> dict[str, Any]:
    """A ``portfolio_state`` row: the scalar keys of ``ledger portfolio --json``."""
    return {
        "portfolio": p.name,
        **book_figures(p, params),
        "open_positions": len(p.holdings),
        "version": p.version,
        "updated_at": wire.iso(p.modified_on),
    }


def pyramiding_rows(p: Portfolio) -> list[dict[str, Any]]:
    """``pyramiding_state`` rows, one per instrument the portfolio has entered."""
    return [{
        "portfolio": p.name,
        "instrument": instrument,
        "base_position_id": s.base_position_id,
        "last_pyramid_price": wire.number(s.last_pyramid_price),
        "pyramids": s.pyramids,
        "updated_at": wire.iso(p.modified_on),
    } for instrument, s in sorted(p.pyramiding.items())]


def jsonable(value: Any) -> Any:
    """``value`` as the table gives it back: exact decimals become strings, as every answer
    writes them, so a row compares equal after a round trip (a receipt written before ``raw``
    was kept: its payload's numbers were stored as decimals)."""
    return wire.loads(json_text(value))


def signal_row(log_id: int, decided: Any) -> dict[str, Any]:
    """A ``signal_log`` row from a signal's SignalDecided event (its first delivery)."""
    decision = decided.decision
    return {
        "id": log_id,
        "fingerprint": decided.fingerprint,
        "portfolio": decided.portfolio,
        "instrument": decided.instrument,
        "signal_type": decided.signal_type,
        "position": decided.position,
        "signal_timestamp": wire.iso(decided.signal_timestamp),
        "price": decision.get("price"),
        "processing_status": decision.get("decision"),
        "reasons": decision.get("reasons", []),
        "position_ids": decision.get("position_ids", []),
        "lots": decision.get("lots"),
        "limiter": decision.get("limiter"),
        "deliveries": 1,
        "is_duplicate": False,
        "received_at": wire.iso(decided.received_at),
        "processed_at": decision.get("decided_at"),
        "processed_by_instance": decided.instance_id,
        "last_delivery_at": wire.iso(decided.received_at),
        "last_delivery_instance": decided.instance_id,
        "payload": (jsonable(decided.payload) if decided.raw is None
                    else payload_as_sent(decided)),
        "decision": decision,
        "version": 1,
    }


def redelivery_patch(redelivered: Any) -> dict[str, Any]:
    """The ``signal_log`` columns a SignalRedelivered event changes."""
    version = redelivered.originator_version
    return {
        "deliveries": version,
        "is_duplicate": True,
        "last_delivery_at": wire.iso(redelivered.received_at),
        "last_delivery_instance": redelivered.instance_id,
        "version": version,
    }


# -- instances and statistics: small accumulators, resumable from their rows --------------


@dataclass
class InstanceState:
    instance_id: str
    created_at: datetime
    last_heartbeat: datetime
    started_at: datetime | None = None
    last_signal_processed: datetime | None = None
    signals_processed: int = 0
    status: str = "unregistered"  # a process that decided without `ledger serve` (the CLI)
    hostname: str | None = None
    port: int | None = None
    version: str | None = None
    updated_at: datetime | None = None

    def seen(self, at: datetime) -> None:
        self.last_heartbeat = max(self.last_heartbeat, at)
        self.updated_at = at

    def row(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "started_at": wire.iso(self.started_at),
            "last_heartbeat": wire.iso(self.last_heartbeat),
            "last_signal_processed": wire.iso(self.last_signal_processed),
            "signals_processed": self.signals_processed,
            "is_leader": False,  # the log does not say who leads: heartbeats do
            "leader_acquired_at": None,
            "status": self.status,
            "hostname": self.hostname,
            "port": self.port,
            "version": self.version,
            "created_at": wire.iso(self.created_at),
            "updated_at": wire.iso(self.updated_at or self.created_at),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> InstanceState:
        def ts(key: str) -> datetime | None:
            return datetime.fromisoformat(row[key]) if row[key] else None

        created, beat = ts("created_at"), ts("last_heartbeat")
        assert created is not None and beat is not None
        return cls(instance_id=row["instance_id"], created_at=created, last_heartbeat=beat,
                   started_at=ts("started_at"), last_signal_processed=ts("last_signal_processed"),
                   signals_processed=row["signals_processed"], status=row["status"],
                   hostname=row["hostname"], port=row["port"], version=row["version"],
                   updated_at=ts("updated_at"))


@dataclass
class Statistics:
    """Per portfolio: closed trades, signals, and the closed-equity drawdown."""

    portfolio: str
    peak_closed_equity: Decimal
    trades: int = 0
    winning_trades: int = 0
    losing_trades: int = 0
    gross_profit: Decimal = ZERO
    gross_loss: Decimal = ZERO  # a positive amount
    largest_win: Decimal = ZERO
    largest_loss: Decimal = ZERO  # a negative amount (or zero)
    rollovers: int = 0
    signals_decided: int = 0
    signals_accepted: int = 0
    signals_rejected: int = 0
    duplicate_deliveries: int = 0
    max_drawdown: Decimal = ZERO
    max_drawdown_percent: Decimal = ZERO
    updated_at: datetime | None = None

    def trade(self, pnl: Decimal) -> None:
        self.trades += 1
        if pnl > 0:
            self.winning_trades += 1
            self.gross_profit += pnl
            self.largest_win = max(self.largest_win, pnl)
        elif pnl < 0:
            self.losing_trades += 1
            self.gross_loss -= pnl
            self.largest_loss = min(self.largest_loss, pnl)

    def closed_equity(self, value: Decimal) -> None:
        self.peak_closed_equity = max(self.peak_closed_equity, value)
        drawdown = self.peak_closed_equity - value
        if drawdown > self.max_drawdown:
            self.max_drawdown = drawdown
            if self.peak_closed_equity > 0:
                self.max_drawdown_percent = drawdown * 100 / self.peak_closed_equity

    def row(self) -> dict[str, Any]:
        return {
            "portfolio": self.portfolio,
            "trades": self.trades,
            "winning_trades": self.winning_trades,
            "losing_trades": self.losing_trades,
            "win_rate": (wire.ratio(Decimal(self.winning_trades) * 100 / self.trades)
                         if self.trades else None),
            "gross_profit": wire.money(self.gross_profit),
            "gross_loss": wire.money(self.gross_loss),
            "net_pnl": wire.money(self.gross_profit - self.gross_loss),
            "largest_win": wire.money(self.largest_win),
            "largest_loss": wire.money(self.largest_loss),
            "profit_factor": (wire.ratio(self.gross_profit / self.gross_loss)
                              if self.gross_loss else None),
            "rollovers": self.rollovers,
            "signals_decided": self.signals_decided,
            "signals_accepted": self.signals_accepted,
            "signals_rejected": self.signals_rejected,
            "duplicate_deliveries": self.duplicate_deliveries,
            "peak_closed_equity": wire.money(self.peak_closed_equity),
            "max_drawdown": wire.money(self.max_drawdown),
            "max_drawdown_percent": wire.ratio(self.max_drawdown_percent),
            "updated_at": wire.iso(self.updated_at),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Statistics:
        """Resume from a stored row. Money columns are rounded to the cent there, so sums
        resumed from a row can differ from a full replay by rounding; they hold cents
        already (P&L of whole lots at tick prices), so nothing is lost in practice."""
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, kind in kinds.items():
            raw = row[key]
            if key == "updated_at":
                values[key] = datetime.fromisoformat(raw) if raw else None
            elif "Decimal" in str(kind):
                values[key] = Decimal(raw)
            else:
                values[key] = raw
        return cls(**values)


def order_row(o: Order) -> dict[str, Any]:
    """An ``orders`` row: one intent and where it stands."""
    i = o.intent
    return {
        "intent_id": i.intent_id,
        "portfolio": i.portfolio,
        "position_id": i.position_id,
        "cause": i.cause,
        "purpose": i.purpose,
        "leg": i.leg,
        "symbol": i.symbol,
        "exchange": i.exchange,
        "side": i.side,
        "quantity": i.quantity,
        "product": i.product,
        "price_type": i.price_type,
        "reference_price": wire.number(i.reference_price),
        "decided_at": wire.iso(i.decided_at),
        "status": o.status,
        "attempts": o.attempts,
        "sent_epoch": o.sent_epoch,
        "sent_at": wire.iso(o.sent_at),
        "broker_order_id": o.broker_order_id,
        "filled_quantity": o.filled_quantity,
        "average_price": wire.ratio(o.average_price),  # an average: to 4 decimals
        "slippage": wire.ratio(o.slippage),
        "reason": o.reason,
        "version": o.version,
        "created_at": wire.iso(o.created_on),
        "updated_at": wire.iso(o.modified_on),
    }
