"""``ReadModel`` over the projection tables: what `ledger serve` reads answer from.

Rows come back exactly as the projector computed them (``projections.schema.decode``), so
they equal the rows ``projections.rows`` computes from the log at the same position.
A position's history is an audit question: it is replayed from the position's stream.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ledger import wire
from ledger.application import Ledger, UnknownPortfolio, UnknownPosition
from projections.projector import Projector, chunks
from projections.schema import PORTFOLIO_STATE, POSITIONS, PYRAMIDING, SIGNALS, STATISTICS
from projections.tables import TableStore

# portfolio_summary's open_positions entries, from portfolio_positions columns.
_OPEN_POSITION = (
    ("position_id", "position_id"), ("instrument", "instrument"), ("position", "label"),
    ("is_base_position", "is_base_position"), ("lots", "lots"), ("entry_price", "entry_price"),
    ("entry_timestamp", "entry_timestamp"), ("initial_stop", "initial_stop"),
    ("current_stop", "current_stop"), ("highest_close", "highest_close"), ("mark", "mark"),
    ("unrealized_pnl", "unrealized_pnl"), ("risk_amount", "risk_amount"),
    ("risk_contribution", "risk_contribution"), ("vol_contribution", "vol_contribution"),
    ("margin", "margin"),
)
_SUMMARY_SCALARS = (
    "version", "equity_mode", "initial_capital", "closed_equity", "unrealized_pnl",
    "open_equity", "equity", "total_risk_amount", "total_risk_percent", "total_vol_amount",
    "total_vol_percent", "margin_used", "margin_available",
)
OPEN = ("open", "partial")


class ProjectionReads:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.tables = TableStore(ledger)

    def portfolio(self, name: str) -> dict[str, Any]:
        p = self.tables.p
        with self.ledger.transaction(read_only=True) as cursor:
            self.tables.lock_for_reading(cursor, (PORTFOLIO_STATE.name, PYRAMIDING.name,
                                                  POSITIONS.name))
            state = self.tables.read(cursor, PORTFOLIO_STATE, f"WHERE portfolio = {p}", (name,))
            if not state:
                if self.ledger.config.portfolio(name) is None:
                    raise UnknownPortfolio(name)
                return self.ledger.portfolio_summary(name)  # never used: nothing to replay
            pyramiding = self.tables.read(cursor, PYRAMIDING,
                                          f"WHERE portfolio = {p} ORDER BY instrument", (name,))
            held = self.tables.read(
                cursor, POSITIONS, f"WHERE portfolio = {p} AND status IN ({p}, {p}) "
                "ORDER BY instrument, entry_timestamp, position_id", (name, *OPEN))
        row = state[0]
        return {
            "portfolio": name,
            **{k: row[k] for k in _SUMMARY_SCALARS},
            "pyramiding_state": {
                p["instrument"]: {"base_position_id": p["base_position_id"],
                                  "last_pyramid_price": p["last_pyramid_price"],
                                  "pyramids": p["pyramids"]}
                for p in pyramiding
            },
            "open_positions": [{key: h[column] for key, column in _OPEN_POSITION}
                               for h in held],
        }

    def positions(self, *, portfolio: str | None, status: str | None,
                  instrument: str | None, limit: int, entered_from: datetime | None = None,
                  entered_to: datetime | None = None,
                  before: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        p, to_db = self.tables.p, self.tables.dialect.to_db
        where, params = self._equal((("portfolio", portfolio), ("status", status),
                                     ("instrument", instrument.upper() if instrument else None)))
        self._range(where, params, "entry_timestamp", entered_from, entered_to)
        if before is not None:
            created_at, position_id = before
            where.append(f"(created_at < {p} OR (created_at = {p} AND position_id < {p}))")
            params += [to_db("ts", created_at), to_db("ts", created_at), position_id]
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self.ledger.transaction(read_only=True) as cursor:
            return self.tables.read(
                cursor, POSITIONS, f"{clause}ORDER BY created_at DESC, position_id DESC "
                f"LIMIT {int(limit)}", tuple(params))

    def position(self, position_id: str) -> dict[str, Any]:
        with self.ledger.transaction(read_only=True) as cursor:
            found = self.tables.read(cursor, POSITIONS,
                                     f"WHERE position_id = {self.tables.p}", (position_id,))
        if not found:
            raise UnknownPosition(position_id)
        return found[0]

    def position_history(self, position_id: str) -> list[dict[str, Any]]:
        return self.ledger.position_history(position_id)

    def signals(self, *, portfolio: str | None, limit: int, decision: str | None = None,
                signal_type: str | None = None, instrument: str | None = None,
                signal_from: datetime | None = None, signal_to: datetime | None = None,
                before: int | None = None) -> list[dict[str, Any]]:
        where, params = self._equal((
            ("portfolio", portfolio), ("processing_status", decision),
            ("signal_type", signal_type),
            ("instrument", instrument.upper() if instrument else None)))
        self._range(where, params, "signal_timestamp", signal_from, signal_to)
        if before is not None:
            where.append(f"id < {self.tables.p}")
            params.append(before)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self.ledger.transaction(read_only=True) as cursor:
            return self.tables.read(cursor, SIGNALS, f"{clause}ORDER BY id DESC "
                                    f"LIMIT {int(limit)}", tuple(params))

    def _equal(self, filters: tuple[tuple[str, str | None], ...]) -> tuple[list[str], list[Any]]:
        """``column = value`` for every filter given (None: not filtered)."""
        where, params = [], []
        for column, value in filters:
            if value is not None:
                where.append(f"{column} = {self.tables.p}")
                params.append(value)
        return where, params

    def _range(self, where: list[str], params: list[Any], column: str,
               start: datetime | None, end: datetime | None) -> None:
        """``start <= column < end`` (either bound optional), on a ``ts`` column."""
        for bound, op in ((start, ">="), (end, "<")):
            if bound is not None:
                where.append(f"{column} {op} {self.tables.p}")
                params.append(self.tables.dialect.to_db("ts", wire.iso(bound)))

    def statistics(self, *, portfolio: str | None) -> dict[str, Any]:
        """``trading_statistics`` rows (one per portfolio with any activity, by name) and the
        log position the tables are at."""
        clause, params = ((f"WHERE portfolio = {self.tables.p} ", (portfolio,)) if portfolio
                          else ("", ()))
        with self.ledger.transaction(snapshot=True, read_only=True) as cursor:
            self.tables.lock_for_reading(cursor, (STATISTICS.name,))
            position = self.tables.tracked(cursor)
            found = self.tables.read(cursor, STATISTICS, f"{clause}ORDER BY portfolio", params)
        return _statistics(self.ledger, portfolio, position, found)


def _statistics(ledger: Ledger, portfolio: str | None, position: int,
                found: list[dict[str, Any]]) -> dict[str, Any]:
    """The statistics answer; a portfolio neither configured nor in the log is unknown (one
    configured but not used yet has no row: an empty list)."""
    if portfolio is not None and not found and ledger.config.portfolio(portfolio) is None:
        raise UnknownPortfolio(portfolio)
    return {"log_position": position, "statistics": found}


def statistics_from_log(ledger: Ledger, *, portfolio: str | None = None,
                        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """What ``ProjectionReads.statistics`` answers, computed from the whole log by the
    projector the tables come from (no runner, no projection tables needed): the same rows
    the tables hold once they reach the same log position. ``progress(position, head)``
    after each batch."""
    head = ledger.recorder.max_notification_id() or 0
    projector = Projector(ledger)
    batch = ledger.config.limits.projection_rebuild_batch_events
    for notifications in chunks(ledger, 0, batch, stop=head):
        projector.apply_all(notifications)
        projector.flush()  # only the statistics are kept; flushing frees closed positions
        if progress is not None:
            progress(projector.position, head)
    found = [stats.row() for name, stats in sorted(projector.stats.items())
             if portfolio is None or name == portfolio]
    return _statistics(ledger, portfolio, projector.position, found)


def with_projection_rows(ledger: Ledger, trail: dict[str, Any]) -> dict[str, Any]:
    """A signal's trail (``Ledger.signal_trail``) completed by its last step: the rows the
    tables hold for it — its ``signal_log`` row and the rows of the positions its decision
    touched (None where not projected yet), at the tables' log position."""
    reads = ProjectionReads(ledger)
    p = reads.tables.p
    with ledger.transaction(snapshot=True, read_only=True) as cursor:
        reads.tables.lock_for_reading(cursor, (SIGNALS.name, POSITIONS.name))
        position = reads.tables.tracked(cursor)
        signal = reads.tables.read(cursor, SIGNALS, f"WHERE fingerprint = {p}",
                                   (trail["fingerprint"],))
        positions = {}
        for position_id in trail["decision"].get("position_ids", []):
            found = reads.tables.read(cursor, POSITIONS, f"WHERE position_id = {p}",
                                      (position_id,))
            positions[position_id] = found[0] if found else None
    return {**trail, "projection_rows": {"log_position": position,
                                         "signal_log": signal[0] if signal else None,
                                         "portfolio_positions": positions}}
