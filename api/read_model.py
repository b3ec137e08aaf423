"""The books as the HTTP API serves them: the protocol between the endpoints and where rows
come from. ``projections.read_model.ProjectionReads`` answers it from the projection tables;
``create_app`` takes any implementation (the tests hold a log-replaying one to the same
contract).

Row shapes (JSON-ready: money and prices as strings, times ISO 8601 UTC):

- portfolio: the keys of ``ledger portfolio --json`` (``Ledger.portfolio_summary``).
- position: ``POSITION_KEYS``, the requirements' ``portfolio_positions`` columns plus the
  portfolio, label, exit and sizing facts.
- signal: ``SIGNAL_KEYS``, the ``signal_log`` columns: one row per distinct signal, with
  ``processing_status`` = the decision (accepted/rejected) and ``deliveries`` counting retries.
- statistics: ``{"log_position", "statistics": [rows]}``, each row ``STATISTICS_KEYS``, the
  ``trading_statistics`` columns: one row per portfolio that has decided anything.

Lists are newest first: positions by when they were opened (``created_at``, ties broken by
``position_id``), signals by when decided (``id``, the log position of their receipt). A page
ends where the previous one stopped: ``before`` is the sort key of the last row already
given, and the rows returned all sort after it, so rows appended meanwhile (they are newer)
never shift a page. Time ranges are half-open, ``[from, to)``, on UTC instants.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

POSITION_STATUSES = ("open", "partial", "closed")
DECISIONS = ("accepted", "rejected")

POSITION_KEYS = (
    "position_id", "portfolio", "instrument", "label", "status", "is_base_position",
    "base_position_id", "entry_fingerprint", "entry_timestamp", "entry_price", "lots",
    "lot_size", "quantity", "point_value", "margin_per_lot", "initial_stop", "current_stop",
    "highest_close", "signal_stop", "mark", "unrealized_pnl", "realized_pnl", "risk_amount",
    "margin", "risk_contribution", "vol_contribution", "entry_risk_contribution",
    "entry_vol_contribution", "equity_at_entry", "rollover_status", "original_expiry",
    "original_strike", "original_entry_price", "rollover_timestamp", "rollover_pnl",
    "rollover_count", "strike", "expiry", "pe_symbol", "ce_symbol", "pe_order_id",
    "ce_order_id", "pe_entry_price", "ce_entry_price", "contract_month", "futures_symbol",
    "futures_order_id", "atr", "er", "limiter", "sizing", "exit_timestamp", "exit_price",
    "exit_reason", "stop_breached_at", "version", "created_at", "updated_at",
)

SIGNAL_KEYS = (
    "id", "fingerprint", "portfolio", "instrument", "signal_type", "position",
    "signal_timestamp", "price", "processing_status", "reasons", "position_ids", "lots",
    "limiter", "deliveries", "is_duplicate", "received_at", "processed_at",
    "processed_by_instance", "last_delivery_at", "last_delivery_instance", "payload",
    "decision", "version",
)


STATISTICS_KEYS = (
    "portfolio", "trades", "winning_trades", "losing_trades", "win_rate", "gross_profit",
    "gross_loss", "net_pnl", "largest_win", "largest_loss", "profit_factor", "rollovers",
    "signals_decided", "signals_accepted", "signals_rejected", "duplicate_deliveries",
    "peak_closed_equity", "max_drawdown", "max_drawdown_percent", "updated_at",
)


class ReadModel(Protocol):
    def portfolio(self, name: str) -> dict[str, Any]:
        """Keys as ``ledger portfolio --json``; raises UnknownPortfolio."""
        ...

    def positions(self, *, portfolio: str | None, status: str | None,
                  instrument: str | None, limit: int, entered_from: datetime | None = None,
                  entered_to: datetime | None = None,
                  before: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """Position rows matching every filter given, newest first, at most ``limit``:
        entered (``entry_timestamp``) in ``[entered_from, entered_to)``, and sorting after
        ``before`` = (``created_at``, ``position_id``) of the previous page's last row."""
        ...

    def position(self, position_id: str) -> dict[str, Any]:
        """One position row; raises UnknownPosition."""
        ...

    def position_history(self, position_id: str) -> list[dict[str, Any]]:
        """The position's events replayed, oldest first; raises UnknownPosition."""
        ...

    def signals(self, *, portfolio: str | None, limit: int, decision: str | None = None,
                signal_type: str | None = None, instrument: str | None = None,
                signal_from: datetime | None = None, signal_to: datetime | None = None,
                before: int | None = None) -> list[dict[str, Any]]:
        """Signal rows matching every filter given, most recently decided first, at most
        ``limit``: ``decision`` is ``processing_status``, the signal's own time
        (``signal_timestamp``) in ``[signal_from, signal_to)``, and ``id`` below ``before``
        (the previous page's last row)."""
        ...

    def statistics(self, *, portfolio: str | None) -> dict[str, Any]:
        """``{"log_position", "statistics"}``: the rows of every portfolio with activity (or
        of ``portfolio``), by name; raises UnknownPortfolio for one neither configured nor
        in the log."""
        ...
