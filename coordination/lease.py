"""The Redis lease: the quick election. Who holds the key may try to begin the term.

The lease alone never lets anyone act (Redis can lose a key on failover, a paused holder can
wake up after expiry); Postgres's term (``coordination/terms.py``) does. The lease keeps the
many followers from all hammering Postgres, and its release message lets one take over at
once when a leader stops cleanly.

Renew and release compare the stored owner before they touch the key (Lua, atomic in Redis):
a blind DEL from a holder whose lease has already passed to another would free someone
else's lease.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    if ARGV[2] ~= '' then
        redis.call('PUBLISH', ARGV[2], ARGV[1])
    end
    return 1
end
return 0
"""


def redis_client(url: str, socket_timeout_ms: int) -> redis.Redis:
    """A client whose every call (and every connect) gives up after ``socket_timeout_ms``.

    No retries: redis-py's default retries with backoff measured in seconds, longer than a
    whole lease. A failed call is the caller's signal to fall back to the database.
    """
    if socket_timeout_ms <= 0:
        raise ValueError(f"socket_timeout_ms must be positive, not {socket_timeout_ms}")
    timeout_s = socket_timeout_ms / 1000
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 0), health_check_interval=0)


def assert_bounded(client: redis.Redis) -> None:
    """Refuse a client that could wait forever on a dead server."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("socket_timeout") is None or kwargs.get("socket_connect_timeout") is None:
        raise ValueError("the Redis client needs socket_timeout and socket_connect_timeout "
                         "(use coordination.lease.redis_client)")


class RedisLease:
    """``key`` held by ``owner`` for ``ttl_ms`` at a time."""

    def __init__(self, client: redis.Redis, key: str, owner: str, ttl_ms: int) -> None:
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, not {ttl_ms}")
        assert_bounded(client)
        self.client = client
        self.key = key
        self.owner = owner
        self.ttl_ms = ttl_ms
        self.channel = f"{key}:released"
        self._renew: Any = client.register_script(_RENEW)
        self._release: Any = client.register_script(_RELEASE)

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it (SET NX PX)."""
        return bool(self.client.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend the lease by ``ttl_ms``; False if it is not (or no longer) ours."""
        return bool(self._renew(keys=[self.key], args=[self.owner, self.ttl_ms]))

    def release(self, publish: bool = True) -> bool:
        """Give the lease up if it is ours; tell the followers unless ``publish`` is False.

        No message when a follower hands back a lease it could not use (the term was still
        held): waking every other follower for that would only set them all trying in turn.
        """
        channel = self.channel if publish else ""
        return bool(self._release(keys=[self.key], args=[self.owner, channel]))

    def holder(self) -> str | None:
        """Who holds the lease now (for reports and tests)."""
        value = self.client.get(self.key)
        return None if value is None else value.decode() if isinstance(value, bytes) else value
