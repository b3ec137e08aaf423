"""The projection tables: kept current from the log, equal to what the log says.

Each test runs on SQLite and on Postgres. ``check_read_model`` (tests/test_api_reads.py) is
the contract every read model keeps; ``ProjectionReads`` must also answer exactly what
``EventStoreReads`` answers from the log itself.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from api.reads import EventStoreReads
from ledger.application import Ledger
from projections.reads import ProjectionReads
from projections.runner import ProjectionRunner, lag, tracked_position, wait_for
from tests.alerts import Alerts
from tests.conftest import make_config
from tests.test_api_reads import check_read_model, scenario


def same_answers(ledger: Ledger) -> None:
    tables, log = ProjectionReads(ledger), EventStoreReads(ledger)
    for name in ("default", "alpha"):
        assert tables.portfolio(name) == log.portfolio(name)
    for status in (None, "open", "partial", "closed"):
        for instrument in (None, "BANK_NIFTY", "GOLD_MINI"):
            query = {"portfolio": None, "status": status, "instrument": instrument,
                     "limit": 100}
            assert tables.positions(**query) == log.positions(**query), query
    for row in log.positions(portfolio=None, status=None, instrument=None, limit=100):
        assert tables.position(row["position_id"]) == row
    for portfolio in (None, "default", "alpha"):
        assert tables.signals(portfolio=portfolio, limit=100) == log.signals(
            portfolio=portfolio, limit=100)


@pytest.fixture
def books(open_ledger) -> Ledger:
    ledger = open_ledger(make_config("alpha"))
    scenario(lambda alert, portfolio: ledger.decide(alert, portfolio))
    return ledger


def test_projected_tables_keep_the_read_model_contract(books):
    runner = ProjectionRunner(books)
    assert runner.catch_up() > 0
    check_read_model(ProjectionReads(books))
    same_answers(books)


def test_the_runner_applies_each_batch_once_and_resumes_where_it_stopped(open_ledger):
    ledger = open_ledger(make_config("alpha"))
    a = Alerts()
    ledger.decide(a.base(52000, 51900, 100), "default")
    first = ProjectionRunner(ledger)
    first.catch_up()
    ledger.decide(a.pyramid("Long_2", 52400, 52300, 100), "default")
    ledger.decide(a.mark(52800, 100), "default")
    # A second runner (another instance) resumes from the tables, not from the start.
    second = ProjectionRunner(ledger)
    assert second.catch_up() == lag(ledger).head - first.projector.position
    assert second.resumes == 1
    # The first notices the position moved under it and resumes rather than reapplying.
    ledger.decide(a.exit("Long_2", 52700), "default")
    first.catch_up()
    assert first.resumes == 2
    assert tracked_position(ledger) == lag(ledger).head
    same_answers(ledger)


def test_batches_end_between_decisions(open_ledger):
    config = make_config("alpha")
    ledger = open_ledger(replace(config, limits=replace(config.limits,
                                                        projection_batch_events=1)))
    scenario(lambda alert, portfolio: ledger.decide(alert, portfolio))
    runner = ProjectionRunner(ledger)
    positions = []
    while runner.step():
        positions.append(tracked_position(ledger))
    head = lag(ledger).head
    assert positions[-1] == head
    # Every batch ended on a decision's last event: fewer batches than events.
    assert len(positions) < head
    same_answers(ledger)


def test_lag_and_waiting_for_a_log_position(books):
    behind = lag(books)
    assert behind.events == behind.head > 0 and behind.seconds >= 0
    assert not wait_for(books, behind.head, timeout_s=0.05)
    ProjectionRunner(books).catch_up()
    assert lag(books).events == 0 and lag(books).seconds == 0
    assert wait_for(books, behind.head, timeout_s=0.05)
