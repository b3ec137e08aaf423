"""Reading and writing the projection tables of one store, and their tracking position.

Every write happens inside a transaction the caller holds, together with the tracking
position it brings the tables to: rows and position commit together or not at all. The
store's dialect (``ledger.dialect``) says how values are stored and rows fetched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ledger.application import Ledger
from projections.projector import Changes
from projections.schema import SIGNALS, TABLES, TRACKING, TRACKING_NAME, Table, decode


class TableStore:
    """The tables of one store. ``physical`` maps a table to the name it is written under
    (a rebuild writes fresh copies); ``only`` limits which tables are written at all."""

    def __init__(self, ledger: Ledger, *, physical: Mapping[str, str] | None = None,
                 only: Iterable[str] | None = None) -> None:
        self.ledger = ledger
        self.dialect = ledger.dialect
        self.p = ledger.dialect.param
        self.physical = dict(physical or {})
        self.only = set(only) if only is not None else set(TABLES)
        self._sql: dict[tuple[str, str], str] = {}

    def name(self, table: str) -> str:
        return self.physical.get(table, table)

    # -- tracking --------------------------------------------------------------------------

    def tracked(self, cursor: Any, name: str = TRACKING_NAME) -> int:
        position = self.tracked_or_none(cursor, name)
        return 0 if position is None else position

    def tracked_or_none(self, cursor: Any, name: str) -> int | None:
        """The log position tracked under ``name`` (None: nothing tracked yet). The tables
        are ``TRACKING_NAME``; other followers of the log keep theirs beside it."""
        cursor.execute(f"SELECT position FROM {TRACKING} WHERE name = {self.p}", (name,))
        row = cursor.fetchone()
        if row is None:
            return None
        return row["position"] if isinstance(row, dict) else row[0]

    def track(self, cursor: Any, name: str, position: int) -> None:
        """Set (or first record) the log position tracked under ``name``."""
        p = self.p
        cursor.execute(
            f"INSERT INTO {TRACKING} (name, position, updated_at) VALUES ({p}, {p}, {p}) "
            f"ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, "
            f"updated_at = EXCLUDED.updated_at", (name, position, self.dialect.now()))

    def lock_tracked(self, cursor: Any) -> int:
        """The tracked position, locked until the transaction ends (a row lock on Postgres,
        the write lock on SQLite): runners and rebuild swaps take turns on it."""
        p = self.p
        cursor.execute(
            f"INSERT INTO {TRACKING} (name, position, updated_at) VALUES ({p}, 0, {p}) "
            f"ON CONFLICT (name) DO NOTHING", (TRACKING_NAME, self.dialect.now()))
        cursor.execute(f"UPDATE {TRACKING} SET position = position WHERE name = {p}",
                       (TRACKING_NAME,))
        return self.tracked(cursor)

    def set_tracked(self, cursor: Any, position: int) -> None:
        cursor.execute(f"UPDATE {TRACKING} SET position = {self.p}, updated_at = {self.p} "
                       f"WHERE name = {self.p}", (position, self.dialect.now(), TRACKING_NAME))

    def lock_for_reading(self, cursor: Any, tables: Iterable[str]) -> None:
        """Read locks on several tables at once, in the one order every multi-table
        transaction uses (``TABLES``), so a reader and a rebuild's swap can never wait on
        each other in a cycle."""
        wanted = set(tables)
        self.dialect.lock_for_reading(cursor, [self.name(t) for t in TABLES if t in wanted])

    # -- rows ------------------------------------------------------------------------------

    def write(self, cursor: Any, changes: Changes) -> None:
        for table, rows in changes.upserts.items():
            if table in self.only and rows:
                self._upsert(cursor, TABLES[table], list(rows.values()))
        if SIGNALS.name in self.only:
            if changes.inserts:
                self.dialect.insert_rows(cursor, self.name(SIGNALS.name), SIGNALS.columns,
                                         list(changes.inserts.values()))
            if changes.patches:
                self._patch(cursor, SIGNALS, changes.patches)

    def _upsert(self, cursor: Any, table: Table, rows: list[dict[str, Any]]) -> None:
        sql = self._sql.get((table.name, "upsert"))
        if sql is None:
            cols = table.column_names
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in table.key)
            sql = (f"INSERT INTO {self.name(table.name)} ({', '.join(cols)}) "
                   f"VALUES ({', '.join([self.p] * len(cols))}) "
                   f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}")
            self._sql[(table.name, "upsert")] = sql
        to_db = self.dialect.to_db
        cursor.executemany(sql, [[to_db(kind, r[c]) for c, kind in table.columns]
                                 for r in rows])

    def _patch(self, cursor: Any, table: Table, patches: Mapping[str, dict[str, Any]]) -> None:
        kinds = dict(table.columns)
        to_db = self.dialect.to_db
        by_columns: dict[tuple[str, ...], list[list[Any]]] = {}
        for key, cols in patches.items():
            names = tuple(sorted(cols))
            by_columns.setdefault(names, []).append(
                [to_db(kinds[c], cols[c]) for c in names] + [key])
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
        """Decoded rows, one at a time (each is built only when it is reached). ``where``
        writes its placeholders as ``self.p``."""
        cursor.execute(f"SELECT {', '.join(table.column_names)} FROM "
                       f"{self.name(table.name)} {where}", params)
        for row in self.dialect.fetch_rows(cursor):
            yield decode(table, row)
