"""Random signal histories, the runner stepped at random points with random batch sizes:
the tables always equal a replay of the log, and answer what the log answers.

Each example gets a fresh store (SQLite file / Postgres schema); ``same_answers`` compares
``ProjectionReads`` with ``EventStoreReads`` for every query the HTTP API makes.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import migrations
from ledger.application import Ledger
from ledger.signals import InvalidSignal
from projections.runner import ProjectionRunner, lag, tracked_position
from projections.verify import verify
from tests.alerts import Alerts
from tests.conftest import make_config
from tests.test_projections import same_answers

PRICES = {"BANK_NIFTY": 52000, "GOLD_MINI": 72000}
ATRS = {"BANK_NIFTY": 100, "GOLD_MINI": 300}

instrument = st.sampled_from(sorted(PRICES))
portfolio = st.sampled_from(["default", "alpha"])
signal = st.one_of(
    st.tuples(st.just("base"), instrument, portfolio, st.integers(1, 3)),
    st.tuples(st.just("pyramid"), instrument, portfolio, st.integers(2, 5)),
    st.tuples(st.just("mark"), instrument, portfolio, st.integers(-3, 4)),
    st.tuples(st.just("exit"), instrument, portfolio, st.sampled_from([1, 2, 3, 0])),
    st.tuples(st.just("again"), instrument, portfolio, st.integers(0, 1000)),
)
action = st.one_of(signal, signal, st.tuples(st.just("step"), st.integers(1, 4)))


def _alert(alerts: Alerts, prices: dict[str, int], kind: str, name: str, n: int) -> dict:
    p, atr = prices[name], ATRS[name]
    if kind == "base":
        return alerts.base(p, p - n * atr, atr, instrument=name)
    if kind == "pyramid":
        return alerts.pyramid(f"Long_{n}", p, p - atr, atr, instrument=name)
    if kind == "exit":
        return alerts.exit(f"Long_{n}" if n else "ALL", p, instrument=name)
    prices[name] = max(1000, p + n * atr // 2)
    return alerts.mark(prices[name], atr, instrument=name)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_tables_equal_the_log_whatever_the_batches_and_steps(backend, new_store_url):
    @settings(max_examples=150 if backend == "sqlite" else 60, deadline=None,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.function_scoped_fixture])
    @given(actions=st.lists(action, min_size=1, max_size=40),
           batch=st.integers(1, 50))
    def history(actions, batch):
        config = make_config("alpha")
        config = replace(config, limits=replace(config.limits, projection_batch_events=batch))
        with Ledger(config, new_store_url(backend)) as ledger:
            migrations.migrate(ledger)
            runner = ProjectionRunner(ledger)
            alerts, prices, sent = Alerts(), dict(PRICES), []
            for act in actions:
                if act[0] == "step":
                    for _ in range(act[1]):
                        runner.step()
                    # Every step leaves the tables equal to the log at their position.
                    position, diffs = verify(ledger)
                    assert diffs == [] and position == tracked_position(ledger)
                    continue
                kind, name, book, n = act
                if kind == "again":
                    if not sent:
                        continue
                    alert, book = sent[n % len(sent)]
                else:
                    alert = _alert(alerts, prices, kind, name, n)
                    sent.append((alert, book))
                try:
                    ledger.decide(alert, book)
                except InvalidSignal:
                    sent.pop()
            runner.catch_up()
            assert verify(ledger) == (lag(ledger).head, [])
            same_answers(ledger)

    history()
