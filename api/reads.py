"""The books as the HTTP API serves them: a small protocol, and a first implementation that
answers from the event store itself.

The protocol is the seam between the API and where rows come from. ``EventStoreReads``
replays aggregates and scans the notification log (bounded); a table-backed implementation
over the projections (portfolio_positions, signal_log) provides the same methods with the same
keys, and ``create_app`` takes either.

Row shapes (JSON-ready: money and prices as strings, times ISO 8601 UTC):

- portfolio: the keys of ``ledger portfolio --json`` (``Ledger.portfolio_summary``).
- position: ``POSITION_KEYS``, the requirements' ``portfolio_positions`` columns plus the
  portfolio, label, exit and sizing facts.
- signal: ``SIGNAL_KEYS``, the ``signal_log`` columns: one row per distinct signal, with
  ``processing_status`` = the decision (accepted/rejected) and ``deliveries`` counting retries.

Lists are newest first: positions by when they were opened, signals by when decided.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Protocol

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from ledger.application import Ledger, UnknownPortfolio, UnknownPosition
from ledger.domain import Portfolio, Position, SignalRecord
from projections import rows

POSITION_STATUSES = ("open", "partial", "closed")

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
    "exit_reason", "version", "created_at", "updated_at",
)

SIGNAL_KEYS = (
    "id", "fingerprint", "portfolio", "instrument", "signal_type", "position",
    "signal_timestamp", "price", "processing_status", "reasons", "position_ids", "lots",
    "limiter", "deliveries", "is_duplicate", "received_at", "processed_at",
    "processed_by_instance", "last_delivery_at", "last_delivery_instance", "payload",
    "decision", "version",
)


class ReadModel(Protocol):
    def portfolio(self, name: str) -> dict[str, Any]:
        """Keys as ``ledger portfolio --json``; raises UnknownPortfolio."""
        ...

    def positions(self, *, portfolio: str | None, status: str | None,
                  instrument: str | None, limit: int) -> list[dict[str, Any]]:
        """Position rows matching every filter given, newest first, at most ``limit``."""
        ...

    def position(self, position_id: str) -> dict[str, Any]:
        """One position row; raises UnknownPosition."""
        ...

    def position_history(self, position_id: str) -> list[dict[str, Any]]:
        """The position's events replayed, oldest first; raises UnknownPosition."""
        ...

    def signals(self, *, portfolio: str | None, limit: int) -> list[dict[str, Any]]:
        """Signal rows, most recently decided first, at most ``limit``."""
        ...


_POSITION_OPENED = get_topic(Position.PositionOpened)
_SIGNAL_DECIDED = get_topic(SignalRecord.SignalDecided)


class EventStoreReads:
    """``ReadModel`` answered from the event store: aggregates replayed (cached and
    snapshotted by the library), lists found by scanning the log backwards.

    A scan reads at most ``scan_notifications_max`` notifications, ``scan_window`` at a time,
    so a list over a long history may stop short of ``limit``: the projections serve those.
    """

    def __init__(self, ledger: Ledger, *, scan_window: int = 5000,
                 scan_notifications_max: int = 500_000) -> None:
        self.ledger = ledger
        self.scan_window = scan_window
        self.scan_notifications_max = scan_notifications_max

    # -- the protocol ---------------------------------------------------------------------

    def portfolio(self, name: str) -> dict[str, Any]:
        return self.ledger.portfolio_summary(name)

    def position(self, position_id: str) -> dict[str, Any]:
        position = self.ledger.position(position_id)
        return self._row(position, _Books(self.ledger))

    def position_history(self, position_id: str) -> list[dict[str, Any]]:
        return self.ledger.position_history(position_id)

    def positions(self, *, portfolio: str | None, status: str | None,
                  instrument: str | None, limit: int) -> list[dict[str, Any]]:
        books = _Books(self.ledger)
        instrument = instrument.upper() if instrument else None
        if status in ("open", "partial"):
            # Open positions are the portfolios' holdings: no need to scan history.
            found = [self.ledger.position(position_id)
                     for name in self._portfolio_names(portfolio)
                     for position_id in books.get(name).holdings]
            found = [p for p in found if p.status == status
                     and (instrument is None or p.instrument == instrument)]
            found.sort(key=lambda p: (p.created_on, p.position_id), reverse=True)
            return [self._row(p, books) for p in found[:limit]]
        rows = []
        for notification in self._newest_first(_POSITION_OPENED):
            opened = self.ledger.mapper.to_domain_event(notification)
            if portfolio is not None and opened.portfolio != portfolio:  # type: ignore[attr-defined]
                continue
            if instrument is not None and opened.instrument != instrument:  # type: ignore[attr-defined]
                continue
            position = self.ledger.position(opened.position_id)  # type: ignore[attr-defined]
            if status is not None and position.status != status:
                continue
            rows.append(self._row(position, books))
            if len(rows) >= limit:
                break
        return rows

    def signals(self, *, portfolio: str | None, limit: int) -> list[dict[str, Any]]:
        rows = []
        for notification in self._newest_first(_SIGNAL_DECIDED):
            decided = self.ledger.mapper.to_domain_event(notification)
            if portfolio is not None and decided.portfolio != portfolio:  # type: ignore[attr-defined]
                continue
            rows.append(self._signal_row(notification.id, decided))
            if len(rows) >= limit:
                break
        return rows

    # -- rows -----------------------------------------------------------------------------

    def _portfolio_names(self, portfolio: str | None) -> list[str]:
        if portfolio is not None:
            return [portfolio] if self.ledger.config.portfolio(portfolio) else []
        return sorted(self.ledger.config.portfolios)

    def _newest_first(self, topic: str) -> Iterator[Notification]:
        recorder = self.ledger.recorder
        top = recorder.max_notification_id() or 0
        scanned = 0
        while top > 0 and scanned < self.scan_notifications_max:
            start = max(1, top - self.scan_window + 1)
            batch = recorder.select_notifications(start, self.scan_window, stop=top,
                                                  topics=[topic])
            yield from reversed(batch)
            scanned += top - start + 1
            top = start - 1

    def _row(self, p: Position, books: _Books) -> dict[str, Any]:
        return rows.position_row(p, books.get(p.portfolio), books.equity(p.portfolio))

    def _signal_row(self, log_id: int, decided: Any) -> dict[str, Any]:
        row = rows.signal_row(log_id, decided)
        last = next(iter(self.ledger.events.get(decided.originator_id, desc=True, limit=1)))
        if last.originator_version > 1:
            row.update(rows.redelivery_patch(last))
        return row


class _Books:
    """Portfolios loaded once per request, so every row of a list uses the same state."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._loaded: dict[str, tuple[Portfolio, Decimal]] = {}

    def _load(self, name: str) -> tuple[Portfolio, Decimal]:
        if name not in self._loaded:
            try:
                book = self.ledger.portfolio(name)
            except UnknownPortfolio:  # positions of a portfolio since removed from config
                book = self.ledger.repository.get(Portfolio.create_id(name))
            params = self.ledger.config.portfolio(name)
            self._loaded[name] = (book, book.equity(params.equity_mode if params else "blended"))
        return self._loaded[name]

    def get(self, name: str) -> Portfolio:
        return self._load(name)[0]

    def equity(self, name: str) -> Decimal:
        return self._load(name)[1]


__all__ = ["POSITION_KEYS", "POSITION_STATUSES", "SIGNAL_KEYS", "EventStoreReads", "ReadModel",
           "UnknownPortfolio", "UnknownPosition"]
