"""Eight processes deliver the same 200 signals, each in its own random order, to one Postgres
store at once. Each signal is decided exactly once, every delivery gets that decision, and the
books equal a serial run of the signals in the order their decisions committed: concurrent
deciding is serializable.
"""

from __future__ import annotations

import multiprocessing
import random
from collections import defaultdict
from typing import Any

import pytest

import migrations
from ledger.application import Ledger
from ledger.domain import SignalRecord
from tests.alerts import Alerts
from tests.conftest import make_config

WORKERS = 8
SIGNALS = 200


def trading_day(count: int) -> list[dict[str, Any]]:
    """A realistic stream: entries, bars, pyramids and exits on two instruments."""
    alerts = Alerts(start="2025-11-28T03:45:00Z", step_s=20)
    prices = {"BANK_NIFTY": 52000, "GOLD_MINI": 72000}
    atr = {"BANK_NIFTY": 100, "GOLD_MINI": 300}
    rng = random.Random(7)
    out: list[dict[str, Any]] = []
    while len(out) < count:
        name = rng.choice(sorted(prices))
        p, a = prices[name], atr[name]
        step = rng.random()
        if step < 0.15:
            out.append(alerts.base(p, p - a, a, er="0.9", instrument=name))
        elif step < 0.35:
            out.append(alerts.pyramid(f"Long_{rng.randint(2, 4)}", p, p - a, a, instrument=name))
        elif step < 0.45:
            out.append(alerts.exit(rng.choice(["Long_1", "Long_2", "ALL"]), p, instrument=name))
        else:
            prices[name] = p + rng.choice([-1, 1, 1, 2]) * a // 2
            out.append(alerts.mark(prices[name], a, instrument=name))
    return out


def deliver_all(url: str, seed: int, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One worker process: deliver every alert, in this worker's own random order."""
    order = list(alerts)
    random.Random(seed).shuffle(order)
    with Ledger(make_config(), url, instance_id=f"worker-{seed}") as ledger:
        return [ledger.decide(alert).as_dict() for alert in order]


def without_clock(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("decided_at", "duplicate", "log_position")}


@pytest.mark.postgres
def test_eight_processes_decide_each_signal_exactly_once(new_store_url):
    url = new_store_url("postgres")
    alerts = trading_day(SIGNALS)
    with Ledger(make_config(), url) as ledger:
        migrations.migrate(ledger)

    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(WORKERS) as pool:
        results = pool.starmap(deliver_all, [(url, seed, alerts) for seed in range(WORKERS)])

    by_fingerprint: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for answers in results:
        for answer in answers:
            by_fingerprint[answer["fingerprint"]].append(answer)
    assert len(by_fingerprint) == SIGNALS
    for answers in by_fingerprint.values():
        assert len(answers) == WORKERS
        assert sum(not a["duplicate"] for a in answers) == 1  # decided exactly once
        assert len({repr(without_clock(a)) for a in answers}) == 1  # everyone got that decision

    with Ledger(make_config(), url) as ledger:
        receipts = [n for n in ledger.recorder.select_notifications(1, 100_000)
                    if n.topic.endswith("SignalDecided")]
        assert len(receipts) == SIGNALS
        deliveries = {ledger.repository.get(SignalRecord.create_id(fp)).deliveries
                      for fp in by_fingerprint}
        assert deliveries == {WORKERS}
        commit_order = [ledger.repository.get(n.originator_id).fingerprint for n in receipts]
        concurrent_books = ledger.portfolio_summary()
        opened = sorted({pid for answers in results for a in answers for pid in a["position_ids"]})
        concurrent_positions = {pid: ledger.position(pid).state() for pid in opened}

    # The same signals, one at a time, in the order the concurrent decisions committed.
    alert_of = {}
    with Ledger(make_config(), new_store_url("postgres")) as serial:
        migrations.migrate(serial)
        for alert in alerts:
            alert_of[serial_fingerprint(serial, alert)] = alert
        serial_answers = {fp: serial.decide(alert_of[fp]).as_dict() for fp in commit_order}
        assert serial.portfolio_summary() == concurrent_books
        assert {pid: serial.position(pid).state() for pid in opened} == concurrent_positions
    for fp, answers in by_fingerprint.items():
        assert without_clock(serial_answers[fp]) == without_clock(answers[0])


def serial_fingerprint(ledger: Ledger, alert: dict[str, Any]) -> str:
    from ledger.signals import parse_signal

    return parse_signal(alert, "default", ledger.config).fingerprint

