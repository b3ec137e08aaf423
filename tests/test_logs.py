"""`ledger serve`'s log, read as an operator reads it: a real process, its whole output.

- ``LEDGER_LOG_FORMAT=json``: every line (ours and Hypercorn's) is a JSON object with ts,
  level, logger and message, and the fields known for it; text stays the default.
- A request id: the caller's ``X-Request-ID`` or one made up, echoed in the answer, on the
  webhook's decision line, and in the signal's receipt (each delivery its own).
- No secret in any line: webhook secret, API token, database and Redis passwords, however
  a hostile or careless caller sends them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import redis

import migrations
from ledger.application import Ledger
from ledger.config import default_config
from tests.alerts import Alerts
from tests.api_server import ServeProcess
from tests.conftest import ADMIN_URL
from tests.coordination_servers import SERVER_START_S, spare_port, until


@pytest.fixture
def sqlite_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    with Ledger(default_config(), url) as ledger:
        migrations.migrate(ledger)
    return url


def json_lines(output: str) -> list[dict[str, Any]]:
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines
    parsed = []
    for line in lines:
        value = json.loads(line)  # every line, or this fails naming it
        assert isinstance(value, dict), line
        assert {"ts", "level", "logger", "message"} <= set(value), line
        parsed.append(value)
    return parsed


def test_json_logs_every_line_as_an_object_with_its_request_id(sqlite_store):
    alerts = Alerts()
    env = {"LEDGER_LOG_FORMAT": "json"}
    with ServeProcess(sqlite_store, env=env, args=("--access-log",)) as server:
        with server.client() as client:
            given = client.post("/webhook", json=alerts.base(52000, 51900, 100),
                                headers={"X-Request-ID": "nginx-0123abcd"})
            again = client.post("/webhook", json=alerts.base(52000, 51900, 100))
            resent = client.post("/webhook", content=given.request.content,
                                 headers={"X-Request-ID": "retry-1"})
            odd = client.get("/health", headers={"X-Request-ID": "has spaces, and \"quotes\""})
            refused = client.post("/webhook", json={"type": "BASE_ENTRY"})
            trail = client.get(f"/signals/{given.json()['fingerprint']}/trail").json()
        server.terminate()
        output = server.output()

    assert given.headers["x-request-id"] == "nginx-0123abcd"
    assert resent.json()["duplicate"] is True
    made = again.headers["x-request-id"]
    assert len(made) == 32 and made != "nginx-0123abcd"
    assert odd.headers["x-request-id"] != "has spaces, and \"quotes\""  # replaced, not echoed
    assert refused.status_code == 422 and refused.headers["x-request-id"]
    # The receipt names each delivery's request.
    assert [d.get("request_id") for d in trail["deliveries"]] == ["nginx-0123abcd", "retry-1"]

    lines = json_lines(output)
    assert any(line["logger"].startswith("hypercorn.error") for line in lines)
    (decided,) = [line for line in lines if line.get("outcome") == "accepted"
                  and line.get("request_id") == "nginx-0123abcd"]
    assert decided["logger"] == "ledger.api" and decided["level"] == "INFO"
    assert decided["fingerprint"] == given.json()["fingerprint"]
    assert decided["elapsed_ms"] >= 0 and decided["status"] == 200
    assert [line["request_id"] for line in lines if line.get("outcome") == "duplicate"] == [
        "retry-1"]
    (invalid,) = [line for line in lines if line.get("outcome") == "invalid"]
    assert invalid["status"] == 422 and invalid["request_id"] == \
        refused.headers["x-request-id"] and "stop" in invalid["problems"]
    access = [line for line in lines if line["logger"] == "hypercorn.access"]
    assert {"nginx-0123abcd", made, "retry-1"} <= {line.get("request_id") for line in access}
    assert all(isinstance(line["status"], int) and "elapsed_ms" in line for line in access)


def test_text_logs_stay_the_default_and_name_the_request(sqlite_store):
    with ServeProcess(sqlite_store) as server:
        with server.client() as client:
            client.post("/webhook", json=Alerts().base(52000, 51900, 100),
                        headers={"X-Request-ID": "abc-123"})
        server.terminate()
        output = server.output()
    lines = [line for line in output.splitlines() if line.strip()]
    assert not any(line.startswith("{") for line in lines)
    (decided,) = [line for line in lines if "webhook accepted" in line]
    assert decided.endswith("request_id=abc-123"), decided


def test_an_unknown_log_format_stops_the_start(sqlite_store):
    with pytest.raises(RuntimeError, match="LEDGER_LOG_FORMAT"):
        ServeProcess(sqlite_store, env={"LEDGER_LOG_FORMAT": "xml"})


# --- secrets --------------------------------------------------------------------------------

WEBHOOK_SECRET = "tvSecret-7f3a9c2e51"  # a valid request id too: a caller may send it as one
API_TOKEN = "apiToken-b81d4e0f6a"
DB_PASSWORD = "dbPass/w0rd@x%y"  # percent-encoded in the URL
REDIS_PASSWORD = "redisPass-c4e2a17b"


@contextlib.contextmanager
def redis_with_password(directory: Path) -> Iterator[int]:
    port = spare_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--requirepass", REDIS_PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=REDIS_PASSWORD, socket_timeout=0.2,
                         socket_connect_timeout=0.2)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        until(answers, SERVER_START_S, "redis-server to answer")
        yield port
    finally:
        client.close()
        process.kill()
        process.wait(SERVER_START_S)


@contextlib.contextmanager
def database_behind_a_password() -> Iterator[str]:
    """A database of its own, reached by a URL that carries a password (the test server
    trusts local connections, so it is never checked: only carried, and never logged)."""
    name = f"ledger_logs_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    password = quote(DB_PASSWORD, safe="")
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgres@", f"postgres:{password}@")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_reaches_the_log_whatever_callers_send(tmp_path, log_format):
    alerts = Alerts()
    with redis_with_password(tmp_path) as redis_port, database_behind_a_password() as url:
        env = {"LEDGER_LOG_FORMAT": log_format, "LEDGER_WEBHOOK_SECRET": WEBHOOK_SECRET,
               "LEDGER_API_TOKEN": API_TOKEN,
               "LEDGER_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0",
               # 403 for a request forwarded from elsewhere, through a "proxy" on loopback.
               "LEDGER_TRUSTED_PROXIES": "127.0.0.1", "LEDGER_WEBHOOK_ALLOWLIST": "127.0.0.1"}
        with ServeProcess(url, env=env, args=("--migrate", "--access-log")) as server:
            with server.client() as client:
                statuses = _hostile_traffic(client, alerts)
            server.terminate()
            output = server.output()
    assert statuses == [200, 200, 422, 422, 401, 401, 401, 403, 400, 200, 401, 401, 401, 200,
                        401], statuses
    assert "webhook accepted" in output  # the log was written, and read whole
    for secret in (WEBHOOK_SECRET, API_TOKEN, DB_PASSWORD, quote(DB_PASSWORD, safe=""),
                   REDIS_PASSWORD):
        assert secret not in output, f"{secret!r} is in the log:\n{output}"


def _hostile_traffic(client: Any, alerts: Alerts) -> list[int]:
    """Alerts and reads carrying the secrets in every wrong place; their statuses."""
    secret = {"secret": WEBHOOK_SECRET}
    sent = [
        # ... as its request id, and pasted into the reason.
        client.post("/webhook", json={**alerts.base(52000, 51900, 100), **secret},
                    headers={"X-Request-ID": WEBHOOK_SECRET}),
        client.post("/webhook", json={**alerts.mark(52100, 100), **secret,
                                      "reason": f"secret is {WEBHOOK_SECRET}"}),
        # ... as a field's value, and as a placeholder's name.
        client.post("/webhook", json={**alerts.mark(52200, 100), **secret,
                                      "type": WEBHOOK_SECRET}),
        client.post("/webhook", json={**alerts.mark(52300, 100), **secret,
                                      "price": "{{" + WEBHOOK_SECRET + "}}"}),
        # 401s: wrong, near and missing secrets; the API token in its place.
        client.post("/webhook", json={**alerts.mark(52400, 100), "secret": WEBHOOK_SECRET + "x"}),
        client.post("/webhook", json=alerts.mark(52500, 100)),
        client.post("/webhook", json={**alerts.mark(52600, 100), "secret": API_TOKEN}),
        # 403: forwarded from an address not on the allowlist.
        client.post("/webhook", json={**alerts.mark(52700, 100), **secret},
                    headers={"X-Forwarded-For": "203.0.113.7"}),
        # 400: not JSON, with the secret in it.
        client.post("/webhook", content=f"secret={WEBHOOK_SECRET}&x",
                    headers={"content-type": "text/plain"}),
        # In a query string (an access log line).
        client.post(f"/webhook?secret={WEBHOOK_SECRET}&token={API_TOKEN}",
                    json={**alerts.mark(52800, 100), **secret}),
        # Reads: bad tokens, the webhook secret as a token, then the right one.
        client.get("/positions", headers={"Authorization": f"Bearer {API_TOKEN}x"}),
        client.get("/positions", headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"}),
        client.get("/positions", headers={"Authorization": API_TOKEN}),
        client.get("/positions", headers={"Authorization": f"Bearer {API_TOKEN}",
                                          "X-Request-ID": API_TOKEN}),
        client.get(f"/signals?cursor={API_TOKEN}"),
    ]
    return [r.status_code for r in sent]
