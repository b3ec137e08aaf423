"""Redis dies: the coordinators elect through Postgres alone, then go back once it answers.

The module's own redis-server is SIGKILLed and later restarted on the same port; the
coordinators are never restarted.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from coordination import Change, CoordinationSettings, Coordinator
from coordination.terms import read_term
from tests.coordination_servers import RedisServer, throwaway_database, until

pytestmark = pytest.mark.postgres

SETTINGS = CoordinationSettings(redis_probe_interval_ms=300)
SWITCH_S = 2  # bound on every coordinator noticing Redis gone (or back)
FAILOVER_S_MAX = 3


@pytest.fixture(scope="module")
def conninfo() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


@pytest.fixture
def redis_dir(tmp_path: Path) -> Path:
    return tmp_path


def leaders(group: list[Coordinator]) -> list[Coordinator]:
    return [c for c in group if c.is_leader]


def watch_single_leader(group: list[Coordinator], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert len(leaders(group)) <= 1
        time.sleep(0.005)


def test_redis_killed_then_restarted_keeps_one_leader_and_switches_back(
        conninfo, redis_dir, caplog):
    caplog.set_level(logging.WARNING, logger="ledger.coordination")
    server = RedisServer(redis_dir).start()
    name = f"role-{uuid.uuid4().hex[:8]}"
    group = [Coordinator(conninfo=conninfo, redis_url=server.url, name=name,
                         namespace=f"test-{name}", instance_id=f"{name}-{i}",
                         settings=SETTINGS) for i in range(3)]
    switches: list[Change] = []
    for c in group:
        c.on_change(lambda change: switches.append(change)
                    if change.kind == "mode_switched" else None)
        c.start()
    try:
        until(lambda: len(leaders(group)) == 1, FAILOVER_S_MAX, "one leader")
        (leader,) = leaders(group)
        assert all(c.mode == "redis" for c in group)

        server.kill()
        took_s = until(lambda: all(c.mode == "database" for c in group), SWITCH_S,
                       "every coordinator in database mode")
        print(f"\nswitch to database mode: {took_s * 1000:.0f} ms")
        watch_single_leader(group, 0.5)
        assert leaders(group) == [leader]  # Redis dying is no reason to change leaders
        with psycopg.connect(conninfo) as conn, conn.cursor() as cursor:
            term = read_term(cursor, "postgres", name)
        assert (term.holder, term.epoch) == (leader.instance_id, leader.epoch)
        assert all(c.mode_switches == 1 for c in group)
        assert any("switching to database mode" in r.getMessage() for r in caplog.records)

        # in database mode a crashed leader is still replaced, through the store alone
        epoch = leader.epoch
        leader._freeze()
        rest = [c for c in group if c is not leader]
        until(lambda: len(leaders(rest)) == 1, FAILOVER_S_MAX, "a database-mode takeover")
        (successor,) = leaders(rest)
        assert successor.epoch > epoch

        server = RedisServer(redis_dir, port=server.port).start()  # same port, empty
        took_s = until(lambda: all(c.mode == "redis" for c in rest), SWITCH_S,
                       "the coordinators back in redis mode")
        print(f"back to redis mode: {took_s * 1000:.0f} ms")
        # the leader takes the (empty) Redis lease back and keeps its term
        client = server.client()
        until(lambda: client.get(f"test-{name}:leader:{name}") == successor.instance_id.encode(),
              SWITCH_S, "the leader to hold the Redis lease again")
        client.close()
        watch_single_leader(rest, 0.5)
        assert leaders(rest) == [successor]
        assert all(c.mode_switches == 2 for c in rest)
        assert {s.mode for s in switches} == {"database", "redis"}
    finally:
        for c in group:
            c.stop()
        server.kill()
