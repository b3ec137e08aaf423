"""Redis dies under load and comes back: nothing is lost, nothing restarts.

Three `ledger serve` instances on one Postgres store behind the shipped nginx config, with a
redis-server of their own. 300 distinct alerts (entries, marks and exits over four
portfolios and two instruments) plus about 30 % redeliveries of earlier bodies go through
nginx from four concurrent senders, in three equal parts:

1. Redis up: every instance in redis mode, one leader.
2. Redis SIGKILLed as the part begins: every instance says ``coordination: database`` on
   /health, the same instance keeps leading under the same term (Redis dying is no reason to
   change leaders), and exactly one leads.
3. Redis restarted on the same port as the part begins: every instance is back in redis mode
   without a restart, the same leader still leading.

Every alert is answered 200 (a sender may retry after a 503 at most 3 times, as TradingView
does); each distinct alert is decided exactly once (signal_log and the event log hold one
decision per fingerprint, as many as were sent), every redelivery is answered
``duplicate: true`` with the first decision, and `ledger verify` exits 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.coordination_servers import RedisServer
from tests.ha_cluster import (
    CLIENT_TIMEOUT_S,
    Answer,
    Cluster,
    Delivery,
    Prober,
    alert_plan,
    caught_up,
    check_exactly_once,
    decisions_in_log,
    migrate,
    send_with_retries,
    signal_rows,
    single_leader,
    until,
    verify,
    write_config,
)

pytestmark = pytest.mark.postgres

DISTINCT = 300
DUPLICATE_SHARE = 0.3
SENDERS = 4
RETRIES = 3  # after a 503, as TradingView
MODE_SWITCH_S_MAX = 5  # every instance notices Redis gone (or back) this soon
SETTLE_S = 20
CATCH_UP_S = 30


@pytest.fixture
def store(new_store_url, tmp_path: Path) -> tuple[str, Path]:
    url = new_store_url("postgres")
    config = write_config(tmp_path)
    migrate(url, config)
    return url, config


class Senders:
    """SENDERS threads, each with its own keep-alive client to nginx."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.local = threading.local()
        self.clients: list[httpx.Client] = []
        self.pool = ThreadPoolExecutor(SENDERS)

    def _send(self, delivery: Delivery) -> Answer:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(base_url=self.url,
                                                      timeout=CLIENT_TIMEOUT_S)
            self.clients.append(client)
        return send_with_retries(client, delivery, retries=RETRIES)

    def submit(self, deliveries: Sequence[Delivery]) -> list[Future[Answer]]:
        return [self.pool.submit(self._send, d) for d in deliveries]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for client in self.clients:
            client.close()


def modes(prober: Prober, cluster: Cluster) -> set[str | None]:
    answers = [prober.health(i) for i in cluster.instances]
    return {a["coordination"] if a else None for a in answers}


def test_redis_killed_and_restarted_mid_stream_loses_and_repeats_nothing(store, tmp_path: Path):
    url, config = store
    plan = alert_plan(DISTINCT, duplicate_share=DUPLICATE_SHARE, seed=31)
    third = len(plan) // 3
    parts = [plan[:third], plan[third:2 * third], plan[2 * third:]]
    answers: list[Answer] = []
    with Cluster(tmp_path, url, config) as cluster, Prober() as prober:
        assert cluster.redis is not None
        senders = Senders(cluster.url)
        try:
            leader, before = single_leader(prober, cluster.instances, SETTLE_S)
            assert modes(prober, cluster) == {"redis"}
            answers += [f.result() for f in senders.submit(parts[0])]

            # 2. Redis dies as the second part starts.
            running = senders.submit(parts[1])
            killed_at = time.monotonic()
            cluster.redis.kill()
            until(lambda: modes(prober, cluster) == {"database"}, MODE_SWITCH_S_MAX,
                  "every instance in database mode")
            to_database = time.monotonic() - killed_at
            during, health = single_leader(prober, cluster.instances, SETTLE_S)
            assert (during, health["leader_epoch"]) == (leader, before["leader_epoch"]), \
                "Redis dying changed the leader"
            for instance in cluster.instances:
                metrics = prober.metrics(instance)
                assert metrics['ledger_coordination_mode{mode="database"}'] == 1
                assert metrics['ledger_coordination_mode{mode="redis"}'] == 0
            answers += [f.result() for f in running]
            print(f"\nRedis killed: every instance in database mode after {to_database:.3f} s; "
                  f"{len(parts[1])} alerts sent meanwhile")

            # 3. Redis comes back on the same port as the third part starts.
            running = senders.submit(parts[2])
            restarted_at = time.monotonic()
            cluster.redis = RedisServer(tmp_path / "redis", port=cluster.redis.port).start()
            until(lambda: modes(prober, cluster) == {"redis"}, MODE_SWITCH_S_MAX,
                  "every instance back in redis mode")
            to_redis = time.monotonic() - restarted_at
            after, health = single_leader(prober, cluster.instances, SETTLE_S)
            assert (after, health["leader_epoch"]) == (leader, before["leader_epoch"]), \
                "Redis coming back changed the leader"
            answers += [f.result() for f in running]
            print(f"Redis restarted: every instance in redis mode after {to_redis:.3f} s "
                  f"(probe every 300 ms); the same leader throughout, epoch "
                  f"{health['leader_epoch']}")
        finally:
            senders.close()

        counts = check_exactly_once(answers)
        print(f"alerts: {counts}")
        assert counts["distinct"] == DISTINCT
        assert counts["duplicate_answers"] >= len(plan) - DISTINCT
        head = max(a.body["log_position"] for a in answers if a.body)
        with httpx.Client(base_url=cluster.url, timeout=CLIENT_TIMEOUT_S) as client:
            until(lambda: caught_up(client, head), CATCH_UP_S, "the projections to catch up",
                  poll_s=0.2)

    fingerprints = {a.body["fingerprint"] for a in answers if a.body}
    rows = signal_rows(url)
    assert set(rows) == fingerprints and len(rows) == DISTINCT
    # Every 200 answer is one recorded delivery; a 503 whose decision had committed may add one.
    assert len(answers) <= sum(rows.values()) <= len(answers) + counts["attempts_not_200"]
    receipts, journal = decisions_in_log(url)
    assert receipts == dict.fromkeys(fingerprints, 1)
    assert journal == dict.fromkeys(fingerprints, 1)
    result = verify(url, config)
    assert result.returncode == 0, result.stdout + result.stderr
