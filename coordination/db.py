"""The coordination layer's own database connections: bounded, and apart from the Ledger's.

Term statements must never queue behind the decision path's pool, and a store that hangs
must cost a renewal at most its statement timeout, so each thread that speaks for the
coordinator opens its own connection here: Postgres (``conninfo``) or a SQLite file (single
mode, the stdlib ``sqlite3`` module).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

Dialect = Literal["postgres", "sqlite"]

SQLITE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, so text order is time order


def sqlite_time(moment: datetime) -> str:
    """``moment`` as SQLite stores it: fixed-width ISO 8601 UTC text."""
    return moment.astimezone(UTC).strftime(SQLITE_TIME_FORMAT)


def parse_time(value: Any) -> datetime | None:
    """A stored time (a datetime from Postgres, text from SQLite) as an aware datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.strptime(value, SQLITE_TIME_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class StoreTarget:
    """Where the coordination tables live: a Postgres conninfo or a SQLite file path."""

    conninfo: str | None = None
    sqlite_path: str | None = None

    def __post_init__(self) -> None:
        if (self.conninfo is None) == (self.sqlite_path is None):
            raise ValueError("give exactly one of conninfo (Postgres) or sqlite_path")

    @property
    def dialect(self) -> Dialect:
        return "postgres" if self.conninfo is not None else "sqlite"

    def connect(self, statement_timeout_ms: int, connect_timeout_s: int,
                application_name: str = "ledger-coordination") -> Any:
        """A new connection, outside autocommit, every statement bounded."""
        if self.sqlite_path is not None:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves (transaction()), so a
            # term statement takes the write lock before it reads. The busy timeout bounds
            # the wait for another writer, as statement_timeout does on Postgres.
            conn = sqlite3.connect(self.sqlite_path, timeout=statement_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
            return conn
        conn = psycopg.connect(
            self.conninfo or "", autocommit=False, connect_timeout=connect_timeout_s,
            application_name=application_name,
            # the kernel gives up on a silent peer after this long (a hung host, not a slow one)
            tcp_user_timeout=max(statement_timeout_ms * 5, 1000))
        with conn.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
            cursor.execute(f"SET idle_in_transaction_session_timeout = "
                           f"{int(max(statement_timeout_ms * 10, 1000))}")
        conn.commit()
        return conn


@contextlib.contextmanager
def transaction(conn: Any, dialect: Dialect) -> Iterator[Any]:
    """One transaction on ``conn``: commit on success, roll back on any error."""
    cursor = conn.cursor()
    try:
        if dialect == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        yield cursor
        conn.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    finally:
        with contextlib.suppress(Exception):
            cursor.close()


def close_quietly(conn: Any) -> None:
    """Close a connection that may already be broken."""
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


DATABASE_ERRORS: tuple[type[BaseException], ...] = (psycopg.Error, sqlite3.Error)
