"""Writing and reading the projection tables, on Postgres and on SQLite.

Every write happens inside a transaction the caller holds, together with the tracking
position it brings the tables to: rows and position commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from ledger.application import Ledger
from projections.projector import Changes
from projections.tables import (
    SIGNALS,
    TABLES,
    TRACKING,
    TRACKING_NAME,
    Table,
    decode,
    to_copy,
    to_db,
)

ROWS_PER_FETCH = 1000  # rows decoded at a time when a table is read row by row
COPY_ROWS_MIN = 101  # new signal rows from which COPY beats a multi-row INSERT (Postgres)


class TableStore:
    """The tables of one store. ``physical`` maps a table to the name it is written under
    (a rebuild writes fresh copies); ``only`` limits which tables are written at all."""

    def __init__(self, ledger: Ledger, *, physical: Mapping[str, str] | None = None,
                 only: Iterable[str] | None = None) -> None:
        self.ledger = ledger
        self.backend = ledger.store.backend
        self.p = "%s" if self.backend == "postgres" else "?"
        self.physical = dict(physical or {})
        self.only = set(only) if only is not None else set(TABLES)
        self._sql: dict[tuple[str, str], str] = {}

    def name(self, table: str) -> str:
        return self.physical.get(table, table)

    # -- tracking --------------------------------------------------------------------------

    def tracked(self, cursor: Any) -> int:
        cursor.execute(f"SELECT position FROM {TRACKING} WHERE name = {self.p}",
                       (TRACKING_NAME,))
        row = cursor.fetchone()
        if row is None:
            return 0
        return row["position"] if isinstance(row, dict) else row[0]

    def lock_tracked(self, cursor: Any) -> int:
        """The tracked position, locked until the transaction ends (a row lock on Postgres,
        the write lock on SQLite): runners and rebuild swaps take turns on it."""
        p = self.p
        cursor.execute(
            f"INSERT INTO {TRACKING} (name, position, updated_at) VALUES ({p}, 0, {p}) "
            f"ON CONFLICT (name) DO NOTHING", (TRACKING_NAME, _now(self.backend)))
        cursor.execute(f"UPDATE {TRACKING} SET position = position WHERE name = {p}",
                       (TRACKING_NAME,))
        return self.tracked(cursor)

    def set_tracked(self, cursor: Any, position: int) -> None:
        cursor.execute(f"UPDATE {TRACKING} SET position = {self.p}, updated_at = {self.p} "
                       f"WHERE name = {self.p}", (position, _now(self.backend), TRACKING_NAME))

    def lock_for_reading(self, cursor: Any, tables: Iterable[str]) -> None:
        """Postgres: take a transaction's read locks on several tables at once, in the one
        order every multi-table transaction uses (``TABLES``), so a reader and a rebuild's
        swap can never wait on each other in a cycle. SQLite needs none."""
        if self.backend == "postgres":
            names = [self.name(t) for t in TABLES if t in set(tables)]
            cursor.execute(f"LOCK TABLE {', '.join(names)} IN ACCESS SHARE MODE")

    # -- rows ------------------------------------------------------------------------------

    def write(self, cursor: Any, changes: Changes) -> None:
        for table, rows in changes.upserts.items():
            if table in self.only and rows:
                self._upsert(cursor, TABLES[table], list(rows.values()))
        if SIGNALS.name in self.only:
            if changes.inserts:
                self._insert(cursor, SIGNALS, list(changes.inserts.values()))
            if changes.patches:
                self._patch(cursor, SIGNALS, changes.patches)

    def _convert(self, table: Table, row: Mapping[str, Any],
                 columns: Iterable[tuple[str, str]] | None = None) -> list[Any]:
        return [to_db(kind, row[c], self.backend) for c, kind in (columns or table.columns)]

    def _upsert(self, cursor: Any, table: Table, rows: list[dict[str, Any]]) -> None:
        sql = self._sql.get((table.name, "upsert"))
        if sql is None:
            cols = table.column_names
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in table.key)
            sql = (f"INSERT INTO {self.name(table.name)} ({', '.join(cols)}) "
                   f"VALUES ({', '.join([self.p] * len(cols))}) "
                   f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}")
            self._sql[(table.name, "upsert")] = sql
        cursor.executemany(sql, [self._convert(table, r) for r in rows])

    def _insert(self, cursor: Any, table: Table, rows: list[dict[str, Any]]) -> None:
        name, cols = self.name(table.name), ", ".join(table.column_names)
        if self.backend == "postgres" and len(rows) >= COPY_ROWS_MIN:
            columns = table.columns
            with cursor.copy(f"COPY {name} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([to_copy(kind, row[c]) for c, kind in columns])
            return
        sql = f"INSERT INTO {name} ({cols}) VALUES ({', '.join([self.p] * len(table.columns))})"
        cursor.executemany(sql, [self._convert(table, r) for r in rows])

    def _patch(self, cursor: Any, table: Table, patches: Mapping[str, dict[str, Any]]) -> None:
        kinds = dict(table.columns)
        by_columns: dict[tuple[str, ...], list[list[Any]]] = {}
        for key, cols in patches.items():
            names = tuple(sorted(cols))
            by_columns.setdefault(names, []).append(
                [to_db(kinds[c], cols[c], self.backend) for c in names] + [key])
        (key_column,) = table.key
        for names, params in by_columns.items():
            sets = ", ".join(f"{c} = {self.p}" for c in names)
            cursor.executemany(f"UPDATE {self.name(table.name)} SET {sets} "
                               f"WHERE {key_column} = {self.p}", params)

    def read(self, cursor: Any, table: Table, where: str = "", params: tuple[Any, ...] = ()
             ) -> list[dict[str, Any]]:
        return list(self.rows(cursor, table, where, params))

    def rows(self, cursor: Any, table: Table, where: str = "", params: tuple[Any, ...] = ()
             ) -> Iterator[dict[str, Any]]:
        """Decoded rows, one at a time (each is built only when it is reached)."""
        sql = f"SELECT {', '.join(table.column_names)} FROM {self.name(table.name)} {where}"
        cursor.execute(sql.replace("%s", self.p) if self.p != "%s" else sql, params)
        if self.backend == "postgres":
            while rows := cursor.fetchmany(ROWS_PER_FETCH):
                for row in rows:
                    yield decode(table, row)
        else:  # the library's SQLite cursor offers one row at a time, or all
            while (row := cursor.fetchone()) is not None:
                yield decode(table, row)


def _now(backend: str) -> Any:
    now = datetime.now(UTC)
    return now if backend == "postgres" else now.isoformat()
