"""``Ledger.decide`` in a loop on a fresh Postgres schema of ``ledger_bench_pair``: decisions/s
and CPU per decision, for the code in the source tree ROOT (run it against two checkouts,
alternating, to compare a change on the decision path). A benchmark, not a test.

  .venv/bin/python bench/decide_loop.py /path/to/checkout 400
"""

from __future__ import annotations

import importlib
import sys
import time
import uuid

import psycopg

DATABASE = "postgresql://postgres@127.0.0.1:5432/ledger_bench_pair"


def main(root: str, decisions: int) -> None:
    sys.path[:0] = [root, f"{root}/tests"]  # that checkout's code, not the installed one
    migrations = importlib.import_module("migrations")
    ledger_cls = importlib.import_module("ledger.application").Ledger
    config = importlib.import_module("ledger.config").default_config()
    alerts = importlib.import_module("alerts").Alerts()
    schema = f"d_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DATABASE, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    ledger = ledger_cls(config, f"{DATABASE}?schema={schema}")
    migrations.migrate(ledger)
    ledger.decide(alerts.base(52000, 51800, 200))
    bodies = [alerts.mark(52000 + (i % 50) * 10, 200) for i in range(decisions)]
    started, cpu = time.perf_counter(), time.process_time()
    for body in bodies:
        ledger.decide(body)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"{root}: {decisions / wall:.1f} decisions/s, "
          f"{cpu / decisions * 1000:.2f} ms CPU per decision")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
