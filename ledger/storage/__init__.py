"""Where events are stored: ``LEDGER_DATABASE_URL`` turned into the library's settings and
the dialect the rest of the code asks (``ledger.storage.dialect``), chosen once, here.

``sqlite:///relative/path`` or ``sqlite:////absolute/path`` (the embedded default), or
``postgresql://user:password@host:port/dbname?schema=name`` (production).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ledger.config import Limits
from ledger.storage.postgres import PostgresDialect
from ledger.storage.sqlite import SQLiteDialect

DEFAULT_DATABASE_URL = "sqlite:///ledger.sqlite3"


class StoreUrlError(ValueError):
    pass


@dataclass(frozen=True)
class StoreSettings:
    url: str
    dialect: type[PostgresDialect] | type[SQLiteDialect]
    env: dict[str, str]  # eventsourcing environment for the application

    def open_dialect(self, recorder: Any) -> PostgresDialect | SQLiteDialect:
        """The dialect bound to the application's recorder (its connection pool)."""
        return self.dialect(self, recorder)

    @property
    def redacted_url(self) -> str:
        """The URL without its password, for logs and messages."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()


def store_settings(url: str | None = None, limits: Limits | None = None, *,
                   pool: tuple[int, int] | None = None) -> StoreSettings:
    """Settings for ``url`` (default: ``$LEDGER_DATABASE_URL``, else the embedded file).
    ``pool``: (connections kept, extra under load) on Postgres; default
    (``store_pool_size``, ``store_pool_overflow``)."""
    url = url or os.environ.get("LEDGER_DATABASE_URL") or DEFAULT_DATABASE_URL
    limits = limits or Limits()
    pool_size, pool_overflow = pool or (limits.store_pool_size, limits.store_pool_overflow)
    parts = urlsplit(url)
    common = {
        "CREATE_TABLE": "n",  # tables come from `ledger migrate`, never from a process start
        "IS_SNAPSHOTTING_ENABLED": "y",
        "AGGREGATE_CACHE_MAXSIZE": str(limits.aggregate_cache_size),
        "AGGREGATE_CACHE_FASTFORWARD": "y",  # other instances may have appended since
    }
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path.startswith("/"):
            path = path[1:]  # sqlite:///rel -> "rel"; sqlite:////abs -> "/abs"
        if not path:
            raise StoreUrlError(f"{url}: no file path (try {DEFAULT_DATABASE_URL})")
        if path != ":memory:" and Path(path).parent != Path() and not Path(path).parent.exists():
            raise StoreUrlError(f"{url}: directory {Path(path).parent} does not exist")
        env = {
            **common,
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "APPLICATION_RECORDER_TOPIC": "ledger.storage.sqlite:FencedApplicationRecorder",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": str(max(1, limits.store_lock_timeout_s)),
        }
        return StoreSettings(url, SQLiteDialect, env)
    if parts.scheme in ("postgresql", "postgres"):
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise StoreUrlError(f"{redact(url)}: no database name")
        query = parse_qs(parts.query)
        unknown = set(query) - {"schema"}
        if unknown:
            raise StoreUrlError(f"{redact(url)}: unknown parameter(s) {sorted(unknown)}")
        schema = query.get("schema", ["public"])[0]
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise StoreUrlError(f"{redact(url)}: schema must be a plain lower-case identifier")
        env = {
            **common,
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "APPLICATION_RECORDER_TOPIC": "ledger.storage.postgres:FencedApplicationRecorder",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_SCHEMA": schema,
            "POSTGRES_LOCK_TIMEOUT": str(limits.store_lock_timeout_s),
            "POSTGRES_CONNECT_TIMEOUT": str(limits.store_connect_timeout_s),
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(pool_overflow),
            "POSTGRES_PRE_PING": "y",  # a restarted server must not cost a failed decision
        }
        return StoreSettings(url, PostgresDialect, env)
    raise StoreUrlError(f"{redact(url)}: expected sqlite:///FILE or postgresql://...")


def redact(url: str) -> str:
    """``url`` without its password (any scheme), for logs and messages."""
    return StoreSettings(url, SQLiteDialect, {}).redacted_url
