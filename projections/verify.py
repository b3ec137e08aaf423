"""`ledger verify`: replay every stream, recompute every table, compare with what is stored.

The log is replayed with the same projector the runner uses, into memory, up to the tables'
tracked position; the tables are then read in one snapshot (the replay first catches up to
the position that snapshot holds) and compared row by row as they stream past. Equal means
every row the tables hold is the row the log gives, and no row is missing or extra; except
that ``signal_log`` rows processed before a retention horizon may be missing (the leader's
retention job prunes them; the log keeps them): such a row, when present, must still be equal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ledger.application import Ledger
from projections.projector import Changes, Projector, chunks
from projections.schema import SIGNALS, TABLES
from projections.tables import TableStore

DIFF_LINES_MAX = 50  # differences listed before "... and N more"
# The snapshot's transaction sits idle while the client decodes and compares each table's rows
# (seconds per million); the library's session default (5 s) ended it on a 1M-event store.
SNAPSHOT_IDLE_S_MAX = 600


class _Replay:
    """The log folded into every table's expected rows, keyed by primary key; advanced on
    demand, so the long replay runs outside the snapshot and only its tail inside."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.projector = Projector(ledger)
        self.rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {t: {} for t in TABLES}

    def up_to(self, position: int,
              progress: Callable[[int, int], None] | None = None) -> None:
        batch = self.ledger.config.limits.projection_rebuild_batch_events
        for notifications in chunks(self.ledger, self.projector.position, batch,
                                    stop=position):
            self.projector.apply_all(notifications)
            self._merge(self.projector.flush())
            if progress is not None:
                progress(self.projector.position, position)

    def _merge(self, changes: Changes) -> None:
        for table, rows in changes.upserts.items():
            self.rows[table].update(rows)
        signals = self.rows[SIGNALS.name]
        for fingerprint, row in changes.inserts.items():
            signals[(fingerprint,)] = dict(row)
        for fingerprint, columns in changes.patches.items():
            signals[(fingerprint,)].update(columns)


def verify(ledger: Ledger, *, signal_log_horizon: datetime | None = None,
           progress: Callable[[int, int], None] | None = None
           ) -> tuple[int, list[str]]:
    """(the position verified at, the differences found: empty when the tables are right).

    The stored rows stream past the expected ones table by table, so only the expected side
    is ever held whole (it is freed table by table as it is compared).
    ``signal_log_horizon``: a ``signal_log`` row processed before it may be absent.
    ``progress(position, target)`` after each batch of the replay."""
    store = TableStore(ledger)
    expected = _Replay(ledger)
    with ledger.transaction(read_only=True) as cursor:
        expected.up_to(store.tracked(cursor), progress)  # most of the log, outside the snapshot
    diffs: list[str] = []
    with ledger.transaction(snapshot=True, read_only=True) as cursor:
        ledger.dialect.allow_idle(cursor, SNAPSHOT_IDLE_S_MAX)  # comparing leaves it idle
        store.lock_for_reading(cursor, TABLES)
        position = store.tracked(cursor)
        expected.up_to(position)  # what the runner applied meanwhile
        for name, table in TABLES.items():
            want = expected.rows.pop(name)
            missing, extra, changed = [], [], []
            for have in store.rows(cursor, table):
                key = tuple(have[k] for k in table.key)
                row = want.pop(key, None)
                if row is None:
                    extra.append(key)
                    continue
                changed.extend((key, column, have.get(column), value)
                               for column, value in row.items() if have.get(column) != value)
            missing = [k for k, row in want.items()
                       if not (name == SIGNALS.name and _pruned(row, signal_log_horizon))]
            diffs += [f"{name}[{_key(k)}]: missing (the log has it)"
                      for k in sorted(missing, key=str)]
            diffs += [f"{name}[{_key(k)}]: extra (the log does not have it)"
                      for k in sorted(extra, key=str)]
            diffs += [f"{name}[{_key(k)}].{column}: stored {stored!r}, the log gives {value!r}"
                      for k, column, stored, value in sorted(changed, key=lambda c: str(c[0]))]
    return position, diffs


def _pruned(row: dict[str, Any], horizon: datetime | None) -> bool:
    """A ``signal_log`` row old enough for retention to have deleted it."""
    processed = row.get("processed_at")
    return (horizon is not None and processed is not None
            and datetime.fromisoformat(processed) < horizon)


def _key(key: tuple[Any, ...]) -> str:
    return "/".join(str(k) for k in key)


def render(position: int, diffs: list[str], head: int | None = None) -> str:
    behind = (f" ({head - position} later events not yet applied: `ledger project`)"
              if head is not None and head > position else "")
    if not diffs:
        return (f"projections verified at log position {position}{behind}: every table "
                f"equals the log")
    shown = diffs[:DIFF_LINES_MAX]
    more = len(diffs) - len(shown)
    return "\n".join([f"projections differ from the log at position {position}{behind}:", *shown,
                      *([f"... and {more} more"] if more else [])])
