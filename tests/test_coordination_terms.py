"""The fence: the term of record in ``leader_term``, on Postgres and on SQLite.

Epochs only grow; a term is taken over only once it has run out (or was ended); a write under
a stale epoch is refused; and a stale leader's write racing a new term either commits before
the new term begins or is refused after it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import migrations
from coordination.db import Dialect, StoreTarget, transaction
from coordination.terms import (
    Fenced,
    assert_current,
    begin_term,
    current_epoch,
    end_term,
    fence_stats,
    read_term,
    renew_term,
)
from tests.coordination_servers import sqlite_store, throwaway_database

STATEMENT_TIMEOUT_MS = 5000  # long enough for the race test's blocked begin_term to wait
RACE_HOLD_S = 0.3  # how long the stale writer keeps its transaction open


@pytest.fixture(scope="module")
def postgres_conninfo() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


@pytest.fixture(params=["postgres", "sqlite"])
def target(request: pytest.FixtureRequest, tmp_path) -> StoreTarget:
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
        return StoreTarget(conninfo=request.getfixturevalue("postgres_conninfo"))
    return StoreTarget(sqlite_path=sqlite_store(tmp_path / "coord.sqlite3"))


@pytest.fixture
def connect(target: StoreTarget) -> Iterator[Callable[[], Any]]:
    opened: list[Any] = []

    def make() -> Any:
        conn = target.connect(STATEMENT_TIMEOUT_MS, 2)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.close()


@pytest.fixture
def term() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def run(conn: Any, dialect: Dialect, statement: Callable[[Any], Any]) -> Any:
    with transaction(conn, dialect) as cursor:
        return statement(cursor)


def test_epochs_strictly_increase_and_a_held_term_is_refused(target, connect, term):
    d = target.dialect
    conn = connect()
    first = run(conn, d, lambda c: begin_term(c, d, term, "a", 60_000))
    assert first == 1
    assert run(conn, d, lambda c: begin_term(c, d, term, "b", 60_000)) is None
    again = run(conn, d, lambda c: begin_term(c, d, term, "a", 60_000))  # already ours
    assert again == first + 1
    assert run(conn, d, lambda c: end_term(c, d, term, "a", again))
    taken = run(conn, d, lambda c: begin_term(c, d, term, "b", 60_000))  # ended: free at once
    assert taken == again + 1
    stored = run(conn, d, lambda c: read_term(c, d, term))
    assert (stored.epoch, stored.holder) == (taken, "b")


def test_an_expired_term_is_taken_over_with_a_higher_epoch(target, connect, term):
    d = target.dialect
    conn = connect()
    old = run(conn, d, lambda c: begin_term(c, d, term, "a", 50))
    assert run(conn, d, lambda c: begin_term(c, d, term, "b", 1000)) is None
    time.sleep(0.08)
    new = run(conn, d, lambda c: begin_term(c, d, term, "b", 1000))
    assert new == old + 1
    # the old holder can neither renew nor end the term it lost
    assert not run(conn, d, lambda c: renew_term(c, d, term, "a", old, 1000))
    assert not run(conn, d, lambda c: end_term(c, d, term, "a", old))
    assert run(conn, d, lambda c: renew_term(c, d, term, "b", new, 1000))
    assert run(conn, d, lambda c: current_epoch(c, d, term)) == new


def test_renew_needs_the_same_holder_and_epoch(target, connect, term):
    d = target.dialect
    conn = connect()
    epoch = run(conn, d, lambda c: begin_term(c, d, term, "a", 1000))
    assert not run(conn, d, lambda c: renew_term(c, d, term, "b", epoch, 1000))
    assert not run(conn, d, lambda c: renew_term(c, d, term, "a", epoch + 1, 1000))
    before = run(conn, d, lambda c: read_term(c, d, term)).expires_at
    time.sleep(0.01)
    assert run(conn, d, lambda c: renew_term(c, d, term, "a", epoch, 1000))
    assert run(conn, d, lambda c: read_term(c, d, term)).expires_at > before


def test_assert_current_fences_a_stale_epoch_and_counts_it(target, connect, term):
    d = target.dialect
    conn = connect()
    old = run(conn, d, lambda c: begin_term(c, d, term, "a", 1000))
    run(conn, d, lambda c: assert_current(c, d, term, old))
    new = run(conn, d, lambda c: begin_term(c, d, term, "a", 1000))
    rejected = fence_stats.rejected
    with pytest.raises(Fenced) as caught:
        run(conn, d, lambda c: assert_current(c, d, term, old))
    assert (caught.value.epoch, caught.value.current) == (old, new)
    with pytest.raises(Fenced):
        run(conn, d, lambda c: assert_current(c, d, "never-begun", 1))
    assert fence_stats.rejected == rejected + 2


def test_ttl_must_be_positive(target, connect, term):
    d = target.dialect
    conn = connect()
    with pytest.raises(ValueError, match="ttl_ms"):
        run(conn, d, lambda c: begin_term(c, d, term, "a", 0))


def _fenced_insert(cursor: Any, dialect: Dialect, term: str, epoch: int, writer: str) -> None:
    assert_current(cursor, dialect, term, epoch)
    p = "%s" if dialect == "postgres" else "?"
    cursor.execute(f"INSERT INTO scratch (epoch, writer) VALUES ({p}, {p})", (epoch, writer))


def test_a_stale_write_racing_a_new_term_commits_first_or_is_refused(target, connect, term):
    """The new term waits for the open stale write; the stale epoch's next write is fenced."""
    d = target.dialect
    stale, fresh = connect(), connect()
    old = run(stale, d, lambda c: begin_term(c, d, term, "old", 50))
    writer = f"w-{term}"

    began: dict[str, Any] = {}
    with transaction(stale, d) as cursor:  # the stale leader's write, still open
        _fenced_insert(cursor, d, term, old, writer)
        time.sleep(0.08)  # the old term has run out meanwhile

        def take_over() -> None:
            began["epoch"] = run(fresh, d, lambda c: begin_term(c, d, term, "new", 60_000))
            began["at"] = time.monotonic()

        racer = threading.Thread(target=take_over)
        racer.start()
        time.sleep(RACE_HOLD_S)
        assert racer.is_alive(), "begin_term must wait for the open fenced write"
        committed_at = time.monotonic()
    racer.join(STATEMENT_TIMEOUT_MS / 1000)
    assert not racer.is_alive()
    assert began["epoch"] == old + 1
    assert began["at"] >= committed_at  # the new term began only after the stale commit

    with pytest.raises(Fenced):
        run(stale, d, lambda c: _fenced_insert(c, d, term, old, writer))
    run(fresh, d, lambda c: _fenced_insert(c, d, term, began["epoch"], writer))
    p = "%s" if d == "postgres" else "?"
    rows = run(fresh, d, lambda c: c.execute(
        f"SELECT epoch FROM scratch WHERE writer = {p} ORDER BY id", (writer,)).fetchall())
    assert [r[0] for r in rows] == [old, old + 1]


def test_ledger_migrate_creates_the_coordination_tables(ledger):
    """`ledger migrate` applies 002 on both stores (SQLite splits it on its `;` line ends)."""
    assert "002_coordination" not in migrations.missing(ledger)
    with ledger.transaction() as cursor:
        cursor.execute("SELECT count(*) FROM leader_term")
        cursor.execute("SELECT count(*) FROM instance_heartbeats")


def test_a_connection_refuses_an_unknown_database_quickly(tmp_path):
    """A term connection never hangs: a missing SQLite directory or a refused port fails."""
    with pytest.raises(sqlite3.Error):
        StoreTarget(sqlite_path=str(tmp_path / "no" / "such.sqlite3")).connect(100, 2)
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        StoreTarget(conninfo="postgresql://postgres@127.0.0.1:1/x").connect(100, 2)
    assert time.monotonic() - started < 3
