"""The SQLite dialect: the embedded default, one machine, one writer at a time."""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from ledger import wire
from ledger.storage.dialect import Column

if TYPE_CHECKING:
    from ledger.storage import StoreSettings

_TS = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed-width UTC text: sorts as the instants do


class SQLiteDialect:
    name: ClassVar[str] = "sqlite"
    param: ClassVar[str] = "?"
    concurrent_io: ClassVar[bool] = False
    # One writer: reading the log under the write lock could wait on ourselves.
    bounded_pool: ClassVar[bool] = False  # connections open as threads ask
    reads_under_write_lock: ClassVar[bool] = False

    @staticmethod
    def name_connections(factory: Any, name: str) -> None:
        """Nothing to name: a file has no server listing its connections."""

    def __init__(self, settings: StoreSettings, recorder: SQLiteApplicationRecorder) -> None:
        self.settings = settings
        self.path = settings.env["SQLITE_DBNAME"]
        self.recorder = recorder
        self.datastore = recorder.datastore

    @contextmanager
    def transaction(self, *, snapshot: bool = False, read_only: bool = False
                    ) -> Iterator[Any]:
        # A read-only transaction takes a reader connection, so it never queues behind a
        # decision for the writer's; every SQLite transaction reads one snapshot.
        with self.datastore.transaction(commit=not read_only) as cursor:
            yield cursor

    def turn(self, key: str, timeout_s: int) -> contextlib.AbstractContextManager[None]:
        return nullcontext()  # writers take turns on the database's write lock already

    def session_lock(self, name: str) -> FileLock | HeldLock:
        if self.path == ":memory:" or self.path.startswith("file:"):
            return HeldLock()  # a store in this process's memory: nobody else can share it
        return FileLock(Path(f"{self.path}.{name}.lock"))

    def lock_for_reading(self, cursor: Any, tables: Sequence[str]) -> None:
        pass  # a reader sees one snapshot; a swap waits for the write lock

    def lock_for_swapping(self, cursor: Any, tables: Sequence[str], wait_ms: int) -> None:
        pass  # the swap's transaction holds the write lock already

    def allow_idle(self, cursor: Any, seconds: int) -> None:
        pass

    def to_db(self, kind: str, value: Any) -> Any:
        if value is None:
            return None
        if kind == "num":
            return str(value)
        if kind == "ts":
            return datetime.fromisoformat(value).astimezone(UTC).strftime(_TS)
        if kind == "json":
            return wire.dumps(value).decode()
        if kind == "bool":
            return int(bool(value))
        return value

    def now(self) -> Any:
        return datetime.now(UTC).isoformat()

    def insert_rows(self, cursor: Any, table: str, columns: Sequence[Column],
                    rows: Sequence[Mapping[str, Any]]) -> None:
        names = ", ".join(c for c, _ in columns)
        cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({', '.join(['?'] * len(columns))})",
            [[self.to_db(kind, row[c]) for c, kind in columns] for row in rows])

    def fetch_rows(self, cursor: Any) -> Iterator[Any]:
        # The library's SQLite cursor offers one row at a time, or all.
        while (row := cursor.fetchone()) is not None:
            yield row

    def notifications(self, after: int, limit: int, stop: int | None = None
                      ) -> list[Notification]:
        return list(self.recorder.select_notifications(after, limit, stop=stop,
                                                       inclusive_of_start=False))

    def create_schema(self) -> None:
        pass  # a SQLite file is its own schema

    def execute_script(self, cursor: Any, sql: str) -> None:
        # sqlite3 runs one statement per call; migration files end each statement with ';'
        # at the end of a line.
        for statement in re.split(r";\s*$", sql, flags=re.MULTILINE):
            if statement.strip():
                cursor.execute(statement.strip())

    def table_names(self, cursor: Any) -> list[str]:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return [row[0] for row in cursor.fetchall()]

    def copy_table(self, cursor: Any, table: str, copy: str, suffix: str) -> None:
        cursor.execute("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? "
                       "AND sql IS NOT NULL ORDER BY type DESC", (table,))
        for kind, obj, sql in [tuple(r) for r in cursor.fetchall()]:
            if kind == "table":
                cursor.execute(re.sub(rf"^CREATE TABLE (IF NOT EXISTS )?\"?{table}\"?",
                                      f"CREATE TABLE {copy}", sql, count=1))
            elif kind == "index":
                base = obj.split("__r", 1)[0]
                cursor.execute(re.sub(
                    rf"^CREATE (UNIQUE )?INDEX (IF NOT EXISTS )?\S+ ON \"?{table}\"?",
                    rf"CREATE \g<1>INDEX {base}{suffix} ON {copy}", sql, count=1))

    def replace_table(self, cursor: Any, table: str, copy: str) -> None:
        cursor.execute(f"DROP TABLE {table}")
        cursor.execute(f"ALTER TABLE {copy} RENAME TO {table}")


class FileLock:
    """An exclusive lock on a file beside the database: it dies with the process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        handle = self.path.open("ab")  # held open while the lock is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def check(self) -> bool:
        return self.held

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file, fcntl.LOCK_UN)
                self._file.close()
            self._file = None


class HeldLock:
    """The lock of a store only this process can open: always held once asked for."""

    def __init__(self) -> None:
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        self._held = True
        return True

    def check(self) -> bool:
        return self._held

    def release(self) -> None:
        self._held = False


class FencedApplicationRecorder(SQLiteApplicationRecorder):
    """The library's recorder; ``save(..., fence=check)`` runs ``check(cursor)`` in the
    transaction that inserts the events (as on Postgres)."""

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        fence = kwargs.get("fence")
        if fence is not None:
            # After the inserts, under the write lock they took (a read first could not be
            # upgraded to a write if another connection wrote meanwhile); raising rolls the
            # whole transaction back.
            fence(c)
        return returning
