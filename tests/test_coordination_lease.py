"""The Redis lease: SET NX PX to take it, compare-and-set to renew or release it.

Against a redis-server of the module's own (never the machine's Redis).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from coordination.lease import RedisLease, redis_client
from tests.coordination_servers import RedisServer, running_redis, until

SOCKET_TIMEOUT_MS = 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_client(server.url, SOCKET_TIMEOUT_MS)
    yield client
    client.close()


@pytest.fixture
def key() -> str:
    return f"test:leader:{uuid.uuid4().hex[:8]}"


def test_only_one_owner_takes_the_lease(client, key):
    a = RedisLease(client, key, "a", 1000)
    b = RedisLease(client, key, "b", 1000)
    assert a.try_acquire()
    assert not b.try_acquire()
    assert a.holder() == "a"


def test_release_by_a_non_owner_does_nothing(client, key):
    a = RedisLease(client, key, "a", 1000)
    b = RedisLease(client, key, "b", 1000)
    assert a.try_acquire()
    assert not b.release()
    assert not b.renew()
    assert a.holder() == "a"
    assert a.release()
    assert a.holder() is None
    assert b.try_acquire()


def test_renew_after_expiry_fails(client, key):
    a = RedisLease(client, key, "a", 50)
    assert a.try_acquire()
    assert a.renew()
    until(lambda: a.holder() is None, 1, "the lease to expire")
    assert not a.renew()
    assert a.holder() is None  # a failed renew never recreates the key


def test_renew_after_another_took_over_fails_and_leaves_theirs(client, key):
    a = RedisLease(client, key, "a", 50)
    b = RedisLease(client, key, "b", 60_000)
    assert a.try_acquire()
    until(b.try_acquire, 1, "b to take the expired lease")
    assert not a.renew()
    assert not a.release()
    assert b.holder() == "b"
    assert client.pttl(key) > 50_000


def test_renew_extends_the_ttl(client, key):
    a = RedisLease(client, key, "a", 300)
    assert a.try_acquire()
    time.sleep(0.15)
    assert a.renew()
    assert client.pttl(key) > 200


def test_release_tells_followers_on_the_release_channel(client, key):
    a = RedisLease(client, key, "a", 1000)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(a.channel)
    try:
        assert a.try_acquire()
        assert a.release()
        message = None
        deadline = time.monotonic() + 1
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
        assert message is not None and message["data"] == b"a"
        assert a.channel == f"{key}:released"
        # a quiet release (a follower handing back a lease it could not use) says nothing
        assert a.try_acquire()
        assert a.release(publish=False)
        assert pubsub.get_message(timeout=0.2) is None
    finally:
        pubsub.close()


def test_an_unbounded_client_is_refused(server, key):
    unbounded = redis.Redis.from_url(server.url)
    try:
        with pytest.raises(ValueError, match="socket_timeout"):
            RedisLease(unbounded, key, "a", 1000)
    finally:
        unbounded.close()


def test_a_dead_server_fails_within_the_socket_timeout(tmp_path):
    doomed = RedisServer(tmp_path).start()
    client = redis_client(doomed.url, SOCKET_TIMEOUT_MS)
    lease = RedisLease(client, "test:doomed", "a", 1000)
    assert lease.try_acquire()
    doomed.kill()
    started = time.monotonic()
    with pytest.raises(redis.RedisError):
        lease.renew()
    assert time.monotonic() - started < 2 * SOCKET_TIMEOUT_MS / 1000
    client.close()
