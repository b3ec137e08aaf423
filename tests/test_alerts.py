"""Alerts against a real HTTP receiver on 127.0.0.1: Slack-compatible JSON, rate limits per
kind, never blocking the caller when the receiver hangs, no secret in any text; and what is
alerted: leadership changes (a real coordinator), projection lag and crashed instances (the
watch job, on SQLite and Postgres)."""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime, timedelta

from coordination import Coordinator
from coordination.heartbeat import Beat, record_beat
from ledger.application import Ledger
from service.alerts import Alerts, alert_on_changes, redact
from service.jobs import WatchJob
from tests.alerts import Alerts as Signals
from tests.conftest import make_config
from tests.coordination_servers import until
from tests.jobs_support import TEST_SETTINGS, FakeClock, Receiver, silent_listener

DELIVERY_S = 5  # bound on an alert reaching the local receiver
ALERT_CALL_S_MAX = 0.05  # alert() returns within this, whatever the receiver does


def test_an_alert_is_posted_as_slack_json_and_logged(caplog):
    with Receiver() as receiver, caplog.at_level(logging.WARNING, "ledger.alerts"):
        alerts = Alerts(receiver.url, source="instance-1")
        assert alerts.alert("leader_gained", "this instance now leads", epoch=3) == "queued"
        until(lambda: receiver.bodies, DELIVERY_S, "the post")
        alerts.close()
    assert receiver.bodies == [
        {"text": "[ledger leader_gained] instance-1: this instance now leads (epoch=3)"}]
    assert alerts.posted == 1 and alerts.failed == 0
    assert "alert leader_gained: this instance now leads (epoch=3)" in caplog.text


def test_without_a_webhook_alerts_are_logged_only(caplog):
    with caplog.at_level(logging.WARNING, "ledger.alerts"):
        assert Alerts().alert("projection_lag", "behind") == "logged"
    assert "alert projection_lag: behind" in caplog.text


def test_each_kind_is_posted_at_most_once_per_interval_and_the_suppressed_are_counted():
    now = [1000.0]
    with Receiver() as receiver:
        alerts = Alerts(receiver.url, min_interval_s=60, monotonic=lambda: now[0])
        outcomes = [alerts.alert("projection_lag", f"behind {i}") for i in range(5)]
        assert outcomes == ["queued"] + ["suppressed"] * 4
        assert alerts.alert("instance_crashed", "one crashed") == "queued"
        now[0] += 61
        assert alerts.alert("projection_lag", "still behind") == "queued"
        until(lambda: len(receiver.bodies) == 3, DELIVERY_S, "three posts")
        alerts.close()
    assert alerts.suppressed == 4 and alerts.alerts == 7
    assert receiver.texts()[2].endswith(
        "still behind (4 more projection_lag alerts were suppressed before this one)")


def test_a_hung_receiver_never_blocks_the_caller_and_close_is_bounded():
    with silent_listener() as url:
        alerts = Alerts(url, min_interval_s=0, queue_max=3, post_timeout_ms=300)
        slowest = 0.0
        for i in range(20):
            started = time.monotonic()
            alerts.alert("mode_switched", f"switch {i}")
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < ALERT_CALL_S_MAX
        assert alerts.dropped >= 20 - 1 - 3  # one being posted, three queued
        started = time.monotonic()
        alerts.close(timeout_ms=500)
        assert time.monotonic() - started < 1.0
        until(lambda: alerts.failed >= 1, DELIVERY_S, "the post to time out")
    assert alerts.posted == 0
    assert alerts.alert("mode_switched", "after close") == "dropped"


def test_a_refused_connection_is_counted_not_raised():
    with silent_listener() as url:
        pass  # closed: nothing listens there any more
    alerts = Alerts(url, post_timeout_ms=300)
    alerts.alert("leader_lost", "no longer leads")
    until(lambda: alerts.failed == 1, DELIVERY_S, "the failed post")
    alerts.close()


def test_secrets_never_appear_in_alert_text_or_the_log(caplog):
    reason = ("Redis failed: Error connecting to redis://:hunter2@127.0.0.1:6390/0; store "
              "postgresql://ledger:s3cr3t@db:5432/ledger?schema=x, conninfo password=pw123")
    with Receiver() as receiver, caplog.at_level(logging.DEBUG):
        alerts = Alerts(receiver.url)
        alerts.alert("mode_switched", reason, token="tok-abc", api_key="k-123", epoch=4)
        until(lambda: receiver.bodies, DELIVERY_S, "the post")
        alerts.close()
    for place in (receiver.texts()[0], caplog.text):
        for secret in ("hunter2", "s3cr3t", "pw123", "tok-abc", "k-123", "SECRETPATH"):
            assert secret not in place
    assert "redis://***@127.0.0.1:6390/0" in receiver.texts()[0]
    assert redact("https://hooks.example/T/B/x") == "https://hooks.example/T/B/x"


def test_leadership_changes_are_alerted_from_a_real_coordinator(ledger, store_url):
    with Receiver() as receiver:
        alerts = Alerts(receiver.url, min_interval_s=0)
        coordinator = Coordinator.from_database_url(store_url, settings=TEST_SETTINGS,
                                                    instance_id="leader-1")
        alert_on_changes(coordinator, alerts)
        coordinator.start()
        try:
            until(lambda: receiver.bodies, DELIVERY_S, "the leader_gained alert")
        finally:
            coordinator.stop()  # an orderly handover: logged, not alerted
        alerts.close()
    assert len(receiver.bodies) == 1
    text = receiver.texts()[0]
    assert text.startswith("[ledger leader_gained]") and "instance=leader-1" in text
    assert "epoch=1" in text and "mode=single" in text  # a fresh store: the first term


def test_the_watch_job_alerts_projection_lag_beyond_its_bound(open_ledger):
    config = make_config()
    config = dataclasses.replace(config, limits=dataclasses.replace(
        config.limits, projection_lag_events_max=3))
    ledger: Ledger = open_ledger(config)
    alerts = Alerts()
    job = WatchJob(ledger, alerts, stale_ms=TEST_SETTINGS.heartbeat_stale_ms)
    assert job.run(1).done == [] and alerts.alerts == 0
    ledger.decide(Signals().mark(52000, 300))  # 3 events...
    assert job.run(1).done == []
    ledger.decide(Signals(start="2025-11-29T04:00:00Z").mark(52100, 300))  # ...then 5
    report = job.run(1)
    assert report.done == [{"alert": "projection_lag"}] and report.facts["lag_events"] > 3
    assert alerts.alerts == 1


def beat(ledger: Ledger, instance_id: str) -> None:
    with ledger.transaction() as cursor:
        record_beat(cursor, ledger.dialect.name, Beat(
            instance_id, "host", 8080, "test", datetime.now(UTC), False, None, None,
            "single", "standby"))


def test_the_watch_job_alerts_each_newly_crashed_instance_once(ledger):
    stale_ms = 100
    alerts = Alerts()
    clock = FakeClock(datetime.now(UTC))
    beat(ledger, "old-crash")
    with ledger.transaction() as cursor:  # its last heartbeat was two hours ago
        p = ledger.dialect.param
        cursor.execute(f"UPDATE instance_heartbeats SET last_heartbeat = {p} "
                       f"WHERE instance_id = {p}",
                       (ledger.dialect.to_db("ts", (clock.now() - timedelta(hours=2))
                                             .isoformat()), "old-crash"))
    beat(ledger, "crashed-1")
    time.sleep(stale_ms / 1000 * 2)
    job = WatchJob(ledger, alerts, stale_ms=stale_ms, clock=clock)
    report = job.run(1)
    assert [d.get("instance_id") for d in report.done] == ["crashed-1"]
    assert report.facts["crashed"] == 2 and alerts.alerts == 1

    assert job.run(1).done == []  # the same crash: not again
    beat(ledger, "crashed-2")
    assert job.run(1).done == []  # it beats: not crashed yet
    time.sleep(stale_ms / 1000 * 2)
    assert [d.get("instance_id") for d in job.run(1).done] == ["crashed-2"]
    assert job.run(1).done == [] and alerts.alerts == 2
