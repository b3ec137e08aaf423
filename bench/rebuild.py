"""Rebuild the projection tables from a large log; print events, seconds and events/s.
A benchmark, not a test: results go to docs/BENCHMARKS.md.

`generate` fills an empty store with N events the way production writes them: every alert goes
through the real ``Ledger.decide`` (so the events are exactly what `ledger serve` appends).
The mix is bench/webhooks.py's: per (portfolio, instrument) a bar-by-bar random walk of
MARKET_DATA marks (which trail the stops of open positions and mark the books), base entries,
pyramids and exits, plus ~20% exact redeliveries of recent alerts; timestamps only increase.
Portfolios are split over P processes, each deciding its own portfolios, so writers never
conflict on a stream (Postgres still serialises their commits with its table lock).

`run` rebuilds every projection table (or --tables) in this process, as
`ledger rebuild-projections` does, and prints what it took; --profile runs it under cProfile.

The portfolios must exist in the configuration every command uses: bench/rebuild.toml (16
portfolios, r01..r16); pass it to `ledger verify` etc. as LEDGER_CONFIG.

  URL='postgresql://postgres@127.0.0.1:5432/ledger_bench_rebuild?schema=e100k'
  .venv/bin/python bench/rebuild.py generate --events 100000 --url "$URL" --processes 2
  .venv/bin/python bench/rebuild.py run --url "$URL"
  .venv/bin/python bench/rebuild.py run --url "$URL" --profile 25
  LEDGER_CONFIG=bench/rebuild.toml LEDGER_DATABASE_URL="$URL" .venv/bin/ledger verify
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import pstats
import random
import sys
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # webhooks.Stream

CONFIG = ROOT / "bench" / "rebuild.toml"
DUPLICATE_SHARE = 0.2
PROGRESS_EVERY_EVENTS = 20_000


def portfolios_in(config_path: Path) -> list[str]:
    from ledger.config import load_config

    return sorted(load_config(config_path).portfolios)


def open_ledger(url: str, config_path: Path, instance_id: str | None = None) -> Any:
    from ledger.application import Ledger
    from ledger.config import load_config

    return Ledger(load_config(config_path), url, instance_id=instance_id)


# -- generate ------------------------------------------------------------------------------


def prepare_store(url: str, config_path: Path) -> None:
    """Create the Postgres database and schema if absent, migrate; refuse a non-empty store."""
    parts = urlsplit(url)
    if parts.scheme.startswith("postgres"):
        import psycopg

        dbname = parts.path.lstrip("/")
        schema = parse_qs(parts.query).get("schema", ["public"])[0]
        server = parts._replace(path="/postgres", query="").geturl()
        with psycopg.connect(server, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (dbname,)).fetchone():
                conn.execute(f'CREATE DATABASE "{dbname}"')
        with psycopg.connect(parts._replace(query="").geturl(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    import migrations

    ledger = open_ledger(url, config_path)
    try:
        migrations.migrate(ledger)
        if ledger.recorder.max_notification_id():
            raise SystemExit(f"{ledger.store.redacted_url} has events already: generate into "
                             f"an empty store (a new schema or file)")
    finally:
        ledger.close()


def worker(url: str, config_path: str, portfolios: list[str], events: int, seed: int,
           index: int) -> dict[str, Any]:
    """Decide alerts on ``portfolios`` until ``events`` events are appended."""
    from webhooks import INSTRUMENTS, Stream

    rng = random.Random(seed)
    start = datetime(2025, 1, 6, 3, 45, tzinfo=UTC)
    streams = [Stream(p, i, price, start, random.Random(rng.random()))
               for p in portfolios for i, price in INSTRUMENTS.items()]
    ledger = open_ledger(url, Path(config_path), instance_id=f"bench-rebuild:{index}")
    recent: deque[tuple[str, dict[str, Any]]] = deque(maxlen=8)
    counts = {"events": 0, "decisions": 0, "accepted": 0, "duplicates": 0}
    clock = start  # received_at: only ever increases, a few seconds after the bar
    turn = 0
    started = last_report = time.perf_counter()
    try:
        while counts["events"] < events:
            if recent and rng.random() < DUPLICATE_SHARE:
                portfolio, alert = recent[rng.randrange(len(recent))]
            else:
                stream = streams[turn % len(streams)]
                turn += 1
                portfolio, alert = stream.portfolio, stream.next_alert()
                recent.append((portfolio, alert))
            clock = max(clock + timedelta(milliseconds=10),
                        datetime.fromisoformat(alert["timestamp"]) + timedelta(seconds=2))
            decision = ledger.decide(alert, portfolio, received_at=clock)
            if decision.duplicate:
                counts["duplicates"] += 1
                counts["events"] += 1
            else:
                counts["decisions"] += 1
                counts["accepted"] += decision.accepted
                counts["events"] += len(decision.body["events"])
            now = time.perf_counter()
            if now - last_report > 10:
                last_report = now
                print(f"[{index}] {counts['events']:,}/{events:,} events, "
                      f"{counts['events'] / (now - started):,.0f}/s", file=sys.stderr,
                      flush=True)
    finally:
        ledger.close()
    return counts


def generate(args: argparse.Namespace) -> None:
    config_path = Path(args.config)
    portfolios = portfolios_in(config_path)
    processes = max(1, min(args.processes, len(portfolios)))
    prepare_store(args.url, config_path)
    shares = [portfolios[i::processes] for i in range(processes)]
    per_process = [args.events // processes + (i < args.events % processes)
                   for i in range(processes)]
    started = time.perf_counter()
    jobs = [(args.url, str(config_path), shares[i], per_process[i], args.seed * 1000 + i, i)
            for i in range(processes)]
    if processes == 1:
        results = [worker(*jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            results = pool.starmap(worker, jobs)
    seconds = time.perf_counter() - started
    total = {k: sum(r[k] for r in results) for k in results[0]}
    print(json.dumps({"url": args.url, "processes": processes, "seconds": round(seconds, 1),
                      "events_per_s": round(total["events"] / seconds), **total,
                      **dataset(args.url, config_path)}, indent=2))


def dataset(url: str, config_path: Path) -> dict[str, Any]:
    """What the log holds: events, signals, positions (counted from the log itself)."""
    ledger = open_ledger(url, config_path)
    try:
        table = ledger.recorder.events_table_name
        with ledger.transaction() as cursor:
            cursor.execute(f"SELECT topic, COUNT(*) FROM {table} GROUP BY topic")
            by_topic = {(r["topic"] if isinstance(r, dict) else r[0]).rsplit(".", 1)[-1]:
                        (r["count"] if isinstance(r, dict) else r[1])
                        for r in cursor.fetchall()}
    finally:
        ledger.close()
    return {"log_events": sum(by_topic.values()),
            "signals": by_topic.get("SignalDecided", 0),
            "redeliveries": by_topic.get("SignalRedelivered", 0),
            "positions": by_topic.get("PositionOpened", 0),
            "events_by_type": dict(sorted(by_topic.items(), key=lambda kv: -kv[1]))}


# -- run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    from projections.rebuild import rebuild

    ledger = open_ledger(args.url, Path(args.config))
    try:
        ledger.check_ready()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        report = rebuild(ledger, args.tables or None)
        if profiler:
            profiler.disable()
        print(json.dumps({"backend": ledger.dialect.name, **report.as_dict()}))
        if profiler:
            for order in ("tottime", "cumulative"):
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(args.profile)
                print(out.getvalue(), file=sys.stderr)
    finally:
        ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="fill an empty store with N events")
    gen.add_argument("--events", type=int, required=True)
    gen.add_argument("--url", required=True, help="the store (a new schema or SQLite file)")
    gen.add_argument("--processes", type=int, default=2)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--config", default=str(CONFIG))
    measure = commands.add_parser("run", help="rebuild the projection tables, timed")
    measure.add_argument("--url", required=True)
    measure.add_argument("--tables", nargs="*", default=None, metavar="NAME")
    measure.add_argument("--profile", type=int, default=0, metavar="N",
                         help="run under cProfile; print the top N functions (stderr)")
    measure.add_argument("--config", default=str(CONFIG))
    show = commands.add_parser("dataset", help="count what the store's log holds")
    show.add_argument("--url", required=True)
    show.add_argument("--config", default=str(CONFIG))
    args = parser.parse_args()
    if args.command == "generate":
        generate(args)
    elif args.command == "run":
        run(args)
    else:
        print(json.dumps(dataset(args.url, Path(args.config)), indent=2))


if __name__ == "__main__":
    main()
