"""The projection tables: kept current from the log, equal to what the log says.

Each test runs on SQLite and on Postgres. ``check_read_model`` (tests/test_api_reads.py) is
the contract every read model keeps; ``ProjectionReads`` must also answer exactly what
``EventStoreReads`` answers from the log itself.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import pytest

from ledger import wire
from ledger.application import Ledger
from ledger.storage import postgres as postgres_dialect
from projections import rows
from projections.read_model import ProjectionReads
from projections.rebuild import UnknownProjection, rebuild
from projections.runner import ProjectionRunner, lag, tracked_position, wait_for
from projections.schema import TABLES
from projections.tables import TableStore
from projections.verify import verify
from tests.alerts import Alerts
from tests.conftest import make_config
from tests.oracle import EventStoreReads
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
        assert tables.statistics(portfolio=portfolio) == log.statistics(portfolio=portfolio)
    # The filters and pages the HTTP API adds (docs/API.md), on the same rows.
    signals = log.signals(portfolio=None, limit=100)
    middle = sorted(s["signal_timestamp"] for s in signals)[len(signals) // 2:][:1]
    for query in [{"decision": "rejected"}, {"signal_type": "MARKET_DATA"},
                  {"instrument": "gold_mini", "decision": "accepted"},
                  *[{"signal_from": _instant(t)} for t in middle],
                  *[{"signal_to": _instant(t)} for t in middle],
                  *[{"before": s["id"]} for s in signals[1:2]]]:
        assert tables.signals(portfolio=None, limit=100, **query) == log.signals(
            portfolio=None, limit=100, **query), query
    positions = log.positions(portfolio=None, status=None, instrument=None, limit=100)
    entered = sorted(p["entry_timestamp"] for p in positions)[len(positions) // 2:][:1]
    for query in [*[{"entered_from": _instant(t)} for t in entered],
                  *[{"entered_to": _instant(t), "status": "closed"} for t in entered],
                  *[{"before": (p["created_at"], p["position_id"])} for p in positions[1:2]]]:
        query = {"portfolio": None, "status": None, "instrument": None, "limit": 100, **query}
        assert tables.positions(**query) == log.positions(**query), query


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


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


# --- verify and rebuild --------------------------------------------------------------------


def execute(ledger: Ledger, sql: str, params: tuple = ()) -> None:
    with ledger.transaction() as cursor:
        cursor.execute(sql.replace("%s", ledger.dialect.param),
                       params)


def test_verify_passes_on_projected_tables_and_names_each_difference(books):
    ProjectionRunner(books).catch_up()
    position, diffs = verify(books)
    assert (position, diffs) == (lag(books).head, [])
    execute(books, "UPDATE portfolio_positions SET current_stop = %s WHERE position_id = %s",
            ("1", "default:BANK_NIFTY:Long_1:1"))
    execute(books, "DELETE FROM signal_log WHERE signal_type = %s", ("PYRAMID",))
    execute(books, "UPDATE trading_statistics SET trades = 7")
    _, diffs = verify(books)
    assert any(d.startswith("portfolio_positions[default:BANK_NIFTY:Long_1:1].current_stop: "
                            "stored '1'") for d in diffs), diffs
    assert sum("signal_log[" in d and "missing" in d for d in diffs) == 1, diffs
    assert any(d.startswith("trading_statistics[default].trades: stored 7") for d in diffs)


def test_a_stop_breach_shows_in_the_position_row_and_survives_a_rebuild(open_ledger):
    ledger = open_ledger()
    a = Alerts()
    base = ledger.decide(a.base(52000, 51900, 100))  # stop 51850
    ledger.decide(a.mark(52100, 100))
    runner = ProjectionRunner(ledger)
    runner.catch_up()
    assert ProjectionReads(ledger).position(base.position_id)["stop_breached_at"] is None
    bar = a.mark(51000, 100)
    ledger.decide(bar)
    ledger.decide(a.mark(50900, 100))  # breached again: the row keeps the first time
    runner.catch_up()
    row = ProjectionReads(ledger).position(base.position_id)
    assert (row["stop_breached_at"], row["status"]) == (bar["timestamp"], "open")
    assert verify(ledger) == (lag(ledger).head, [])
    rebuild(ledger)
    assert ProjectionReads(ledger).position(base.position_id) == row


def test_rebuild_of_every_table_replays_the_whole_log_and_moves_tracking(books):
    ProjectionRunner(books).catch_up()
    execute(books, "UPDATE portfolio_positions SET current_stop = %s", ("1",))
    execute(books, "DELETE FROM signal_log")
    report = rebuild(books)
    assert report.events == report.position == lag(books).head
    assert set(report.tables) == set(TABLES)
    assert verify(books)[1] == []
    same_answers(books)
    # Tables rebuilt from nothing: a never-projected store gets every table at once.
    execute(books, "DELETE FROM projection_tracking")
    for name in TABLES:
        execute(books, f"DELETE FROM {name}")
    rebuild(books)
    assert tracked_position(books) == lag(books).head and verify(books)[1] == []
    # Rebuilt twice: the copies' index names never collide with the live ones.
    rebuild(books)
    check_read_model(ProjectionReads(books))


def test_a_rebuild_in_many_batches_with_copied_signal_rows_equals_the_log(open_ledger,
                                                                          monkeypatch):
    """Batches of 3 events (on Postgres read ahead and written behind, in threads), every new
    signal row sent by COPY as text, payloads COPY must escape or cannot send as JSON text:
    the rebuilt tables still equal the log."""
    monkeypatch.setattr(postgres_dialect, "COPY_ROWS_MIN", 0)
    config = make_config("alpha")
    ledger = open_ledger(replace(config, limits=replace(config.limits,
                                                        projection_rebuild_batch_events=3)))
    scenario(lambda alert, portfolio: ledger.decide(alert, portfolio))
    a = Alerts(start="2025-11-29T04:00:00Z")
    awkward = {"text": 'tab\there, back\\slash \\N "quoted"\nnext line, ₹ ünï',
               "nested": [{"k": None, "f": 0.1, "b": True}], "huge": 2 ** 70}
    for price in (52900, 53000, 53100):
        alert = a.mark(price, 100, note=awkward)
        ledger.decide(alert, "default")
        ledger.decide(alert, "default")  # redelivered: a patch when it falls in a new batch
    report = rebuild(ledger)
    assert report.events == report.position == lag(ledger).head
    assert verify(ledger)[1] == []
    same_answers(ledger)
    stored = TableStore(ledger)
    with ledger.transaction() as cursor:
        notes = [row["payload"].get("note") for row in stored.read(cursor, TABLES["signal_log"])]
    # As JSON text: a payload's numbers read back keeping their text (0.1), not as floats.
    assert [wire.dumps(note) for note in notes].count(wire.dumps(awkward)) == 3


def test_rebuild_of_some_tables_meets_the_others_where_the_runner_left_them(books):
    runner = ProjectionRunner(books)
    runner.catch_up()
    at = tracked_position(books)
    a = Alerts(start="2025-11-28T09:00:00Z")
    books.decide(a.mark(53000, 100), "default")  # not yet projected
    execute(books, "DELETE FROM signal_log")
    report = rebuild(books, ["signal_log"])
    assert report.tables == ("signal_log",) and report.position == at
    assert tracked_position(books) == at  # the runner still owns the position
    runner.catch_up()
    assert verify(books)[1] == []
    with pytest.raises(UnknownProjection, match="no projection 'nope'"):
        rebuild(books, ["nope"])


def test_a_new_column_is_filled_for_old_events_by_a_rebuild(books, monkeypatch):
    ProjectionRunner(books).catch_up()
    kind = {"postgres": "NUMERIC", "sqlite": "TEXT"}[books.dialect.name]
    execute(books, f"ALTER TABLE portfolio_positions ADD COLUMN stop_distance {kind}")
    # The code that fills it: a column kind, and the row function computing it.
    table = TABLES["portfolio_positions"]
    monkeypatch.setitem(TABLES, "portfolio_positions", replace(
        table, columns=(*table.columns, ("stop_distance", "num"))))
    position_row = rows.position_row

    def with_distance(p, book, equity):
        return {**position_row(p, book, equity),
                "stop_distance": wire.number(p.highest_close - p.current_stop)}

    monkeypatch.setattr(rows, "position_row", with_distance)
    rebuild(books, ["portfolio_positions"])
    with books.transaction() as cursor:
        stored = TableStore(books).read(cursor, TABLES["portfolio_positions"])
    assert len(stored) == 3
    for r in stored:  # every row, from events long before the column existed
        assert r["stop_distance"] is not None
        assert Decimal(r["stop_distance"]) == (Decimal(r["highest_close"])
                                               - Decimal(r["current_stop"])) > 0
    assert verify(books)[1] == []


def test_rebuild_waits_for_a_writer_holding_the_sqlite_lock(tmp_path):
    # Found by the rebuild-under-load test: a rebuild whose first statement was a read could
    # not upgrade to the write lock while a decision was writing, and failed at once.
    import sqlite3
    import threading

    import migrations

    path = tmp_path / "held.sqlite3"
    ledger = Ledger(make_config(), f"sqlite:///{path}")
    migrations.migrate(ledger)
    ledger.decide(Alerts().base(52000, 51900, 100))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE projection_tracking SET updated_at = updated_at")
    outcome: list[object] = []
    rebuilding = threading.Thread(target=lambda: outcome.append(_attempt(rebuild, ledger)))
    rebuilding.start()
    rebuilding.join(0.3)  # the rebuild is waiting on the writer's lock now
    writer.execute("COMMIT")
    rebuilding.join(10)
    assert len(outcome) == 1 and not isinstance(outcome[0], Exception), outcome
    assert verify(ledger)[1] == []
    ledger.close()


def _attempt(f, *args):
    try:
        return f(*args)
    except Exception as e:  # reported by the assertion, with its message
        return e


def test_fractional_alert_fields_are_stored_exactly(open_ledger):
    # Found running the README's service: an alert's "er": 0.82 is a Decimal in the payload,
    # which the JSON columns could not store, and the runner retried that batch forever.
    ledger = open_ledger(make_config("alpha"))
    a = Alerts()
    # As TradingView sends them: JSON text, whose numbers the ledger reads as exact decimals.
    ledger.decide(json.dumps(a.base(52000.05, 51650.5, 350.25, er=0.82)), "default")
    ledger.decide(json.dumps(a.mark(52100.15, 349.75)), "default")
    ProjectionRunner(ledger).catch_up()
    assert lag(ledger).events == 0
    assert verify(ledger)[1] == []
    same_answers(ledger)
    (signal,) = ProjectionReads(ledger).signals(portfolio="default", limit=1)
    # Read back as the numbers they were sent as (docs/EVENTS.md: the receipt keeps `raw`).
    assert wire.dumps([signal["payload"]["price"], signal["payload"]["atr"]]) == \
        b"[52100.15,349.75]"


def test_trading_statistics_of_the_scenario(books):
    ProjectionRunner(books).catch_up()
    with books.transaction() as cursor:
        stats = {r["portfolio"]: r for r in TableStore(books).read(
            cursor, TABLES["trading_statistics"])}
    pyramid_pnl = Decimal(ProjectionReads(books).position(
        "default:BANK_NIFTY:Long_2:1")["realized_pnl"])
    assert pyramid_pnl > 0
    default = stats["default"]
    assert (default["trades"], default["winning_trades"], default["losing_trades"]) == (1, 1, 0)
    assert default["win_rate"] == "100.0000" and default["profit_factor"] is None
    assert Decimal(default["gross_profit"]) == Decimal(default["net_pnl"]) == pyramid_pnl
    assert Decimal(default["largest_win"]) == pyramid_pnl
    assert (default["signals_decided"], default["signals_accepted"],
            default["signals_rejected"], default["duplicate_deliveries"]) == (5, 4, 1, 1)
    assert Decimal(default["peak_closed_equity"]) == 5_000_000 + pyramid_pnl
    assert default["max_drawdown"] == "0.00"
    assert (stats["alpha"]["trades"], stats["alpha"]["signals_decided"]) == (0, 1)


@pytest.mark.postgres
def test_a_swap_that_fails_after_catching_up_under_the_lock_loses_nothing(
        new_store_url, monkeypatch):
    # The runner moves on while the rebuild replays; the swap catches up under the lock and
    # then fails (as when Postgres picks it as a deadlock victim). Found by the rebuild-under-
    # load test: the caught-up rows rolled back while the projector kept them as applied.
    from eventsourcing.persistence import OperationalError

    import migrations
    from projections import rebuild as rebuilding

    ledger = Ledger(make_config("alpha"), new_store_url("postgres"))
    migrations.migrate(ledger)
    scenario(lambda alert, portfolio: ledger.decide(alert, portfolio))
    runner = ProjectionRunner(ledger)
    runner.catch_up()
    later = Alerts(start="2025-11-28T09:00:00Z")
    replay, swap = rebuilding._replay, type(ledger.dialect).replace_table
    failures, armed = [], []
    lock_tracked = TableStore.lock_tracked

    def replay_then_arm(*args, **kwargs):
        replay(*args, **kwargs)
        armed.append(True)  # the next lock taken is the swap's

    def runner_moves_on_before_the_swap_locks(self, cursor):
        if armed:
            armed.clear()
            ledger.decide(later.base(72100, 71600, 400, instrument="GOLD_MINI"), "default")
            runner.catch_up()
        return lock_tracked(self, cursor)

    def swap_failing_once(*args, **kwargs):
        if not failures:
            failures.append("swap")
            raise OperationalError("deadlock detected (simulated)")
        return swap(*args, **kwargs)

    monkeypatch.setattr(rebuilding, "_replay", replay_then_arm)
    monkeypatch.setattr(TableStore, "lock_tracked", runner_moves_on_before_the_swap_locks)
    monkeypatch.setattr(type(ledger.dialect), "replace_table", swap_failing_once)
    report = rebuild(ledger, ["signal_log", "portfolio_positions"])
    assert failures == ["swap"] and report.position == lag(ledger).head
    assert verify(ledger)[1] == []
    ledger.close()
