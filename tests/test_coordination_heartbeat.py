"""Heartbeats: each instance records itself; "crashed" is a stale heartbeat, read as such.

On Postgres with the module's own redis-server (the Redis key expires by itself), and on
SQLite in single mode (no Redis).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from coordination import CoordinationSettings, Coordinator, Heartbeat, instances
from coordination.db import transaction
from coordination.heartbeat import mark_stopped
from tests.coordination_servers import (
    RedisServer,
    running_redis,
    sqlite_store,
    throwaway_database,
    until,
)

SETTINGS = CoordinationSettings(heartbeat_interval_ms=50, heartbeat_stale_ms=200)
ELECTION_S = 3


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def conninfo() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


def rows(conninfo: str, stale_ms: int = SETTINGS.heartbeat_stale_ms, prefix: str = ""):
    with psycopg.connect(conninfo) as conn, transaction(conn, "postgres") as cursor:
        return {r.instance_id: r for r in instances(cursor, "postgres", stale_ms)
                if r.instance_id.startswith(prefix)}


@pytest.mark.postgres
def test_heartbeats_show_the_leader_active_and_the_rest_standby(redis_server, conninfo):
    name = f"hb-{uuid.uuid4().hex[:8]}"
    group = [Coordinator(conninfo=conninfo, redis_url=redis_server.url, name=name,
                         namespace=f"test-{name}", instance_id=f"{name}-{i}",
                         settings=SETTINGS).start() for i in range(2)]
    beats = [Heartbeat(c, port=8080 + i, version="test") for i, c in enumerate(group)]
    try:
        until(lambda: any(c.is_leader for c in group), ELECTION_S, "a leader")
        leader = next(c for c in group if c.is_leader)
        for b in beats:
            b.beat()
        seen = rows(conninfo, prefix=name)
        assert seen[leader.instance_id].status == "active"
        assert seen[leader.instance_id].is_leader
        assert seen[leader.instance_id].leader_epoch == leader.epoch
        assert seen[leader.instance_id].leader_acquired_at is not None
        (follower,) = [c for c in group if c is not leader]
        assert seen[follower.instance_id].status == "standby"
        assert not seen[follower.instance_id].is_leader
        assert {r.mode for r in seen.values()} == {"redis"}
        assert {r.port for r in seen.values()} == {8080, 8081}

        client = redis_server.client()
        key = f"test-{name}:instance:{leader.instance_id}"
        assert 0 < client.pttl(key) <= SETTINGS.heartbeat_stale_ms
        until(lambda: client.exists(key) == 0, 1, "the Redis heartbeat to expire by itself")
        client.close()

        # nobody beats for longer than the bound: both read as crashed, and not leading
        time.sleep(SETTINGS.heartbeat_stale_ms / 1000 + 0.05)
        seen = rows(conninfo, prefix=name)
        assert {r.status for r in seen.values()} == {"crashed"}
        assert not any(r.is_leader for r in seen.values())
        # a clean stop is never read as a crash, however old
        with psycopg.connect(conninfo) as conn, transaction(conn, "postgres") as cursor:
            assert mark_stopped(cursor, "postgres", follower.instance_id)
        assert rows(conninfo, prefix=name)[follower.instance_id].status == "stopped"
    finally:
        for c in group:
            c.stop()


@pytest.mark.postgres
def test_the_heartbeat_thread_beats_records_a_new_leader_at_once_and_a_clean_stop(
        redis_server, conninfo):
    name = f"hb-{uuid.uuid4().hex[:8]}"
    slow = CoordinationSettings(heartbeat_interval_ms=5000, heartbeat_stale_ms=10_000)
    group = [Coordinator(conninfo=conninfo, redis_url=redis_server.url, name=name,
                         namespace=f"test-{name}", instance_id=f"{name}-{i}",
                         settings=slow).start() for i in range(2)]
    beats = [Heartbeat(c).start() for c in group]
    try:
        until(lambda: {r.status for r in rows(conninfo, prefix=name).values()}
              == {"active", "standby"}, ELECTION_S, "one active, one standby")
        leader = next(c for c in group if c.is_leader)
        (follower,) = [c for c in group if c is not leader]
        started = time.monotonic()
        beats[group.index(leader)].stop()
        leader.stop()
        # the follower's heartbeat wakes on the change, long before its 5 s interval
        until(lambda: rows(conninfo, prefix=name)[follower.instance_id].status == "active",
              2, "the new leader's heartbeat")
        assert time.monotonic() - started < 1
        assert rows(conninfo, prefix=name)[leader.instance_id].status == "stopped"
        client = redis_server.client()
        assert client.exists(f"test-{name}:instance:{leader.instance_id}") == 0
        assert client.exists(f"test-{name}:instance:{follower.instance_id}") == 1
        client.close()
    finally:
        for b in beats:
            b.stop()
        for c in group:
            c.stop()


def test_single_mode_on_sqlite_beats_without_redis(tmp_path):
    path = sqlite_store(tmp_path / "hb.sqlite3")
    coordinator = Coordinator(sqlite_path=path, name="hb", settings=SETTINGS).start()
    heartbeat = Heartbeat(coordinator, port=8080)
    try:
        until(lambda: coordinator.is_leader, ELECTION_S, "the single leader")
        heartbeat.beat()
        conn = coordinator.target.connect(1000, 2)
        with transaction(conn, "sqlite") as cursor:
            (row,) = instances(cursor, "sqlite", SETTINGS.heartbeat_stale_ms)
        assert (row.status, row.mode, row.is_leader) == ("active", "single", True)
        assert row.leader_epoch == coordinator.epoch
        time.sleep(SETTINGS.heartbeat_stale_ms / 1000 + 0.05)
        with transaction(conn, "sqlite") as cursor:
            (row,) = instances(cursor, "sqlite", SETTINGS.heartbeat_stale_ms)
        assert row.status == "crashed"
        heartbeat.stop()
        with transaction(conn, "sqlite") as cursor:
            (row,) = instances(cursor, "sqlite", SETTINGS.heartbeat_stale_ms)
        assert (row.status, row.is_leader) == ("stopped", False)
        conn.close()
    finally:
        coordinator.stop()
