"""Signal locks: a second delivery waits for the first, but never past ``wait_ms``.

Against the module's own redis-server. Every failure of the lock means *proceed*: the
store's receipt, not this lock, keeps a signal from being decided twice.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from coordination import SignalLocks, redis_client
from tests.coordination_servers import RedisServer, running_redis

TTL_MS = 5000
WAIT_MS = 300
HOLD_S = 0.15  # how long the first holder keeps the lock


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def locks(server: RedisServer) -> Iterator[SignalLocks]:
    client = redis_client(server.url, 200)
    yield SignalLocks(client, f"test-{uuid.uuid4().hex[:8]}", TTL_MS)
    client.close()


def test_the_second_holder_waits_for_the_first_to_release(locks):
    fingerprint = uuid.uuid4().hex
    first_held = threading.Event()
    order: list[str] = []

    def first() -> None:
        with locks.hold(fingerprint, WAIT_MS) as hold:
            assert hold.outcome == "held"
            first_held.set()
            time.sleep(HOLD_S)
            order.append("first done")

    holder = threading.Thread(target=first)
    holder.start()
    assert first_held.wait(2)
    with locks.hold(fingerprint, 2000) as hold:
        order.append("second in")
        assert hold.outcome == "held"
        assert hold.waited_ms >= HOLD_S * 1000 * 0.5
        assert hold.waited_ms < 2000
    holder.join(2)
    assert order == ["first done", "second in"]
    assert locks.client.exists(locks.key(fingerprint)) == 0  # released, not left to expire


def test_a_lock_never_released_is_waited_out_after_wait_ms(locks):
    fingerprint = uuid.uuid4().hex
    locks.client.set(locks.key(fingerprint), "a crashed holder", px=TTL_MS)
    started = time.monotonic()
    with locks.hold(fingerprint, WAIT_MS) as hold:
        waited_s = time.monotonic() - started
        assert hold.outcome == "waited_out"
    assert WAIT_MS / 1000 <= waited_s < WAIT_MS / 1000 + 0.2
    assert locks.waited_out == 1
    # waiting out someone's lock never frees it: its owner's token is still there
    assert locks.client.get(locks.key(fingerprint)) == b"a crashed holder"


def test_an_expired_holder_does_not_release_the_next_holders_lock(locks):
    fingerprint = uuid.uuid4().hex
    key = locks.key(fingerprint)
    short = SignalLocks(locks.client, locks.ns, ttl_ms=50)
    first = short.hold(fingerprint, 0)
    assert first.__enter__().outcome == "held"
    time.sleep(0.08)  # the first holder's lock expires while it still works
    second = locks.hold(fingerprint, 0)
    assert second.__enter__().outcome == "held"
    token = locks.client.get(key)
    first.__exit__(None, None, None)  # the slow first holder finishes: compare-and-delete
    assert locks.client.get(key) == token
    second.__exit__(None, None, None)
    assert locks.client.exists(key) == 0


def test_different_signals_do_not_wait_for_each_other(locks):
    with locks.hold("one", WAIT_MS) as a, locks.hold("two", WAIT_MS) as b:
        assert (a.outcome, b.outcome) == ("held", "held")
        assert b.waited_ms < 50


def test_redis_down_means_proceed_without_the_lock(tmp_path):
    doomed = RedisServer(tmp_path).start()
    client = redis_client(doomed.url, 100)
    locks = SignalLocks(client, "test-down", TTL_MS)
    doomed.kill()
    started = time.monotonic()
    ran = False
    with locks.hold("x", WAIT_MS) as hold:
        ran = True
        assert hold.outcome == "redis_down"
    assert ran
    assert time.monotonic() - started < 0.5
    assert locks.redis_errors == 1
    client.close()


def test_an_unbounded_client_is_refused(server):
    unbounded = redis.Redis.from_url(server.url)
    with pytest.raises(ValueError, match="socket_timeout"):
        SignalLocks(unbounded, "test", TTL_MS)
    unbounded.close()
