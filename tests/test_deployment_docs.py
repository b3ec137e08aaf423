"""docs/DEPLOYMENT.md stands alone and its commands work: the backup and restore block is run
as written against the machine's Postgres (two throwaway databases)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.alerts import Alerts
from tests.api_server import LEDGER
from tests.conftest import ADMIN_URL

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "DEPLOYMENT.md"
TIMEOUT_S = 120


def text() -> str:
    return DOC.read_text()


def sh_block_after(heading: str) -> str:
    section = text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert blocks, f"no sh block under '## {heading}'"
    return blocks[0]


def test_the_deployment_doc_stands_alone():
    doc = text()
    assert "shared/" not in doc  # no link outside the repository
    assert not re.search(r"\bissues?\s*#?\d+", doc, flags=re.I), "name the problem, not a number"
    for target in re.findall(r"\]\(([^)#\s]+)", doc):
        assert target.startswith("https://") or (DOC.parent / target).is_file(), target
    operators_own = {"docker/.env"}  # created on the host, never shipped
    for path in set(re.findall(r"(?<![\w/.])((?:docker|docs|tests)/[\w./-]*\w)", doc)):
        assert path in operators_own or (ROOT / path).exists(), f"{path} does not exist"


def test_the_deployment_doc_covers_every_way_to_run_it():
    doc = text()
    for needed in ("docker-compose -f docker/compose.yaml up -d",
                   "[Service]", "ExecStart=/opt/ledger/bin/ledger serve --host 127.0.0.1",
                   "/ready/webhook", "LEDGER_WEBHOOK_SECRET", "LEDGER_API_TOKEN",
                   "postgresql://ledger:PASSWORD@", "TRADINGVIEW.md", "ledger_events",
                   "ledger rebuild-projections", "## Adding an instance", "## Secrets",
                   "## TLS", "load balancer"):
        assert needed in doc, f"DEPLOYMENT.md lacks {needed!r}"


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    names = [f"ledger_backup_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _ledger(url: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([LEDGER, *args], input=stdin, capture_output=True, text=True,
                            env={**os.environ, "LEDGER_DATABASE_URL": url}, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.postgres
def test_the_documented_backup_restores_a_store_that_keeps_deciding(databases, tmp_path: Path):
    store, new_store = databases
    _ledger(store, "migrate")
    alerts = Alerts()
    first = alerts.base(52000, 51650, 350)
    bodies = [first, alerts.mark(52300, 350), alerts.pyramid("Long_2", 52500, 52100, 350)]
    _ledger(store, "signal", "--each", "-", stdin="\n".join(map(json.dumps, bodies)))

    env = {**os.environ, "STORE": store, "NEW_STORE": new_store,
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if k != "LEDGER_DATABASE_URL"}
    script = sh_block_after("Backups")
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=TIMEOUT_S)
    assert run.returncode == 0, f"{script}\n{run.stdout}\n{run.stderr}"
    assert "every table equals the log" in run.stdout

    with psycopg.connect(store) as a, psycopg.connect(new_store) as b:
        query = "SELECT count(*), max(notification_id) FROM ledger_events"
        assert b.execute(query).fetchone() == a.execute(query).fetchone()
        (last, called), = b.execute(
            "SELECT last_value, is_called FROM ledger_events_notification_id_seq").fetchall()
        assert called and last == a.execute(query).fetchone()[1], "sequence not restored"

    resent = json.loads(_ledger(new_store, "signal", stdin=json.dumps(first)))
    assert resent["duplicate"] is True, "the restored store must know its decided alerts"
    fresh = json.loads(_ledger(new_store, "signal", stdin=json.dumps(alerts.mark(52600, 350))))
    assert fresh["duplicate"] is False
    assert _ledger(new_store, "project", "--once") and "every table equals the log" in \
        _ledger(new_store, "verify")
