"""The first two dedupe layers (api/dedupe.py): a redelivery that arrives while its twin is
being decided waits for it and is answered from the receipt, instead of racing it into a
version conflict. Correctness never rests on them (the receipt does): every bound gives way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from api.dedupe import Dedupe
from coordination.lease import redis_client
from coordination.signal_lock import SignalLocks
from ledger.signals import parse_signal
from tests.alerts import Alerts
from tests.coordination_servers import RedisServer, running_redis

DELIVERIES = 6  # of one signal, at once


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def storm(ledgers, gates, bodies, wait_ms: int) -> list[dict]:
    """Every body delivered DELIVERIES times at once, round-robin over the instances."""
    def deliver(n: int) -> dict:
        which = n % len(ledgers)
        body = bodies[n // DELIVERIES]
        signal = parse_signal(body, "default", ledgers[which].config)
        with gates[which].turn(signal.fingerprint, wait_ms):
            return ledgers[which].decide_signal(signal).as_dict()

    with ThreadPoolExecutor(DELIVERIES) as pool:
        return list(pool.map(deliver, range(len(bodies) * DELIVERIES)))


def test_a_redelivery_waits_for_its_twin_and_is_answered_from_the_receipt(open_ledger):
    ledger = open_ledger()
    alerts = Alerts()
    bodies = [alerts.mark(52000 + i, 100) for i in range(5)]
    answers = storm([ledger], [Dedupe(None, lambda: "single")], bodies, wait_ms=5000)
    assert ledger.conflicts_retried == 0
    for i in range(len(bodies)):
        mine = answers[i * DELIVERIES:(i + 1) * DELIVERIES]
        assert sorted(a["duplicate"] for a in mine) == [False] + [True] * (DELIVERIES - 1)
        assert len({a["fingerprint"] for a in mine}) == 1
        assert len({a["decided_at"] for a in mine}) == 1  # every one the first decision


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_instances_wait_for_each_other_through_redis(open_ledger, redis_server):
    ledgers = [open_ledger(), open_ledger()]
    gates = [Dedupe(SignalLocks(redis_client(redis_server.url, 200), "t", 5000), lambda: "redis")
             for _ in ledgers]
    alerts = Alerts()
    bodies = [alerts.mark(52000 + i, 100) for i in range(5)]
    answers = storm(ledgers, gates, bodies, wait_ms=5000)
    assert sum(ledger.conflicts_retried for ledger in ledgers) == 0
    assert sum(not a["duplicate"] for a in answers) == len(bodies)


def test_a_twin_that_takes_too_long_is_waited_out_and_the_receipt_still_decides():
    gate = Dedupe(None, lambda: "single")
    inside = threading.Event()
    release = threading.Event()

    def slow() -> None:
        with gate.turn("f" * 64, wait_ms=5000):
            inside.set()
            release.wait(5)

    first = threading.Thread(target=slow)
    first.start()
    assert inside.wait(5)
    started = time.monotonic()
    with gate.turn("f" * 64, wait_ms=100):
        waited = time.monotonic() - started
    release.set()
    first.join(5)
    assert 0.09 <= waited < 2  # gave way after wait_ms, not after the twin
    assert gate.local_waits_timed_out == 1
    assert gate._local == {}  # nothing left behind


def test_redis_outside_redis_mode_is_not_asked(redis_server):
    locks = SignalLocks(redis_client(redis_server.url, 200), "off", 5000)
    gate = Dedupe(locks, lambda: "database")
    with gate.turn("a" * 64, wait_ms=1000):
        pass
    assert locks.acquired == 0
