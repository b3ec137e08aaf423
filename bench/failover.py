"""Failover of `ledger serve` instances, measured: SIGKILL and SIGTERM of the leader, and how
long a (re)started instance takes to be ready. A benchmark, not a test: results go to
docs/BENCHMARKS.md ("Failover").

Everything is started here and stopped at the end: a fresh schema in a database of the
machine's Postgres (``--admin-url``; dropped afterwards unless ``--keep``), a redis-server of
its own on a spare port, N instances on fixed ports and the shipped nginx config in front
(the helpers of the HA tests, tests/ha_cluster.py). Then:

1. the store is filled through the webhooks (``--alerts``: entries, marks and exits over four
   portfolios, 20 % redeliveries) and the projections are caught up;
2. K times: the leader is SIGKILLed; failover = kill to the first /health of a survivor
   answering ``leader: true`` under a newer epoch (a thread polls every instance's /health
   back to back); the killed instance is restarted in place and the next round waits until
   all N answer with one leader and ``--round-gap-s`` has passed since the restart;
3. M times the same with SIGTERM (handover: the term is ended and the lease released);
4. S times an extra instance is started on the store, projections current: process start to
   listening, and to the first ``/ready`` 200.

A light trickle of alerts (``--trickle-per-s``) goes through nginx throughout, so the leader's
projection runner is working when it dies. The output is one JSON document with
p50, p99 (interpolated between the two top samples when there are fewer than 100), max and
every sample.

  .venv/bin/python bench/failover.py --instances 3 --kills 20 --sigterms 10 --starts 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ha_cluster import (  # noqa: E402  (after the path is set)
    CLIENT_TIMEOUT_S,
    COORDINATION_ENV,
    Cluster,
    Instance,
    LeaderWatch,
    Prober,
    alert_plan,
    caught_up,
    migrate,
    send_with_retries,
    single_leader,
    until,
    write_config,
)

SETTLE_S = 30  # bound on N instances answering with exactly one leader
FAILOVER_S_MAX = 10  # a round with no new leader by then is reported as failed
READY_S_MAX = 60
FILL_SENDERS = 8


def summary(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    p99 = (statistics.quantiles(ordered, n=100, method="inclusive")[98]
           if len(ordered) > 1 else ordered[0])
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3),
            "p99": round(p99, 3), "max": round(ordered[-1], 3), "min": round(ordered[0], 3),
            "mean": round(statistics.fmean(ordered), 3),
            "samples": [round(s, 3) for s in samples]}


class Trickle(threading.Thread):
    """Alerts through nginx, about ``per_s`` a second (retried after a 503 or no answer, as
    TradingView does)."""

    def __init__(self, url: str, per_s: float) -> None:
        super().__init__(name="trickle", daemon=True)
        self.url = url
        self.pause_s = 1 / per_s if per_s > 0 else 0
        self.plan = alert_plan(100_000, duplicate_share=0.2, seed=99)
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.refused: dict[str, int] = {}  # attempts not answered 200, by status
        self._halt = threading.Event()

    def run(self) -> None:
        if not self.pause_s:
            return
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S) as client:
            for delivery in self.plan:
                if self._halt.wait(self.pause_s):
                    return
                answer = send_with_retries(client, delivery, retries=3)
                self.sent += 1
                self.failed += answer.status != 200
                self.retried += answer.retries > 0
                for status in answer.statuses:
                    if status != 200:  # 0: no answer at all
                        self.refused[str(status)] = self.refused.get(str(status), 0) + 1

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def fill(instances: list[Instance], alerts: int) -> int:
    """Send ``alerts`` through the instances (FILL_SENDERS at once); the last log position."""
    from concurrent.futures import ThreadPoolExecutor

    plan = alert_plan(alerts, duplicate_share=0.2, seed=98)
    local = threading.local()

    def send(n_delivery: tuple[int, Any]) -> int:
        n, delivery = n_delivery
        instance = instances[n % len(instances)]
        clients = getattr(local, "clients", None)
        if clients is None:
            clients = local.clients = {}
        client = clients.get(instance.name)
        if client is None:
            client = clients[instance.name] = httpx.Client(base_url=instance.url,
                                                           timeout=CLIENT_TIMEOUT_S)
        answer = send_with_retries(client, delivery)
        assert answer.body is not None, answer.statuses
        return int(answer.body["log_position"])

    with ThreadPoolExecutor(FILL_SENDERS) as pool:
        return max(pool.map(send, enumerate(plan)))


def round_of(signum: signal.Signals, cluster: Cluster, watch: LeaderWatch, prober: Prober,
             epochs: list[int], gap_s: float) -> float | None:
    """Signal the leader; the seconds until a survivor says it leads (None: not in time).
    Afterwards the instance is running again in place, one leader is settled, and ``gap_s``
    has passed since the restart (nginx sets a failed instance aside for 2 s)."""
    leader, health = single_leader(prober, cluster.instances, SETTLE_S)
    epochs.append(health["leader_epoch"])
    newest = max(epochs)
    signalled_at = time.monotonic()
    leader.send_signal(signum)
    found = watch.first(lambda o: o.leader and o.instance != leader.name and o.epoch > newest,
                        after=signalled_at, timeout_s=FAILOVER_S_MAX)
    assert leader.server is not None
    leader.server.process.wait(timeout=60)
    if found is not None:
        epochs.append(found.epoch)
    leader.start()
    time.sleep(max(0.0, leader.started_at + gap_s - time.monotonic()))
    return None if found is None else found.received - signalled_at


def start_to_ready(store_url: str, env: dict[str, str]) -> tuple[float, float]:
    """(spawn to listening, spawn to the first /ready 200) of one extra instance."""
    extra = Instance("extra", store_url, env)
    try:
        extra.start()
        listening = time.monotonic() - extra.started_at
        with httpx.Client(base_url=extra.url, timeout=CLIENT_TIMEOUT_S) as client:
            until(lambda: client.get("/ready").status_code == 200, READY_S_MAX, "/ready 200",
                  poll_s=0.01)
        ready = time.monotonic() - extra.started_at
        extra.terminate()
        return listening, ready
    finally:
        extra.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILL rounds")
    parser.add_argument("--sigterms", type=int, default=10, help="SIGTERM rounds")
    parser.add_argument("--starts", type=int, default=5, help="start-to-ready measurements")
    parser.add_argument("--alerts", type=int, default=2000,
                        help="alerts sent first, so the store is not empty")
    parser.add_argument("--trickle-per-s", type=float, default=10)
    parser.add_argument("--round-gap-s", type=float, default=3.0,
                        help="seconds from restarting an instance to the next round (nginx "
                             "sets a failed instance aside for 2 s: rounds faster than that "
                             "can leave it no live instance, and the trickle gets 502s)")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="ledger_bench_failover")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    args = parser.parse_args()

    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                        (args.database,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{args.database}"')
    database_url = f"{args.admin_url.rsplit('/', 1)[0]}/{args.database}"
    schema = f"f_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    store_url = f"{database_url}?schema={schema}"
    directory = Path(tempfile.mkdtemp(prefix="ledger-failover-"))
    config = write_config(directory)
    migrate(store_url, config)
    result: dict[str, Any] = {
        "instances": args.instances, "store": f"postgres schema {schema}",
        "round_gap_s": args.round_gap_s,
        "coordination": {k.removeprefix("LEDGER_").lower(): int(v)
                         for k, v in COORDINATION_ENV.items()}}
    try:
        with Cluster(directory, store_url, config, instances=args.instances
                     ) as cluster, Prober() as prober:
            started = time.monotonic()
            head = fill(cluster.instances, args.alerts)
            with httpx.Client(base_url=cluster.instances[0].url, timeout=CLIENT_TIMEOUT_S) as c:
                until(lambda: caught_up(c, head), 120, "the projections", poll_s=0.2)
            result["store_events"] = head
            result["fill_s"] = round(time.monotonic() - started, 1)

            watch = LeaderWatch(cluster.instances)
            trickle = Trickle(cluster.url, args.trickle_per_s)
            watch.start()
            trickle.start()
            epochs: list[int] = []
            kills: list[float] = []
            terms: list[float] = []
            missed = {"sigkill": 0, "sigterm": 0}
            try:
                for signum, samples, name, rounds in (
                        (signal.SIGKILL, kills, "sigkill", args.kills),
                        (signal.SIGTERM, terms, "sigterm", args.sigterms)):
                    for _ in range(rounds):
                        took = round_of(signum, cluster, watch, prober, epochs,
                                        args.round_gap_s)
                        if took is None:
                            missed[name] += 1
                        else:
                            samples.append(took)
                        print(f"{name}: {took}", file=sys.stderr)
            finally:
                trickle.stop()
                watch.stop()
            result["sigkill_failover_s"] = summary(kills)
            result["sigterm_handover_s"] = summary(terms)
            result["rounds_without_a_new_leader"] = missed
            result["epochs_only_grew"] = epochs == sorted(epochs)
            result["split_brain"] = watch.split_brain()
            result["health_answers_observed"] = len(watch.observations)
            result["trickle"] = {"sent": trickle.sent, "retried": trickle.retried,
                                 "attempts_refused": trickle.refused,
                                 "not_200": trickle.failed}

            listening, ready = [], []
            env = cluster.instances[0].env
            for _ in range(args.starts):
                up, done = start_to_ready(store_url, env)
                listening.append(up)
                ready.append(done)
                print(f"start: listening {up:.3f} s, ready {done:.3f} s", file=sys.stderr)
            result["start_to_listening_s"] = summary(listening)
            result["start_to_ready_s"] = summary(ready)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if not args.keep:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
