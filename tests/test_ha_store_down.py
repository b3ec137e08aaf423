"""The store goes away for a few seconds under two instances, and comes back.

Two `ledger serve` instances (and a redis-server of their own) on a private PostgreSQL
cluster that the test stops (`pg_ctl stop -m immediate`) and starts again; never the
machine's server.

- While it is down every alert is answered 503 with Retry-After, within TradingView's 3 s,
  /health still answers, /ready says 503, and nobody leads (a leader that cannot renew its
  term steps down).
- Once it is back, without restarting anything, the alerts refused meanwhile are answered
  200 when resent (as TradingView does), new alerts too, and a leader exists again.
- Nothing acknowledged is lost: every alert ever answered 200 is in the event log exactly
  once (one receipt, one journal decision), signal_log lists them, `ledger verify` exits 0.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import psycopg
import pytest

from tests.api_server import PrivatePostgres
from tests.ha_cluster import (
    CLIENT_TIMEOUT_S,
    Answer,
    Cluster,
    Delivery,
    Instance,
    Prober,
    alert_plan,
    caught_up,
    check_exactly_once,
    decisions_in_log,
    leaders,
    migrate,
    send_with_retries,
    signal_rows,
    single_leader,
    until,
    verify,
    write_config,
)

pytestmark = pytest.mark.postgres

TRADINGVIEW_TIMEOUT_S = 3.0  # TradingView cancels a webhook after this
BEFORE, DOWN_S, AFTER = 20, 4.0, 20  # alerts before; seconds of alerts while down; after
NOBODY_LEADS_S = 3.0  # the leader steps down this soon (its next renewal fails)
RECOVERY_S = 30  # bound on the first 200 after the store is back
SETTLE_S = 20
CATCH_UP_S = 30


@pytest.fixture
def private_store(tmp_path: Path) -> Iterator[tuple[PrivatePostgres, str, Path]]:
    server = PrivatePostgres()
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA ledger")
        url = f"{server.url}?schema=ledger"
        config = write_config(tmp_path)
        migrate(url, config)
        yield server, url, config
    finally:
        server.close()


def post(instance: Instance, delivery: Delivery) -> tuple[int, float, httpx.Response]:
    """One delivery straight to ``instance``, timed (the bound is asserted by the caller)."""
    with httpx.Client(base_url=instance.url, timeout=CLIENT_TIMEOUT_S) as client:
        started = time.monotonic()
        r = client.post(delivery.path, content=delivery.body,
                        headers={"content-type": "application/json"})
        return r.status_code, time.monotonic() - started, r


def test_the_store_down_for_seconds_costs_503s_and_no_acknowledged_alert(
        private_store, tmp_path: Path):
    postgres, url, config = private_store
    plan = iter(alert_plan(200, duplicate_share=0.0, seed=41))
    answers: list[Answer] = []
    refused: list[Delivery] = []
    down_latencies: list[float] = []
    with Cluster(tmp_path, url, config, instances=2, nginx=False) as cluster, \
            Prober() as prober:
        first, second = cluster.instances
        single_leader(prober, cluster.instances, SETTLE_S)
        clients = {i.name: httpx.Client(base_url=i.url, timeout=TRADINGVIEW_TIMEOUT_S)
                   for i in cluster.instances}
        try:
            for n in range(BEFORE):
                instance = cluster.instances[n % 2]
                answers.append(send_with_retries(clients[instance.name], next(plan),
                                                 retries=0))
            assert all(a.status == 200 for a in answers)

            postgres.stop()
            stopped_at = time.monotonic()
            with ThreadPoolExecutor(len(cluster.instances)) as pool:
                while time.monotonic() - stopped_at < DOWN_S:  # one alert to each at once
                    deliveries = [next(plan) for _ in cluster.instances]
                    for delivery, (status, seconds, r) in zip(
                            deliveries, pool.map(post, cluster.instances, deliveries),
                            strict=True):
                        down_latencies.append(seconds)
                        assert status == 503, r.text
                        assert r.headers["retry-after"] == "1"
                        assert r.json()["error"] in ("store_unavailable", "timeout")
                        refused.append(delivery)
            print(f"\n503 answers while the store was down, seconds: "
                  f"{', '.join(f'{s:.3f}' for s in down_latencies)}")
            assert all(s < TRADINGVIEW_TIMEOUT_S for s in down_latencies)
            for instance in cluster.instances:
                assert prober.health(instance) is not None  # alive, just not ready
                ready = clients[instance.name].get("/ready", timeout=CLIENT_TIMEOUT_S)
                assert ready.status_code == 503, ready.text
            until(lambda: leaders(prober, cluster.instances) == ([], 2),
                  NOBODY_LEADS_S, "the leader to step down")

            postgres.start()
            started_at = time.monotonic()
            recovered = {}
            for instance in cluster.instances:
                def answered(instance: Instance = instance) -> Answer | None:
                    answer = send_with_retries(clients[instance.name], refused[0], retries=0)
                    return answer if answer.status == 200 else None

                answers.append(until(answered, RECOVERY_S, f"{instance.name} to decide again",
                                     poll_s=0.5))
                recovered[instance.name] = time.monotonic() - started_at
            for k, delivery in enumerate(refused[1:]):  # TradingView resends the rest
                answers.append(send_with_retries(clients[cluster.instances[k % 2].name],
                                                 delivery, retries=3, backoff_s=1.0))
            for n in range(AFTER):
                instance = cluster.instances[n % 2]
                answers.append(send_with_retries(clients[instance.name], next(plan),
                                                 retries=3, backoff_s=1.0))
            for a in answers[:BEFORE]:  # and a redelivery of what was decided before
                answers.append(send_with_retries(clients[second.name], a.delivery,
                                                 retries=3, backoff_s=1.0))
            leader, health = single_leader(prober, cluster.instances, SETTLE_S)
            lead_again = time.monotonic() - started_at
            head = max(a.body["log_position"] for a in answers if a.body)
            until(lambda: caught_up(clients[first.name], head), CATCH_UP_S,
                  "the projections to catch up", poll_s=0.2)
        finally:
            for client in clients.values():
                client.close()

    print(f"\nstore down {DOWN_S} s: {len(refused)} alerts answered 503 in "
          f"{min(down_latencies):.3f}-{max(down_latencies):.3f} s")
    first_200 = ", ".join(f"{name} {s:.2f} s" for name, s in recovered.items())
    print(f"store back: first 200 after {first_200}; "
          f"a leader ({leader.name}, epoch {health['leader_epoch']}) after {lead_again:.2f} s")
    counts = check_exactly_once(answers)
    print(f"alerts answered 200: {counts}")
    fingerprints = {a.body["fingerprint"] for a in answers if a.body}
    assert counts["distinct"] == BEFORE + len(refused) + AFTER == len(fingerprints)
    assert set(signal_rows(url)) == fingerprints
    receipts, journal = decisions_in_log(url)
    assert receipts == dict.fromkeys(fingerprints, 1)
    assert journal == dict.fromkeys(fingerprints, 1)
    result = verify(url, config)
    assert result.returncode == 0, result.stdout + result.stderr
