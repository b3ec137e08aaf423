"""A burst: 100 distinct signals fired at the same moment through nginx at three instances.

As at a bar close, when every strategy's alert fires at once. Thirty of the hundred are also
sent a second time in the same burst (TradingView resending, or two alerts configured
alike), so the copies race each other on different instances. Each distinct signal must be
decided exactly once: 100 fingerprints answered, 100 signal_log rows, one receipt and one
journal decision each in the event log, every copy answered with the same decision, and no
5xx anywhere.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx2 as httpx
import pytest

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
    signal_rows,
    single_leader,
    until,
    verify,
    write_config,
)

pytestmark = pytest.mark.postgres

DISTINCT = 100
RESENT = 30  # of them, sent twice in the same burst
SETTLE_S = 20
CATCH_UP_S = 30


@pytest.fixture
def store(new_store_url, tmp_path: Path) -> tuple[str, Path]:
    url = new_store_url("postgres")
    config = write_config(tmp_path)
    migrate(url, config)
    return url, config


async def burst(url: str, deliveries: list[Delivery]) -> tuple[list[Answer], float]:
    """Every delivery on its own connection, opened first; then all sent at once."""
    limits = httpx.Limits(max_connections=len(deliveries), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT_S,
                                 limits=limits) as client:
        start = asyncio.Event()

        async def one(delivery: Delivery) -> Answer:
            answer = Answer(delivery)
            await start.wait()
            sent = time.monotonic()
            try:
                r = await client.post(delivery.path, content=delivery.body,
                                      headers={"content-type": "application/json"})
                answer.statuses.append(r.status_code)
                if r.status_code == 200:
                    answer.body = r.json()
            except httpx.HTTPError:
                answer.statuses.append(0)
            answer.seconds.append(time.monotonic() - sent)
            return answer

        tasks = [asyncio.create_task(one(d)) for d in deliveries]
        await asyncio.sleep(0.1)  # every task waiting at the start line
        started = time.monotonic()
        start.set()
        answers = await asyncio.gather(*tasks)
        return list(answers), time.monotonic() - started


def test_a_hundred_signals_at_once_through_nginx_are_each_decided_once(store, tmp_path: Path):
    url, config = store
    distinct = alert_plan(DISTINCT, duplicate_share=0.0, seed=51)
    rng = random.Random(52)
    deliveries = distinct + [Delivery(d.path, d.body, redelivery=True)
                             for d in rng.sample(distinct, RESENT)]
    rng.shuffle(deliveries)
    with Cluster(tmp_path, url, config) as cluster, Prober() as prober:
        single_leader(prober, cluster.instances, SETTLE_S)
        answers, wall = asyncio.run(burst(cluster.url, deliveries))
        latencies = sorted(s for a in answers for s in a.seconds)
        statuses = sorted({s for a in answers for s in a.statuses})
        print(f"\n{len(deliveries)} requests at once: all answered in {wall:.3f} s; "
              f"slowest {latencies[-1]:.3f} s, median {latencies[len(latencies) // 2]:.3f} s;"
              f" statuses {statuses}")
        assert statuses == [200], [a.statuses for a in answers if a.status != 200][:5]
        counts = check_exactly_once(answers)
        print(f"alerts: {counts}")
        assert counts["distinct"] == DISTINCT
        assert counts["duplicate_answers"] == RESENT
        head = max(a.body["log_position"] for a in answers if a.body)
        with httpx.Client(base_url=cluster.url, timeout=CLIENT_TIMEOUT_S) as client:
            until(lambda: caught_up(client, head), CATCH_UP_S, "the projections to catch up",
                  poll_s=0.2)
        served = {}
        for instance in cluster.instances:
            metrics = prober.metrics(instance)
            served[instance.name] = sum(v for k, v in metrics.items()
                                        if k.startswith("ledger_signals_total"))
        print(f"alerts answered per instance: {served}")

    fingerprints = {a.body["fingerprint"] for a in answers if a.body}
    rows = signal_rows(url)
    assert set(rows) == fingerprints and len(rows) == DISTINCT
    assert sum(rows.values()) == len(deliveries)  # every delivery recorded once
    receipts, journal = decisions_in_log(url)
    assert receipts == dict.fromkeys(fingerprints, 1)
    assert journal == dict.fromkeys(fingerprints, 1)
    result = verify(url, config)
    assert result.returncode == 0, result.stdout + result.stderr
