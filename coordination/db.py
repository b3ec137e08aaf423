"""The coordination layer's own database connections: bounded, and apart from the Ledger's.

Term statements must never queue behind the decision path's pool, and a store that hangs
must cost a renewal at most its statement timeout, so each thread that speaks for the
coordinator opens its own connection here: Postgres (``conninfo``) or a SQLite file (single
mode, the stdlib ``sqlite3`` module).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import make_conninfo

Dialect = Literal["postgres", "sqlite"]

SQLITE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, so text order is time order
# The kernel gives up on a silent Postgres peer (a hung host, not a slow query) after this
# many statement timeouts, and never sooner than TCP_USER_TIMEOUT_MS_MIN.
TCP_USER_TIMEOUT_STATEMENTS = 5
TCP_USER_TIMEOUT_MS_MIN = 1000
# The server ends a coordination session left idle inside a transaction after this many
# statement timeouts: a hung thread must not hold the term row's lock.
IDLE_IN_TRANSACTION_STATEMENTS = 10


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

    @classmethod
    def from_url(cls, url: str) -> StoreTarget:
        """The target for a ``LEDGER_DATABASE_URL`` (``sqlite:///FILE`` or
        ``postgresql://...[?schema=name]``): the same store the Ledger uses."""
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            path = unquote(parts.path)
            path = path[1:] if path.startswith("/") else path  # sqlite:////abs -> /abs
            if not path or path == ":memory:":
                raise ValueError(f"{url}: coordination needs a file every process opens")
            return cls(sqlite_path=path)
        if parts.scheme in ("postgresql", "postgres"):
            query = parse_qs(parts.query)
            unknown = set(query) - {"schema"}
            if unknown:
                raise ValueError(f"unknown database URL parameter(s) {sorted(unknown)}")
            conninfo = urlunsplit(parts._replace(query=""))
            if "schema" in query:
                schema = query["schema"][0]
                if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
                    raise ValueError("schema must be a plain lower-case identifier")
                conninfo = make_conninfo(conninfo, options=f"-c search_path={schema}")
            return cls(conninfo=conninfo)
        raise ValueError(f"{parts.scheme}: expected sqlite:///FILE or postgresql://...")

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
            tcp_user_timeout=max(statement_timeout_ms * TCP_USER_TIMEOUT_STATEMENTS,
                                 TCP_USER_TIMEOUT_MS_MIN))
        idle_ms = statement_timeout_ms * IDLE_IN_TRANSACTION_STATEMENTS
        with conn.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
            cursor.execute(f"SET idle_in_transaction_session_timeout = {int(idle_ms)}")
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


def values(row: Any) -> tuple[Any, ...]:
    """A fetched row as a tuple, whatever the cursor's row factory: our own connections give
    tuples, the Ledger's Postgres connections dicts (a fenced write runs on those)."""
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


def close_quietly(conn: Any) -> None:
    """Close a connection that may already be broken."""
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


DATABASE_ERRORS: tuple[type[BaseException], ...] = (psycopg.Error, sqlite3.Error)
