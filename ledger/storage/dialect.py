"""What the code asks of a database, one implementation per backend.

The library chooses its persistence module from the URL (``PERSISTENCE_MODULE``); we choose
the matching dialect at the same moment (``ledger.storage.store_settings``) and the rest of
the code asks it instead of asking which database it is on. A dialect works on the library's
own datastore (its connection pool), so our SQL runs on the connections the events use.

Column kinds (projection rows are JSON-ready: money and prices as strings, times ISO 8601):
``text``, ``int``, ``bool``, ``num`` (exact decimal), ``ts`` (a UTC instant), ``json``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

from eventsourcing.persistence import Notification

Column = tuple[str, str]  # (name, kind)


class SessionLock(Protocol):
    """A lock one process holds for as long as it lives (or until it releases it)."""

    @property
    def held(self) -> bool: ...

    def try_acquire(self) -> bool: ...

    def check(self) -> bool:
        """Still held? (May find out the lock was lost with its connection.)"""
        ...

    def release(self) -> None: ...


class Dialect(Protocol):
    name: ClassVar[str]  # "postgres" or "sqlite": the folder of its migrations
    param: ClassVar[str]  # the driver's placeholder: %s or ?
    # Whether reading, folding and writing may overlap in threads (rebuild), and whether the
    # log may be read inside a transaction that holds the projections' write lock.
    concurrent_io: ClassVar[bool]
    # Whether worker threads must stay below the store's connection pool (or wait on it).
    bounded_pool: ClassVar[bool]
    reads_under_write_lock: ClassVar[bool]

    @staticmethod
    def name_connections(factory: Any, name: str) -> None:
        """Name the connections of the library's infrastructure ``factory`` (Postgres'
        ``application_name``), before any is opened."""
        ...

    def transaction(self, *, snapshot: bool = False, read_only: bool = False
                    ) -> AbstractContextManager[Any]:
        """A DB-API cursor in one transaction, committed at the end unless ``read_only``.
        ``snapshot``: every statement reads the same snapshot. Unqualified table names
        resolve beside the event tables."""
        ...

    def turn(self, key: str, timeout_s: int) -> AbstractContextManager[None]:
        """Take turns with every other process on ``key`` (a no-op where one process
        writes at a time anyway); raises the library's OperationalError after
        ``timeout_s``."""
        ...

    def session_lock(self, name: str) -> SessionLock:
        """A lock named ``name`` that dies with its holder."""
        ...

    def lock_for_reading(self, cursor: Any, tables: Sequence[str]) -> None:
        """Read locks on several tables at once, taken in the order given."""
        ...

    def lock_for_swapping(self, cursor: Any, tables: Sequence[str], wait_ms: int) -> None:
        """Exclusive locks on tables about to be replaced, waiting at most ``wait_ms``."""
        ...

    def allow_idle(self, cursor: Any, seconds: int) -> None:
        """Let this transaction sit idle up to ``seconds`` (a long client-side compare)."""
        ...

    def to_db(self, kind: str, value: Any) -> Any:
        """A JSON-ready row value as this backend stores it."""
        ...

    def now(self) -> Any:
        """The current instant as a ``ts`` column takes it."""
        ...

    def insert_rows(self, cursor: Any, table: str, columns: Sequence[Column],
                    rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert many rows (JSON-ready values) the fastest way this backend has."""
        ...

    def fetch_rows(self, cursor: Any) -> Iterator[Any]:
        """The rows of the last query, a bounded number in memory at a time."""
        ...

    def notifications(self, after: int, limit: int, stop: int | None = None
                      ) -> list[Notification]:
        """Up to ``limit`` notifications after ``after`` (up to ``stop``), in log order."""
        ...

    def create_schema(self) -> None:
        """The namespace the tables live in, created if missing."""
        ...

    def execute_script(self, cursor: Any, sql: str) -> None:
        """Run a migration file (several statements)."""
        ...

    def table_names(self, cursor: Any) -> list[str]:
        """The tables beside the event tables (the store's schema)."""
        ...

    def copy_table(self, cursor: Any, table: str, copy: str, suffix: str) -> None:
        """An empty ``copy`` of ``table``: its columns, constraints and indexes."""
        ...

    def replace_table(self, cursor: Any, table: str, copy: str) -> None:
        """Drop ``table`` and rename ``copy`` into its place (keeping index names)."""
        ...
