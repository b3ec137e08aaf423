"""Drive N TradingView-like webhooks at concurrency C against `ledger serve`; print throughput
and latency percentiles. A benchmark, not a test: results go to docs/BENCHMARKS.md.

The mix is what a live setup sends: per (portfolio, instrument) a bar-by-bar stream of
MARKET_DATA marks, with base entries, pyramids and exits along a random walk, plus a share of
exact redeliveries (TradingView retrying) sent shortly after the original.

Two modes:
  closed loop (default): C workers send as fast as answers come back -> saturation throughput.
  open loop (--rate R):  alerts are sent at R per minute whatever the latency, at most C in
                         flight -> latency at a given load (the requirement: 1,000/min).

Either point it at a running server (--url, with --portfolios naming portfolios the server's
LEDGER_CONFIG defines), or let it start one (--serve DATABASE_URL: migrates the store, writes
a config with the portfolios, starts `ledger serve` on a free port, stops it afterwards).

  .venv/bin/python bench/webhooks.py --serve sqlite:////tmp/bench.sqlite3 -n 5000 -c 16
  .venv/bin/python bench/webhooks.py -n 3000 --rate 1000 -c 16 \\
      --serve 'postgresql://postgres@127.0.0.1:5432/ledger_api_bench?schema=run1'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INSTRUMENTS = {"BANK_NIFTY": Decimal(52000), "GOLD_MINI": Decimal(72000)}
REQUEST_TIMEOUT_S = 10


@dataclass
class Stream:
    """One (portfolio, instrument): bars on a random walk, and the trades a strategy sends."""

    portfolio: str
    instrument: str
    price: Decimal
    at: datetime
    rng: random.Random
    in_trade: bool = False
    pyramids: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)

    def next_alert(self) -> dict[str, Any]:
        self.at += timedelta(minutes=1)
        self.price = (self.price * Decimal(1 + self.rng.gauss(0.0002, 0.002))).quantize(
            Decimal("0.05"))
        atr = (self.price * Decimal("0.007")).quantize(Decimal("0.01"))
        common = {"instrument": self.instrument, "price": str(self.price),
                  "timestamp": self.at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        roll = self.rng.random()
        if not self.in_trade and roll < 0.12:
            self.in_trade, self.pyramids = True, 0
            return {"type": "BASE_ENTRY", "position": "Long_1", "stop": str(self.price - atr),
                    "atr": str(atr), "er": "0.8", "lots": 3, **common}
        if self.in_trade and roll < 0.10 and self.pyramids < 5:
            self.pyramids += 1
            return {"type": "PYRAMID", "position": f"Long_{self.pyramids + 1}",
                    "stop": str(self.price - atr), "atr": str(atr), "er": "0.8", "lots": 1,
                    **common}
        if self.in_trade and roll > 0.95:
            self.in_trade = False
            return {"type": "EXIT", "position": "ALL", "stop": 0, "lots": 0,
                    "reason": "trailing_stop", **common}
        return {"type": "MARKET_DATA", "atr": str(atr), **common}


def schedule(n: int, portfolios: list[str], duplicate_share: float, seed: int,
             secret: str | None) -> list[tuple[str, bytes]]:
    """N (path, body) pairs: streams interleaved, redeliveries a few places after originals."""
    rng = random.Random(seed)
    # A start date of its own per run, so a rerun on the same store is not all duplicates.
    start = datetime(2025, 1, 6, 3, 45, tzinfo=UTC) + timedelta(days=rng.randrange(0, 3000))
    streams = [Stream(p, i, price, start, random.Random(rng.random()))
               for p in portfolios for i, price in INSTRUMENTS.items()]
    plan: list[tuple[str, bytes]] = []
    originals: list[tuple[str, bytes]] = []
    while len(plan) < n:
        if originals and rng.random() < duplicate_share:
            plan.append(originals[-rng.randrange(1, min(len(originals), 8) + 1)])
            continue
        stream = streams[len(originals) % len(streams)]
        alert = stream.next_alert()
        if secret:
            alert["secret"] = secret
        item = (f"/webhook/{stream.portfolio}", json.dumps(alert).encode())
        originals.append(item)
        plan.append(item)
    return plan


@dataclass
class Result:
    latency_s: float
    status: int | str
    outcome: str


async def send(client: httpx.AsyncClient, path: str, body: bytes) -> Result:
    started = time.perf_counter()
    try:
        r = await client.post(path, content=body, headers={"content-type": "application/json"})
    except httpx.HTTPError as e:
        return Result(time.perf_counter() - started, type(e).__name__, "error")
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        return Result(elapsed, r.status_code, r.json().get("error", "?"))
    answer = r.json()
    return Result(elapsed, 200, "duplicate" if answer["duplicate"] else answer["decision"])


async def closed_loop(url: str, plan: list[tuple[str, bytes]], concurrency: int) -> list[Result]:
    results: list[Result] = []
    items: Iterator[tuple[str, bytes]] = iter(plan)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S,
                                 limits=limits) as client:
        async def worker() -> None:
            for path, body in items:  # one shared iterator: each item is sent once
                results.append(await send(client, path, body))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def open_loop(url: str, plan: list[tuple[str, bytes]], concurrency: int,
                    per_minute: float) -> list[Result]:
    results: list[Result] = []
    gate = asyncio.Semaphore(concurrency)
    interval_s = 60.0 / per_minute
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S,
                                 limits=limits) as client:
        async def one(path: str, body: bytes) -> None:
            async with gate:
                results.append(await send(client, path, body))

        t0 = time.perf_counter()
        tasks = []
        for i, (path, body) in enumerate(plan):
            delay = t0 + i * interval_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(path, body)))
        await asyncio.gather(*tasks)
    return results


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to see who is busy."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_histogram(url: str) -> dict[str, float]:
    """Cumulative counts of the server's own decision latency buckets (le in ms)."""
    text = httpx.get(f"{url}/metrics", timeout=REQUEST_TIMEOUT_S).text
    counts = {}
    for line in text.splitlines():
        if line.startswith("ledger_decision_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            counts[le] = float(line.rsplit(" ", 1)[1])
    return counts


def report(results: list[Result], wall_s: float, label: str) -> dict[str, Any]:
    latencies = sorted(r.latency_s * 1000 for r in results if r.status == 200)
    summary = {
        "label": label,
        "requests": len(results),
        "wall_s": round(wall_s, 2),
        "throughput_per_s": round(len(results) / wall_s, 1),
        "throughput_per_min": round(len(results) / wall_s * 60),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies), 2) if latencies else None,
        "status": dict(Counter(str(r.status) for r in results)),
        "outcomes": dict(Counter(r.outcome for r in results)),
    }
    return summary


class Served:
    """Migrate ``database_url`` and run `ledger serve` on it for the benchmark's duration."""

    def __init__(self, database_url: str, portfolios: list[str], secret: str | None,
                 extra_env: dict[str, str]) -> None:
        from tests.api_server import ServeProcess

        self.dir = tempfile.mkdtemp(prefix="ledger-bench-")
        config = Path(self.dir) / "ledger.toml"
        config.write_text("".join(f"[portfolios.{p}]\n" for p in portfolios if p != "default"))
        env = {"LEDGER_CONFIG": str(config), **extra_env}
        if secret:
            env["LEDGER_WEBHOOK_SECRET"] = secret
        ledger = str(Path(sys.executable).with_name("ledger"))
        subprocess.run([ledger, "migrate"], check=True, cwd=ROOT,
                       env={**os.environ, "LEDGER_DATABASE_URL": database_url, **env})
        self.process = ServeProcess(database_url, env=env)
        self.url = self.process.url

    def close(self) -> None:
        self.process.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running ledger serve, e.g. http://127.0.0.1:8080")
    target.add_argument("--serve", metavar="DATABASE_URL",
                        help="start ledger serve on this store for the run")
    parser.add_argument("-n", "--requests", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: alerts per minute (default: closed loop)")
    parser.add_argument("--portfolios", default="p1,p2,p3,p4,p5,p6,p7,p8")
    parser.add_argument("--duplicates", type=float, default=0.2, help="share redelivered")
    parser.add_argument("--secret", default="bench-secret")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=200, help="requests before measuring")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for --serve (e.g. LEDGER_DECISION_THREADS=8)")
    args = parser.parse_args()

    portfolios = [p.strip() for p in args.portfolios.split(",") if p.strip()]
    seed = args.seed if args.seed is not None else int(time.time())
    plan = schedule(args.requests + args.warmup, portfolios, args.duplicates, seed, args.secret)
    served = None
    if args.serve:
        extra_env = dict(item.split("=", 1) for item in args.env)
        served = Served(args.serve, portfolios, args.secret, extra_env)
    url = served.url if served else args.url
    try:
        warmup, measured = plan[: args.warmup], plan[args.warmup:]
        asyncio.run(closed_loop(url, warmup, min(4, args.concurrency)))
        before = server_histogram(url)
        server_cpu = cpu_seconds(served.process.process.pid) if served else None
        client_cpu = own_cpu_seconds()
        t0 = time.perf_counter()
        if args.rate:
            results = asyncio.run(open_loop(url, measured, args.concurrency, args.rate))
            label = f"open loop {args.rate:g}/min, <= {args.concurrency} in flight"
        else:
            results = asyncio.run(closed_loop(url, measured, args.concurrency))
            label = f"closed loop, concurrency {args.concurrency}"
        wall_s = time.perf_counter() - t0
        summary = report(results, wall_s, f"{label}, seed {seed}")
        after = server_histogram(url)
        decided = after["+Inf"] - before["+Inf"]
        summary["server_side_within_ms"] = {
            le_ms: round((after[le] - before[le]) / decided, 4) for le, le_ms in
            (("0.005", "5"), ("0.01", "10"), ("0.025", "25"), ("0.05", "50"))} if decided else {}
        summary["client_cpu_share"] = round((own_cpu_seconds() - client_cpu) / wall_s, 2)
        if served:
            summary["server_cpu_share"] = round(
                (cpu_seconds(served.process.process.pid) - server_cpu) / wall_s, 2)
        print(json.dumps(summary, indent=2))
    finally:
        if served:
            served.close()


if __name__ == "__main__":
    main()
