"""The projections as operators and clients meet them: the `ledger project`, `verify` and
`rebuild-projections` commands, and inside `ledger serve` (lag in /ready and /metrics,
read-your-writes, instance_metadata). Both backends."""

from __future__ import annotations

import json
from dataclasses import replace

from starlette.testclient import TestClient

from api.app import create_app
from api.settings import ServeSettings
from ledger.application import Ledger
from projections.runner import ProjectionRunner, lag
from projections.schema import INSTANCES
from projections.tables import TableStore
from projections.verify import verify
from tests.alerts import Alerts
from tests.api_client import SECRET, service, with_secret
from tests.conftest import make_config
from tests.test_cli import lines, run


def test_commands_project_verify_and_rebuild(store_url, ledger):
    a = Alerts()
    for alert in (a.base(52000, 51900, 100), a.mark(52500, 100), a.exit("Long_1", 52400)):
        ledger.decide(alert)
    head = lag(ledger).head
    verify = run(store_url, "verify")  # nothing projected yet: right, but behind
    assert verify.returncode == 0 and f"{head} later events".encode() in verify.stdout
    project = run(store_url, "project", "--once")
    assert project.returncode == 0, project.stderr
    assert lines(project) == [{"applied": head, "position": head}]
    assert run(store_url, "verify").returncode == 0
    with ledger.transaction() as cursor:
        cursor.execute("UPDATE portfolio_state SET closed_equity = 1")
    verify = run(store_url, "verify")
    assert verify.returncode == 1, verify.stdout
    assert b"portfolio_state[default].closed_equity: stored '1'" in verify.stdout
    rebuilt = run(store_url, "rebuild-projections", "signal_log", "portfolio_positions")
    assert rebuilt.returncode == 0, rebuilt.stderr
    report = lines(rebuilt)[0]
    assert (report["tables"], report["events"], report["position"]) == (
        ["portfolio_positions", "signal_log"], head, head)
    assert report["events_per_s"] > 0 and b"events/s" in rebuilt.stderr
    unknown = run(store_url, "rebuild-projections", "nope")
    assert unknown.returncode == 2 and b"no projection 'nope'" in unknown.stderr


def test_commands_refuse_a_store_without_the_projection_tables(store_url):
    Ledger(make_config(), store_url).create_event_tables()  # event store only
    for command in (["project", "--once"], ["verify"], ["rebuild-projections"]):
        result = run(store_url, *command)
        assert result.returncode == 3 and b"ledger migrate" in result.stderr, command


def served(store_url: str, *, run_projections: bool, **limits: int) -> TestClient:
    config = make_config("alpha")
    config = replace(config, limits=replace(config.limits, **limits))
    app = create_app(ServeSettings(webhook_secret=SECRET), lambda: Ledger(config, store_url),
                     run_projections=run_projections)
    return TestClient(app, raise_server_exceptions=False)


def test_ready_turns_503_when_the_tables_lag_beyond_their_bound(store_url, ledger):
    a = Alerts()
    for alert in (a.base(52000, 51900, 100), a.mark(52500, 100), a.mark(52600, 100)):
        ledger.decide(alert)
    with served(store_url, run_projections=False, projection_lag_events_max=3) as client:
        r = client.get("/ready")
        assert r.status_code == 503 and r.json()["error"] == "projections_behind"
        assert r.json()["projections"]["lag_events"] == lag(ledger).head > 3
        # Deciding does not read the tables: webhooks stay routable meanwhile.
        r = client.get("/ready/webhook")
        assert r.status_code == 200 and r.json()["projections"]["lag_events"] > 3
        metrics = client.get("/metrics").text
        assert f"ledger_projection_lag_events {float(lag(ledger).head)}" in metrics
        ProjectionRunner(ledger).catch_up()
        r = client.get("/ready")
        assert r.status_code == 200 and r.json()["projections"]["lag_events"] == 0
        assert "ledger_projection_lag_events 0.0" in client.get("/metrics").text


def test_reads_wait_for_the_log_position_a_webhook_answered(store_url, ledger):
    a = Alerts()
    with service(store_url) as client:
        decided = client.post("/webhook", json=a.base(52000, 51900, 100)).json()
        position = decided["log_position"]
        r = client.get("/positions", params={"after": position})
        assert r.status_code == 200
        assert [p["position_id"] for p in r.json()["positions"]] == [decided["position_id"]]
        assert "ledger_projection_leader 1.0" in client.get("/metrics").text
        for bad in ("-1", "x", "1" * 19):
            r = client.get("/signals", params={"after": bad})
            assert r.status_code == 400 and r.json()["problems"][0]["field"] == "after"
        r = client.get("/portfolio", params={"after": position + 1000})
        assert r.status_code == 400 and "beyond the log" in r.json()["problems"][0]["message"]


def test_a_read_that_cannot_see_its_write_in_time_says_so(store_url, ledger):
    with served(store_url, run_projections=False, projection_wait_ms_max=50) as client:
        decided = client.post("/webhook", json=with_secret(Alerts().base(52000, 51900, 100)))
        r = client.get("/portfolio", params={"after": decided.json()["log_position"]})
        assert r.status_code == 503 and r.json()["error"] == "projections_behind"
        assert r.headers["retry-after"] == "1"


def test_instance_metadata_records_each_service_start_and_stop(store_url, ledger):
    with service(store_url) as client:
        client.post("/webhook", json=Alerts().base(52000, 51900, 100))
        instance_id = client.app.state.runtime.ledger.instance_id
    # The service's runner applied its own InstanceStopped on the way out.
    assert lag(ledger).events == 0
    with ledger.transaction() as cursor:
        rows = {r["instance_id"]: r for r in TableStore(ledger).read(cursor, INSTANCES)}
    row = rows[instance_id]
    assert (row["status"], row["signals_processed"], row["version"]) == ("stopped", 1, "0.1.0")
    assert row["started_at"] <= row["last_signal_processed"] <= row["last_heartbeat"]
    assert json.loads(json.dumps(row))["hostname"]


def test_extreme_numbers_in_an_alert_are_stored_and_answered(store_url, ledger):
    # An alert may carry any extra field: an integer beyond 64 bits (which orjson refuses)
    # and a decimal whose positional form would be megabytes.
    alert = json.dumps(Alerts().base(52000, 51900, 100))[:-1] + (
        ', "volume": 1180591620717411303424, "ratio": 1e999}')
    with service(store_url) as client:
        decided = client.post("/webhook", content=alert,
                              headers={"content-type": "application/json"})
        assert decided.status_code == 200, decided.text
        after = {"after": decided.json()["log_position"]}
        r = client.get("/signals", params=after)
        assert r.status_code == 200, r.text
        payload = r.json()["signals"][0]["payload"]
        # Answered as the numbers they were sent as (docs/EVENTS.md, "The alert as sent").
        assert b'"volume":1180591620717411303424,"ratio":1e999}' in r.content
        assert payload["volume"] == 2 ** 70
        trail = client.get(f"/signals/{decided.json()['fingerprint']}/trail", params=after)
        assert trail.status_code == 200, trail.text
        assert trail.json()["projection_rows"]["signal_log"]["payload"] == payload
    assert verify(ledger)[1] == []
