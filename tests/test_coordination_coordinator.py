"""Coordinators in one process (a thread each, their own connections) on one Redis + Postgres.

Exactly one leads; a clean stop hands over at once; a crashed leader (``_freeze``: it stops
renewing and releases nothing) is replaced once its term runs out, under a higher epoch; and
a leader that lost its term is fenced out of its writes. All with the default settings, the
ones production runs: lease/term TTL 1000 ms, renew every 250 ms, follower poll 100 ms.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from coordination import Change, CoordinationSettings, Coordinator, Fenced
from coordination.db import transaction
from coordination.terms import read_term
from tests.coordination_servers import (
    RedisServer,
    coordination_sql,
    running_redis,
    spare_port,
    sqlite_store,
    throwaway_database,
    until,
)

pytestmark = pytest.mark.postgres

SETTINGS = CoordinationSettings()
ELECTION_S = 3  # bound on a first election
HANDOVER_S_MAX = 0.5  # a clean stop hands over within this
FAILOVER_S_MAX = 3  # a crashed leader is replaced within this
SAMPLE_S = 1.0  # how long the single-leader invariant is watched


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def conninfo() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


@pytest.fixture
def coordinators(redis_server, conninfo) -> Iterator[Callable[..., list[Coordinator]]]:
    """Start ``n`` coordinators for one fresh role name; all stopped at the end."""
    started: list[Coordinator] = []

    def make(n: int, **kwargs) -> list[Coordinator]:
        name = f"role-{uuid.uuid4().hex[:8]}"
        kwargs.setdefault("redis_url", redis_server.url)
        kwargs.setdefault("conninfo", conninfo)
        group = [Coordinator(name=name, namespace=f"test-{name}", instance_id=f"{name}-{i}",
                             **kwargs) for i in range(n)]
        started.extend(group)
        for c in group:
            c.start()
        return group

    yield make
    for c in started:
        c.stop()


def leaders(group: list[Coordinator]) -> list[Coordinator]:
    return [c for c in group if c.is_leader]


def one_leader(group: list[Coordinator]) -> Coordinator:
    until(lambda: len(leaders(group)) == 1, ELECTION_S, "one leader")
    (leader,) = leaders(group)
    return leader


def stored_term(conninfo: str, name: str):
    with psycopg.connect(conninfo) as conn, conn.cursor() as cursor:
        return read_term(cursor, "postgres", name)


def watch_single_leader(group: list[Coordinator], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert len(leaders(group)) <= 1
        time.sleep(0.005)


def test_three_coordinators_elect_exactly_one_leader(coordinators, conninfo):
    group = coordinators(3)
    leader = one_leader(group)
    watch_single_leader(group, SAMPLE_S)
    assert leaders(group) == [leader]
    assert all(c.mode == "redis" for c in group)
    term = stored_term(conninfo, leader.name)
    assert (term.holder, term.epoch) == (leader.instance_id, leader.epoch)
    assert [c.epoch for c in group if c is not leader] == [None, None]


def test_a_clean_stop_hands_over_in_under_500_ms(coordinators):
    group = coordinators(3)
    leader = one_leader(group)
    epoch = leader.epoch
    assert epoch is not None
    started = time.monotonic()
    leader.stop()
    rest = [c for c in group if c is not leader]
    took_s = until(lambda: len(leaders(rest)) == 1, FAILOVER_S_MAX, "a new leader")
    took_s = time.monotonic() - started
    print(f"\nclean handover: {took_s * 1000:.0f} ms")
    assert took_s < HANDOVER_S_MAX
    (successor,) = leaders(rest)
    assert successor.epoch is not None and successor.epoch > epoch
    assert sum(c.releases_heard for c in rest) >= 1  # woken by the release message


def test_a_crashed_leader_is_replaced_within_3_s_under_a_higher_epoch(coordinators, conninfo):
    group = coordinators(3)
    leader = one_leader(group)
    epoch = leader.epoch
    assert epoch is not None
    started = time.monotonic()
    leader._freeze()  # stops renewing, releases nothing: a SIGKILLed process as seen outside
    rest = [c for c in group if c is not leader]
    until(lambda: len(leaders(rest)) == 1, FAILOVER_S_MAX, "a new leader")
    took_s = time.monotonic() - started
    print(f"\nfailover after a crash: {took_s * 1000:.0f} ms")
    assert took_s < FAILOVER_S_MAX
    assert took_s >= SETTINGS.lease_ttl_ms / 1000 * 0.5  # nobody took an unexpired term
    (successor,) = leaders(rest)
    assert successor.epoch is not None and successor.epoch > epoch
    assert not leader.is_leader  # its own clock says its term ran out
    assert leader.lease_remaining_ms() == 0
    assert stored_term(conninfo, leader.name).holder == successor.instance_id
    watch_single_leader(group, 0.3)


def test_a_leader_that_lost_its_term_is_fenced_out_of_its_writes(coordinators, conninfo):
    group = coordinators(2)
    leader = one_leader(group)
    with psycopg.connect(conninfo) as conn:
        with transaction(conn, "postgres") as cursor:
            leader.fenced(cursor)
            cursor.execute("INSERT INTO scratch (epoch, writer) VALUES (%s, %s)",
                           (leader.epoch, leader.name))
        leader._freeze()
        (other,) = [c for c in group if c is not leader]
        until(lambda: other.is_leader, FAILOVER_S_MAX, "the takeover")
        with pytest.raises(Fenced), transaction(conn, "postgres") as cursor:
            leader.fenced(cursor)
        assert leader.fenced_writes == 1
        with transaction(conn, "postgres") as cursor:
            other.fenced(cursor)
    follower_group = coordinators(2)
    new_leader = one_leader(follower_group)
    follower = next(c for c in follower_group if c is not new_leader)
    with (psycopg.connect(conninfo) as conn, pytest.raises(Fenced),
          transaction(conn, "postgres") as cursor):
        follower.fenced(cursor)  # a follower never passes the fence


def test_a_writer_stuck_inside_its_transaction_holds_off_the_next_term_until_its_session_ends(
        coordinators, conninfo):
    """The fence's share lock would let a hung writer block every takeover; the writer's
    idle_in_transaction_session_timeout bounds that, and its write is lost, not committed."""
    idle_ms = 1500  # longer than the term, so the wait on the lock shows
    group = coordinators(2)
    leader = one_leader(group)
    (other,) = [c for c in group if c is not leader]
    writer = psycopg.connect(conninfo)
    writer.execute(f"SET idle_in_transaction_session_timeout = {idle_ms}")
    writer.commit()
    cursor = writer.cursor()
    leader.fenced(cursor)
    cursor.execute("INSERT INTO scratch (epoch, writer) VALUES (%s, 'stuck')", (leader.epoch,))
    started = time.monotonic()
    leader._freeze()  # the whole process hangs, its write transaction open
    until(lambda: other.is_leader, FAILOVER_S_MAX, "the takeover")
    took_s = time.monotonic() - started
    print(f"\ntakeover past a writer stuck in its transaction: {took_s * 1000:.0f} ms")
    assert took_s >= idle_ms / 1000 - 0.1  # the new term waited for the lock
    with pytest.raises(psycopg.Error):  # the server ended the session: nothing committed
        writer.commit()
    writer.close()
    with psycopg.connect(conninfo) as conn:
        stuck = conn.execute("SELECT count(*) FROM scratch WHERE writer = 'stuck'").fetchone()
    assert stuck == (0,)


def test_lease_remaining_covers_at_most_one_ttl_and_only_for_the_leader(coordinators):
    group = coordinators(2)
    leader = one_leader(group)
    for _ in range(20):
        remaining = leader.lease_remaining_ms()
        assert 0 < remaining <= SETTINGS.lease_ttl_ms
        time.sleep(0.02)
    (follower,) = [c for c in group if c is not leader]
    assert follower.lease_remaining_ms() == 0


def test_listeners_hear_leadership_gained_and_lost(coordinators):
    heard: list[Change] = []
    group = coordinators(1)
    (only,) = group
    only.on_change(heard.append)
    until(lambda: only.is_leader, ELECTION_S, "the leader")
    only.stop()
    kinds = [c.kind for c in heard]
    assert kinds[-1] == "leader_lost"
    assert heard[-1].reason == "stopping"


def test_single_mode_on_sqlite_leads_alone_and_fences(tmp_path: Path):
    path = sqlite_store(tmp_path / "single.sqlite3")
    first = Coordinator(sqlite_path=path, name="single").start()
    second = Coordinator(sqlite_path=path, name="single").start()
    try:
        until(lambda: first.is_leader or second.is_leader, ELECTION_S, "a leader")
        assert first.mode == second.mode == "single"
        watch_single_leader([first, second], 0.3)
        leader, other = (first, second) if first.is_leader else (second, first)
        conn = leader.target.connect(1000, 2)
        with contextlib.closing(conn), transaction(conn, "sqlite") as cursor:
            leader.fenced(cursor)
        leader.stop()
        until(lambda: other.is_leader, ELECTION_S, "the other to lead")
    finally:
        first.stop()
        second.stop()


def test_an_unanswering_redis_at_start_means_database_mode(coordinators):
    dead = f"redis://127.0.0.1:{spare_port()}/0"
    group = coordinators(2, redis_url=dead)
    leader = one_leader(group)
    assert all(c.mode == "database" for c in group)
    watch_single_leader(group, 0.3)
    assert leader.epoch is not None


def test_a_ledger_database_url_with_a_schema_coordinates_in_that_schema(redis_server, conninfo):
    schema = f"s_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(coordination_sql("postgres"))
    coordinator = Coordinator.from_database_url(
        f"{conninfo}?schema={schema}", redis_url=redis_server.url, name="in-schema",
        namespace=f"test-{schema}")
    with coordinator:
        until(lambda: coordinator.is_leader, ELECTION_S, "the leader")
        with psycopg.connect(conninfo) as conn:
            epochs = conn.execute(f"SELECT epoch FROM {schema}.leader_term").fetchall()
            public = conn.execute("SELECT count(*) FROM public.leader_term"
                                  " WHERE name = 'in-schema'").fetchone()
        assert epochs == [(coordinator.epoch,)] and public == (0,)
    with pytest.raises(ValueError, match="unknown"):
        Coordinator.from_database_url(f"{conninfo}?sslmode=disable")


def test_a_ledger_sqlite_url_coordinates_in_that_file(tmp_path):
    path = sqlite_store(tmp_path / "url.sqlite3")
    with Coordinator.from_database_url(f"sqlite:///{path}", name="url") as coordinator:
        assert coordinator.target.sqlite_path == path
        until(lambda: coordinator.is_leader, ELECTION_S, "the leader")


def test_redis_with_sqlite_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Postgres"):
        Coordinator(sqlite_path=str(tmp_path / "x.sqlite3"), redis_url="redis://127.0.0.1/0")
    with pytest.raises(ValueError, match="exactly one"):
        Coordinator()
