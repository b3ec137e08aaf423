"""A rebuild killed outright (SIGKILL, power loss) cannot drop its copy tables
(``<table>__r<8 hex>``). /metrics counts them, and the next rebuild and `ledger migrate` drop
them: only tables named exactly like a projection table's copy, never a live table. On SQLite
and on Postgres.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from projections.schema import TABLES
from projections.verify import verify
from service import bootstrap
from tests.alerts import Alerts
from tests.api_client import service
from tests.api_server import LEDGER, ROOT
from tests.conftest import make_config
from tests.test_api_reads import scenario

KILL_WAIT_S = 60
# Named like copies, but not of a projection table, or not exactly the copy pattern.
LOOKALIKES = ("portfolio_positions__rxyz", "portfolio_positions__r1234abcd_old",
              "notes__r1234abcd", "portfolio_positions__r1234ABCD", "signal_log__r123")


def tables(ledger) -> set[str]:
    """Every table in the store's schema, asked of the store itself."""
    with ledger.transaction(read_only=True) as cursor:
        if ledger.dialect.name == "postgres":
            cursor.execute("SELECT tablename FROM pg_tables "
                           "WHERE schemaname = current_schema()")
            return {row["tablename"] for row in cursor.fetchall()}
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in cursor.fetchall()}


def copies(ledger) -> set[str]:
    names = "|".join(TABLES)
    return {t for t in tables(ledger) if re.fullmatch(rf"({names})__r[0-9a-f]{{8}}", t)}


def leave_copies(ledger) -> set[str]:
    """What a rebuild SIGKILLed after creating its copies leaves: one copy of every table."""
    suffix = f"__r{uuid.uuid4().hex[:8]}"
    with ledger.transaction() as cursor:
        for name in TABLES:
            ledger.dialect.copy_table(cursor, name, f"{name}{suffix}", suffix)
    return {f"{name}{suffix}" for name in TABLES}


def add_lookalikes(ledger) -> None:
    with ledger.transaction() as cursor:
        for name in LOOKALIKES:
            cursor.execute(f'CREATE TABLE "{name}" (x INTEGER)')


def gauge(store_url: str) -> float:
    with service(store_url) as client:
        text = client.get("/metrics").text
    found = re.search(r"^ledger_projection_copy_tables (\S+)$", text, re.MULTILINE)
    assert found, text
    return float(found.group(1))


@pytest.fixture
def ledger(open_ledger):
    ledger = open_ledger(make_config("alpha"))
    scenario(lambda alert, portfolio: ledger.decide(alert, portfolio))
    ProjectionRunner(ledger).catch_up()
    return ledger


def test_migrate_drops_leftover_copies_and_nothing_else(store_url, ledger):
    add_lookalikes(ledger)
    left = leave_copies(ledger) | leave_copies(ledger)  # two killed rebuilds
    live = tables(ledger) - left
    assert copies(ledger) == left
    assert gauge(store_url) == len(left) == 2 * len(TABLES)

    bootstrap.migrate(ledger)
    assert copies(ledger) == set()
    assert tables(ledger) == live  # every live table and every lookalike is still there
    assert verify(ledger)[1] == []
    assert gauge(store_url) == 0


def test_the_next_rebuild_drops_leftover_copies_first(store_url, ledger):
    add_lookalikes(ledger)
    live = tables(ledger)
    leave_copies(ledger)
    report = rebuild(ledger)
    assert report.position == ledger.recorder.max_notification_id()
    assert tables(ledger) == live
    assert verify(ledger)[1] == []


def test_a_partial_rebuild_drops_every_leftover_copy(store_url, ledger):
    live = tables(ledger)
    leave_copies(ledger)
    rebuild(ledger, ["signal_log"])
    assert tables(ledger) == live
    assert verify(ledger)[1] == []


def test_a_sigkilled_rebuild_leaves_copies_that_migrate_drops(store_url, ledger,
                                                              tmp_path: Path):
    a = Alerts(start="2025-11-29T04:00:00Z")
    for i in range(60):
        ledger.decide(a.mark(52000 + i, 100))
    ProjectionRunner(ledger).catch_up()
    live = tables(ledger)
    config = tmp_path / "ledger.toml"  # one event per transaction: a long replay to kill
    config.write_text("[portfolios.alpha]\n[limits]\nprojection_rebuild_batch_events = 1\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")},
           "LEDGER_DATABASE_URL": store_url, "LEDGER_CONFIG": str(config)}
    process = subprocess.Popen([LEDGER, "rebuild-projections"], stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + KILL_WAIT_S
        assert process.stderr is not None
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line, "the rebuild ended before it could be killed"
            if line.startswith(b"ledger: replayed 20 of"):
                break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=KILL_WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert len(copies(ledger)) == len(TABLES)  # the killed rebuild's copies, every one
    assert gauge(store_url) == len(TABLES)

    migrate = subprocess.run([LEDGER, "migrate"], env=env, capture_output=True,
                             timeout=KILL_WAIT_S, check=False)
    assert migrate.returncode == 0, migrate.stderr
    assert f"dropped {len(TABLES)} copy tables".encode() in migrate.stderr
    assert tables(ledger) == live
    assert verify(ledger)[1] == []
