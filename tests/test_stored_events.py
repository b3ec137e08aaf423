"""Events already in a store keep their meaning: a store written by an earlier version of the
code (``fixtures/events_v1.json``: every event type, written by the code as it stood when the
fixture was made) replays to the same books, histories, trails and projection rows, and new
events are written under the same topics.

The fixture holds the stored rows (topic and JSON state, byte for byte) and what that code
answered from them. Never regenerate it: it stands for the stores already in production.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

import migrations
from ledger import wire
from ledger.application import Ledger
from ledger.config import default_config
from ledger.domain import PortfolioParams
from projections.runner import ProjectionRunner
from projections.verify import verify
from tests.alerts import Alerts

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "events_v1.json").read_text())
# Columns added to the tables since the fixture was written, and what its events give them:
# nothing in an older log can fill them (its stores recorded no such fact).
ADDED_COLUMNS = {"portfolio_positions": {"stop_breached_at": None}}


def _json(value: Any) -> Any:
    return json.loads(wire.dumps(value))


@pytest.fixture
def old_store(store_url: str) -> Ledger:
    config = default_config().with_portfolio(PortfolioParams(name="peel", peel_off=True))
    ledger = Ledger(config, store_url, instance_id="test:1")
    migrations.migrate(ledger)
    ledger.recorder.insert_events([
        StoredEvent(originator_id=UUID(e["originator_id"]),
                    originator_version=e["originator_version"], topic=e["topic"],
                    state=e["state"].encode())
        for e in FIXTURE["events"]])
    yield ledger
    ledger.close()


def test_old_events_replay_to_the_same_books(old_store):
    for name, summary in FIXTURE["expected"]["portfolios"].items():
        assert _json(old_store.portfolio_summary(name)) == summary


def test_old_events_replay_to_the_same_position_histories(old_store):
    for position_id, history in FIXTURE["expected"]["histories"].items():
        assert _json(old_store.position_history(position_id)) == history


def test_old_events_replay_to_the_same_signal_trails(old_store):
    for fingerprint, trail in FIXTURE["expected"]["trails"].items():
        assert _json(old_store.signal_trail(fingerprint)) == trail


def test_old_events_project_to_the_same_rows(old_store):
    ProjectionRunner(old_store).catch_up()
    position, diffs = verify(old_store)
    assert (position, diffs) == (len(FIXTURE["events"]), [])
    from projections.verify import _Replay

    replay = _Replay(old_store)
    replay.up_to(position)
    for table, rows in FIXTURE["expected"]["rows"].items():
        got = sorted(_json(list(replay.rows[table].values())),
                     key=lambda r: json.dumps(r, sort_keys=True, default=str))
        added = ADDED_COLUMNS.get(table, {})
        assert got == [{**row, **added} for row in rows], table


def test_new_events_are_written_under_the_stored_topics(old_store):
    alerts = Alerts(start="2026-01-05T04:00:00Z")
    before = old_store.recorder.max_notification_id()
    entry = old_store.decide(alerts.base(60000, 59800, 200))
    old_store.decide(alerts.mark(60400, 200))
    old_store.decide(alerts.exit("Long_1", 60500))
    gold = old_store.decide(alerts.base(80000, 79800, 200, instrument="GOLD_MINI"))
    assert entry.accepted and gold.accepted
    expiry = old_store.position(gold.position_id).expiry
    old_store.roll(gold.position_id, expiry, Decimal(80100), Decimal(80300),
                   datetime(2026, 1, 28, 5, tzinfo=UTC))
    written = {n.topic for n in old_store.recorder.select_notifications(
        before, 100, inclusive_of_start=False)}
    assert written and written <= set(FIXTURE["topics"])
