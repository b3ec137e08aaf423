"""Versioned schema migrations, applied by `ledger migrate`.

Version 0 is the event store itself (the library's own tables). Later versions are the SQL
files beside this module, one directory per dialect (``postgres/``, ``sqlite/``), named
``NNN_what.sql``; each runs once, in its own transaction, recorded in ``schema_migrations``.
Running `ledger migrate` again applies only what is new.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
EVENT_STORE = (0, "event_store")
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available(dialect: str) -> list[Migration]:
    """The SQL migrations for a dialect ('postgres' or 'sqlite'), in version order."""
    folder = HERE / dialect
    found = []
    for path in sorted(folder.glob("*.sql")) if folder.is_dir() else []:
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"{path}: migration files are named NNN_what.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions) or 0 in versions:
        raise ValueError(f"{folder}: migration versions must be unique and start at 001")
    return found


def latest_version(dialect: str) -> int:
    return max([EVENT_STORE[0], *(m.version for m in available(dialect))])


def applied(ledger: Any) -> set[int]:
    """Versions recorded in the store (empty if it was never migrated)."""
    from eventsourcing.persistence import PersistenceError

    try:
        with ledger.transaction(read_only=True) as cursor:
            cursor.execute("SELECT version FROM schema_migrations")
            return {row[0] if isinstance(row, tuple) else row["version"]
                    for row in cursor.fetchall()}
    except PersistenceError:
        return set()


def steps(dialect: str) -> list[Migration]:
    """Every step for a dialect, the event store (version 0) first."""
    return [Migration(*EVENT_STORE, sql=""), *available(dialect)]


def pending(ledger: Any, done: set[int] | None = None) -> list[Migration]:
    """The steps not yet applied to the store (``done``: its applied versions, if known)."""
    done = applied(ledger) if done is None else done
    return [m for m in steps(ledger.dialect.name) if m.version not in done]


def missing(ledger: Any) -> list[str]:
    """The names of the steps not yet applied (empty when the store is up to date)."""
    return [f"{m.version:03d}_{m.name}" for m in pending(ledger)]


def migrate(ledger: Any) -> list[str]:
    """Bring the store up to date; return the names of the steps applied now."""
    dialect = ledger.dialect
    dialect.create_schema()
    ledger.create_event_tables()
    with ledger.transaction() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    now = datetime.now(UTC).isoformat()
    names = []
    p = dialect.param
    for step in pending(ledger):
        with ledger.transaction() as cursor:
            if step.sql.strip():
                dialect.execute_script(cursor, step.sql)
            cursor.execute(
                f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({p}, {p}, {p})",
                (step.version, step.name, now))
        names.append(f"{step.version:03d}_{step.name}")
    return names
