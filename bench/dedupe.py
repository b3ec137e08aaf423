"""A duplicate storm against two "instances" (two Ledgers, each with its own in-process
layer, one Redis between them): what the first two dedupe layers save. A benchmark, not a
test: results go to docs/BENCHMARKS.md.

Every signal is delivered DELIVERIES times at once, split over the two instances, as
TradingView's retries and a load balancer would. With the layers on (wait > 0), a redelivery
waits for its twin and is answered from the receipt; off (wait 0), every delivery races to
the store and the losers retry after a version conflict. Reported: conflicts retried, and
the p50/p99 of a delivery's time.

  .venv/bin/python bench/dedupe.py --signals 200 --deliveries 4 --threads 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import migrations  # noqa: E402
from api.dedupe import Dedupe  # noqa: E402
from coordination.lease import redis_client  # noqa: E402
from coordination.signal_lock import SignalLocks  # noqa: E402
from ledger.application import Ledger  # noqa: E402
from ledger.config import default_config  # noqa: E402
from ledger.signals import parse_signal  # noqa: E402
from tests.alerts import Alerts  # noqa: E402

DATABASE = "postgresql://postgres@127.0.0.1:5432/ledger_bench_pair"
REDIS = "redis://127.0.0.1:6379/0"
REDIS_TIMEOUT_MS = 200
LOCK_TTL_MS = 5000


def run(signals: int, deliveries: int, threads: int, wait_ms: int) -> dict[str, object]:
    schema = f"dd_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DATABASE, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{DATABASE}?schema={schema}"
    config = default_config()
    with Ledger(config, url) as first:  # before any decider connects: they load the types
        migrations.migrate(first)
    ledgers = [Ledger(config, url, instance_id=f"bench:{i}") for i in range(2)]
    ns = f"bench-{uuid.uuid4().hex[:8]}"  # keys of our own on the machine's Redis
    gates = [Dedupe(SignalLocks(redis_client(REDIS, REDIS_TIMEOUT_MS), ns, LOCK_TTL_MS),
                    lambda: "redis") for _ in ledgers]
    alerts = Alerts()
    bodies = [alerts.mark(52000 + i % 40, 100) for i in range(signals)]
    times: list[float] = []
    lock = threading.Lock()

    def deliver(n: int) -> None:
        which = n % 2
        ledger, gate = ledgers[which], gates[which]
        body = bodies[n // deliveries]
        started = time.perf_counter()
        signal = parse_signal(body, "default", config)
        with gate.turn(signal.fingerprint, wait_ms):
            ledger.decide_signal(signal)
        with lock:
            times.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(deliver, range(signals * deliveries)))
    wall = time.perf_counter() - started
    times.sort()
    result = {
        "wait_ms": wait_ms, "deliveries": len(times),
        "conflicts_retried": sum(ledger.conflicts_retried for ledger in ledgers),
        "p50_ms": round(statistics.median(times) * 1000, 1),
        "p99_ms": round(times[int(len(times) * 0.99) - 1] * 1000, 1),
        "deliveries_per_s": round(len(times) / wall, 1),
    }
    for ledger in ledgers:
        ledger.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signals", type=int, default=200)
    parser.add_argument("--deliveries", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs, alternating")
    args = parser.parse_args()
    for _ in range(args.rounds):
        for wait_ms in (0, 1000):
            print(json.dumps(run(args.signals, args.deliveries, args.threads, wait_ms)))


if __name__ == "__main__":
    main()
