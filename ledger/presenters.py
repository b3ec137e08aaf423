"""The books as figures: what a decision, a portfolio and an event look like to a reader.

One definition, used by the CLI, the HTTP API and the projections (whose rows must equal what
the API would answer from the log). JSON-ready: money and prices as exact strings rounded at
this edge only (``ledger.wire``), times ISO 8601 UTC.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger import wire
from ledger.domain import Opening, Outcome, Portfolio, PortfolioParams, Roll, Signal


def payload_as_sent(receipt: Any) -> Any:
    """A signal receipt's alert (SignalRecord, or its SignalDecided), secret removed, as it
    was sent: read from ``raw``, so its numbers are the JSON numbers they were, with their
    text (``wire.JSONNumber``). Receipts written before ``raw`` was kept answer with their
    ``payload``, whose numbers were stored as exact decimals and read back as strings."""
    if receipt.raw is None:
        return receipt.payload
    return wire.loads(receipt.raw)


def equity_mode(params: PortfolioParams | None) -> str:
    """The portfolio's equity mode; blended for one since removed from the configuration."""
    return params.equity_mode if params else "blended"


def event_type(e: object) -> str:
    """An event's name as histories and trails show it (``PositionOpened``)."""
    return type(e).__name__


# The library's envelope; everything else an event carries is the fact it records.
_ENVELOPE = ("originator_id", "originator_version", "timestamp", "originator_topic")
# Values an event carries whole (PositionOpened's Opening, RolledOver's Roll): shown as their
# fields, as when each field was an event attribute of its own.
_CARRIED = (Opening, Roll)


def facts(e: object) -> dict[str, Any]:
    """What an event records, without the library's envelope."""
    found: dict[str, Any] = {}
    for key, value in vars(e).items():
        if key in _ENVELOPE:
            continue
        if isinstance(value, _CARRIED) and is_dataclass(value):
            found.update({f.name: getattr(value, f.name) for f in fields(value)})
        else:
            found[key] = value
    return found


def decision_body(signal: Signal, outcome: Outcome, events: list[dict[str, Any]],
                  decided_at: datetime) -> dict[str, Any]:
    """The answer to a signal: stored verbatim in its receipt, returned to every delivery."""
    position_ids = list(outcome.position_ids)
    return {
        "decision": "accepted" if outcome.accepted else "rejected",
        "fingerprint": signal.fingerprint,
        "portfolio": signal.portfolio,
        "signal_type": signal.type.value,
        "instrument": signal.instrument,
        "position": signal.position,
        "signal_timestamp": wire.iso(signal.timestamp),
        "price": wire.number(signal.price),
        "position_id": position_ids[0] if len(position_ids) == 1 else None,
        "position_ids": position_ids,
        "lots": outcome.lots,
        "limiter": outcome.limiter,
        "sizing": {k: wire.ratio(v) for k, v in outcome.sizing.items()} if outcome.sizing else None,
        "equity": wire.money(outcome.equity),
        "reasons": [{"code": r.code, "message": r.message} for r in outcome.reasons],
        "events": events,
        "decided_at": wire.iso(decided_at),
    }


def book_figures(p: Portfolio, params: PortfolioParams | None) -> dict[str, Any]:
    """Equity, risk, volatility and margin of one portfolio state, JSON-ready (shared by
    ``summarize`` and the ``portfolio_state`` projection).

    ``params`` is the portfolio's configuration (None for one since removed from it: blended
    equity and the default 60 % margin cap).
    """
    mode = equity_mode(params)
    equity = p.equity(mode)
    unrealized = p.unrealized()
    max_margin = params.max_margin_percent if params else Decimal(60)
    return {
        "equity_mode": mode,
        "initial_capital": wire.money(p.initial_capital),
        "closed_equity": wire.money(p.closed_equity),
        "unrealized_pnl": wire.money(unrealized),
        "open_equity": wire.money(p.closed_equity + unrealized),
        "equity": wire.money(equity),
        "total_risk_amount": wire.money(p.open_risk),
        "total_risk_percent": percent_of(p.open_risk, equity),
        "total_vol_amount": wire.money(p.open_volatility),
        "total_vol_percent": percent_of(p.open_volatility, equity),
        "margin_used": wire.money(p.margin_used),
        "margin_available": wire.money(equity * max_margin / 100 - p.margin_used),
    }


def percent_of(amount: Decimal, equity: Decimal) -> str | None:
    """``amount`` as a percentage of ``equity`` (None without equity), to 4 decimals."""
    return wire.ratio(amount * 100 / equity) if equity > 0 else None


def summarize(p: Portfolio, params: PortfolioParams | None) -> dict[str, Any]:
    """The books of one portfolio state, JSON-ready: what ``ledger portfolio --json`` prints.

    ``params`` as in ``book_figures``.
    """
    equity = p.equity(equity_mode(params))
    positions = []
    for h in sorted(p.holdings.values(), key=lambda h: (h.instrument, h.entry_timestamp)):
        mark = p.marks[h.instrument]
        positions.append({
            "position_id": h.position_id,
            "instrument": h.instrument,
            "position": h.label,
            "is_base_position": h.is_base,
            "lots": h.lots,
            "entry_price": wire.number(h.entry_price),
            "entry_timestamp": wire.iso(h.entry_timestamp),
            "initial_stop": wire.number(h.initial_stop),
            "current_stop": wire.number(h.current_stop),
            "highest_close": wire.number(h.highest_close),
            "mark": wire.number(mark.price),
            "unrealized_pnl": wire.money(h.pnl_at(mark.price)),
            "risk_amount": wire.money(h.risk),
            "risk_contribution": percent_of(h.risk, equity),
            "vol_contribution": percent_of(h.volatility, equity),
            "margin": wire.money(h.margin),
        })
    return {
        "portfolio": p.name,
        "version": p.version,
        **book_figures(p, params),
        "pyramiding_state": {
            instrument: {"base_position_id": s.base_position_id,
                         "last_pyramid_price": wire.number(s.last_pyramid_price),
                         "pyramids": s.pyramids}
            for instrument, s in sorted(p.pyramiding.items())
        },
        "open_positions": positions,
    }
