"""The fence: the term of record in ``leader_term``, whose epoch only ever grows.

Redis elects; this row decides who may act. ``begin_term`` takes the term in one statement
(free, expired or already ours) and bumps the epoch. Every leader-only write calls
``assert_current`` inside its own transaction: on Postgres it reads the epoch ``FOR SHARE``,
so a concurrent ``begin_term`` (which must lock the row to update it) waits until that
transaction ends. A stale leader's write therefore either commits before the new term
begins, or runs after it and sees the new epoch and is refused (``Fenced``).

On SQLite (single mode) one writer at a time is the rule: run the leader-only transaction
with ``BEGIN IMMEDIATE`` so it reads the epoch under the write lock.

Postgres uses database time (``now()``), one clock for every instance; SQLite, one machine,
uses Python's UTC time. Functions take a DB-API cursor; the caller owns the transaction.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from coordination.db import Dialect, parse_time, sqlite_time, values


class Fenced(Exception):
    """A write under a term that is no longer current; nothing it did may commit."""

    def __init__(self, name: str, epoch: int | None, current: int | None):
        super().__init__(f"term {name!r}: epoch {epoch} is fenced (current epoch {current})")
        self.name = name
        self.epoch = epoch
        self.current = current


@dataclass
class FenceStats:
    """Writes refused by the fence in this process (metrics; tests read it too)."""

    rejected: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def count(self) -> None:
        with self._lock:
            self.rejected += 1


fence_stats = FenceStats()


def _now_text() -> str:
    return sqlite_time(datetime.now(UTC))


def _later_text(ttl_ms: int) -> str:
    return sqlite_time(datetime.now(UTC) + timedelta(milliseconds=ttl_ms))


def _check_ttl(ttl_ms: int) -> None:
    if not isinstance(ttl_ms, int) or ttl_ms <= 0:
        raise ValueError(f"ttl_ms must be a positive integer, not {ttl_ms!r}")


_BEGIN_POSTGRES = """
INSERT INTO leader_term AS t (name, epoch, holder, acquired_at, expires_at)
VALUES (%s, 1, %s, now(), now() + %s * interval '1 millisecond')
ON CONFLICT (name) DO UPDATE
   SET epoch = t.epoch + 1, holder = EXCLUDED.holder,
       acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
 WHERE t.expires_at IS NULL OR t.expires_at <= now() OR t.holder = EXCLUDED.holder
RETURNING epoch
"""

_BEGIN_SQLITE = """
INSERT INTO leader_term (name, epoch, holder, acquired_at, expires_at)
VALUES (?, 1, ?, ?, ?)
ON CONFLICT (name) DO UPDATE
   SET epoch = leader_term.epoch + 1, holder = excluded.holder,
       acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
 WHERE leader_term.expires_at IS NULL OR leader_term.expires_at <= ?
    OR leader_term.holder = excluded.holder
RETURNING epoch
"""


def begin_term(cursor: Any, dialect: Dialect, name: str, holder: str,
               ttl_ms: int) -> int | None:
    """Take term ``name`` for ``holder`` if it is free, expired or ours: the new epoch.

    None if another holder's term has not run out. One statement, so two instances racing
    for an expired term cannot both win: the row lock orders them and the second sees the
    first's unexpired term.
    """
    _check_ttl(ttl_ms)
    if dialect == "postgres":
        cursor.execute(_BEGIN_POSTGRES, (name, holder, ttl_ms))
    else:
        now = _now_text()
        cursor.execute(_BEGIN_SQLITE, (name, holder, now, _later_text(ttl_ms), now))
    row = cursor.fetchone()
    return None if row is None else int(values(row)[0])


def renew_term(cursor: Any, dialect: Dialect, name: str, holder: str, epoch: int,
               ttl_ms: int) -> bool:
    """Extend our term by ``ttl_ms`` from now; False if it is no longer ours."""
    _check_ttl(ttl_ms)
    if dialect == "postgres":
        cursor.execute(
            "UPDATE leader_term SET expires_at = now() + %s * interval '1 millisecond'"
            " WHERE name = %s AND holder = %s AND epoch = %s", (ttl_ms, name, holder, epoch))
    else:
        cursor.execute(
            "UPDATE leader_term SET expires_at = ? WHERE name = ? AND holder = ? AND epoch = ?",
            (_later_text(ttl_ms), name, holder, epoch))
    return cursor.rowcount == 1


def end_term(cursor: Any, dialect: Dialect, name: str, holder: str, epoch: int) -> bool:
    """End our term now, so a follower can begin the next at once; False if not ours."""
    if dialect == "postgres":
        cursor.execute(
            "UPDATE leader_term SET expires_at = now()"
            " WHERE name = %s AND holder = %s AND epoch = %s", (name, holder, epoch))
    else:
        cursor.execute(
            "UPDATE leader_term SET expires_at = ? WHERE name = ? AND holder = ? AND epoch = ?",
            (_now_text(), name, holder, epoch))
    return cursor.rowcount == 1


def current_epoch(cursor: Any, dialect: Dialect, name: str) -> int | None:
    """The term's epoch as stored (no lock): for reports, never for deciding to write."""
    p = "%s" if dialect == "postgres" else "?"
    cursor.execute(f"SELECT epoch FROM leader_term WHERE name = {p}", (name,))
    row = cursor.fetchone()
    return None if row is None else int(values(row)[0])


def assert_current(cursor: Any, dialect: Dialect, name: str, epoch: int | None) -> None:
    """Raise ``Fenced`` unless ``epoch`` is the term's current epoch.

    Call it inside the transaction of every leader-only write, before the write. On Postgres
    the share lock it takes holds off the next ``begin_term`` until this transaction ends.
    """
    if dialect == "postgres":
        cursor.execute("SELECT epoch FROM leader_term WHERE name = %s FOR SHARE", (name,))
    else:
        cursor.execute("SELECT epoch FROM leader_term WHERE name = ?", (name,))
    row = cursor.fetchone()
    current = None if row is None else int(values(row)[0])
    if epoch is None or current != epoch:
        fence_stats.count()
        raise Fenced(name, epoch, current)


@dataclass(frozen=True)
class Term:
    """The stored term (for reports and tests)."""

    name: str
    epoch: int
    holder: str | None
    acquired_at: datetime | None
    expires_at: datetime | None


def read_term(cursor: Any, dialect: Dialect, name: str) -> Term | None:
    """The stored row for ``name``, if any."""
    p = "%s" if dialect == "postgres" else "?"
    cursor.execute("SELECT name, epoch, holder, acquired_at, expires_at FROM leader_term"
                   f" WHERE name = {p}", (name,))
    row = cursor.fetchone()
    if row is None:
        return None
    row = values(row)
    return Term(row[0], int(row[1]), row[2], parse_time(row[3]), parse_time(row[4]))
