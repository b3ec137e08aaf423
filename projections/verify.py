"""`ledger verify`: replay every stream, recompute every table, compare with what is stored.

The stored tables and their tracked position are read in one snapshot; the log is replayed up
to that position with the same projector the runner uses, into memory. Equal means every row
the tables hold is the row the log gives, and no row is missing or extra.
"""

from __future__ import annotations

from typing import Any

from ledger.application import Ledger
from projections.projector import Changes, Projector, chunks
from projections.store import TableStore
from projections.tables import SIGNALS, TABLES

DIFF_LINES_MAX = 50  # differences listed before "... and N more"
# The snapshot's transaction sits idle while the client decodes each table's rows (seconds
# per million); the library's session default (5 s) ended it on a 1M-event store.
SNAPSHOT_IDLE_S_MAX = 600


def replay(ledger: Ledger, position: int) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Every table's rows as the log up to ``position`` gives them, keyed by primary key."""
    expected: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {t: {} for t in TABLES}
    projector = Projector(ledger)
    batch = ledger.config.limits.projection_rebuild_batch_events
    for notifications in chunks(ledger, 0, batch, stop=position):
        projector.apply_all([n for n in notifications if n.id <= position])
        _merge(expected, projector.flush())
    return expected


def _merge(tables: dict[str, dict[tuple[Any, ...], dict[str, Any]]], changes: Changes) -> None:
    for table, rows in changes.upserts.items():
        tables[table].update(rows)
    signals = tables[SIGNALS.name]
    for fingerprint, row in changes.inserts.items():
        signals[(fingerprint,)] = dict(row)
    for fingerprint, columns in changes.patches.items():
        signals[(fingerprint,)].update(columns)


def verify(ledger: Ledger) -> tuple[int, list[str]]:
    """(the position verified at, the differences found: empty when the tables are right)."""
    store = TableStore(ledger)
    with ledger.transaction(snapshot=True, read_only=True) as cursor:
        if ledger.store.backend == "postgres":  # decoding a big table leaves it idle a while
            cursor.execute(f"SET LOCAL idle_in_transaction_session_timeout = "
                           f"'{SNAPSHOT_IDLE_S_MAX}s'")
        store.lock_for_reading(cursor, TABLES)
        position = store.tracked(cursor)
        stored = {name: {tuple(row[k] for k in table.key): row
                         for row in store.read(cursor, table)}
                  for name, table in TABLES.items()}
    expected = replay(ledger, position)
    diffs: list[str] = []
    for name in TABLES:
        have, want = stored[name], expected[name]
        for key in sorted(set(want) - set(have), key=str):
            diffs.append(f"{name}[{_key(key)}]: missing (the log has it)")
        for key in sorted(set(have) - set(want), key=str):
            diffs.append(f"{name}[{_key(key)}]: extra (the log does not have it)")
        for key in sorted(set(have) & set(want), key=str):
            for column, value in want[key].items():
                if have[key].get(column) != value:
                    diffs.append(f"{name}[{_key(key)}].{column}: stored "
                                 f"{have[key].get(column)!r}, the log gives {value!r}")
    return position, diffs


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
