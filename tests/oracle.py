"""A second read model, answered from the event log itself: the oracle the projection tables
are held to (every row ``ProjectionReads`` answers must equal the one this replays).

Aggregates are replayed (cached and snapshotted by the library); lists are found by scanning
the notification log backwards, bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from ledger.application import Ledger, UnknownPortfolio
from ledger.domain import Portfolio, Position, SignalRecord
from ledger.presenters import equity_mode
from projections import rows
from projections.read_model import statistics_from_log

_POSITION_OPENED = get_topic(Position.PositionOpened)
_SIGNAL_DECIDED = get_topic(SignalRecord.SignalDecided)


class EventStoreReads:
    """``api.read_model.ReadModel`` answered from the event store.

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
                  instrument: str | None, limit: int, entered_from: datetime | None = None,
                  entered_to: datetime | None = None,
                  before: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        books = _Books(self.ledger)
        instrument = instrument.upper() if instrument else None
        after_page = (None if before is None
                      else (datetime.fromisoformat(before[0]), before[1]))

        def wanted(p: Position) -> bool:
            return (_within(p.entry_timestamp, entered_from, entered_to)
                    and (after_page is None or (p.created_on, p.position_id) < after_page))

        if status in ("open", "partial"):
            # Open positions are the portfolios' holdings: no need to scan history.
            found = [self.ledger.position(position_id)
                     for name in self._portfolio_names(portfolio)
                     for position_id in books.get(name).holdings]
            found = [p for p in found if p.status == status
                     and (instrument is None or p.instrument == instrument) and wanted(p)]
            found.sort(key=lambda p: (p.created_on, p.position_id), reverse=True)
            return [self._row(p, books) for p in found[:limit]]
        rows = []
        for notification in self._newest_first(_POSITION_OPENED):
            event = self.ledger.mapper.to_domain_event(notification)
            assert isinstance(event, Position.PositionOpened)
            opened = event.opening
            if portfolio is not None and opened.portfolio != portfolio:
                continue
            if instrument is not None and opened.instrument != instrument:
                continue
            position = self.ledger.position(opened.position_id)
            if status is not None and position.status != status:
                continue
            if not wanted(position):
                continue
            rows.append(self._row(position, books))
            if len(rows) >= limit:
                break
        return rows

    def statistics(self, *, portfolio: str | None) -> dict[str, Any]:
        return statistics_from_log(self.ledger, portfolio=portfolio)

    def signals(self, *, portfolio: str | None, limit: int, decision: str | None = None,
                signal_type: str | None = None, instrument: str | None = None,
                signal_from: datetime | None = None, signal_to: datetime | None = None,
                before: int | None = None) -> list[dict[str, Any]]:
        rows = []
        for notification in self._newest_first(_SIGNAL_DECIDED):
            if before is not None and notification.id >= before:
                continue
            decided: Any = self.ledger.mapper.to_domain_event(notification)
            if ((portfolio is not None and decided.portfolio != portfolio)
                    or (decision is not None and decided.decision["decision"] != decision)
                    or (signal_type is not None and decided.signal_type != signal_type)
                    or (instrument is not None and decided.instrument != instrument.upper())
                    or not _within(decided.signal_timestamp, signal_from, signal_to)):
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


def _within(moment: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or moment >= start) and (end is None or moment < end)


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
            self._loaded[name] = (book, book.equity(equity_mode(params)))
        return self._loaded[name]

    def get(self, name: str) -> Portfolio:
        return self._load(name)[0]

    def equity(self, name: str) -> Decimal:
        return self._load(name)[1]
