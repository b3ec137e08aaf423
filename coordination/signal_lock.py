"""Signal locks: the second layer of dedupe, so two instances rarely decide one alert at once.

The first layer, and the one correctness rests on, is the store's receipt: a signal's
``SignalDecided`` is written once, ever (docs/ARCHITECTURE.md, "Exactly once per signal").
This lock only saves work: a redelivery that arrives while the first delivery is being
decided waits for it, then finds the receipt instead of racing it to a conflict and a retry.
So every failure here means *proceed*: a lock still held after ``wait_ms`` (its holder may be
slow or dead), or Redis unreachable.

Release compares the random token first (Lua), so a holder whose lock expired never frees a
lock that has since passed to another.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import redis

from coordination.lease import assert_bounded

log = logging.getLogger("ledger.coordination")

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

Outcome = Literal["held", "waited_out", "redis_down"]


@dataclass
class Hold:
    """How a ``hold`` went: the lock taken, given up on after ``wait_ms``, or Redis down."""

    fingerprint: str
    outcome: Outcome
    waited_ms: int


class SignalLocks:
    """One short lock per signal fingerprint under ``<ns>:signal:``."""

    def __init__(self, client: redis.Redis, ns: str, ttl_ms: int, poll_ms: int = 10) -> None:
        if ttl_ms <= 0 or poll_ms <= 0:
            raise ValueError(f"ttl_ms and poll_ms must be positive, not {ttl_ms}, {poll_ms}")
        assert_bounded(client)
        self.client = client
        self.ns = ns
        self.ttl_ms = ttl_ms
        self.poll_ms = poll_ms
        self._release: Any = client.register_script(_RELEASE)
        self._counts_lock = threading.Lock()
        # metrics
        self.acquired = 0
        self.waited_out = 0
        self.redis_errors = 0

    def key(self, fingerprint: str) -> str:
        return f"{self.ns}:signal:{fingerprint}"

    @contextlib.contextmanager
    def hold(self, fingerprint: str, wait_ms: int) -> Iterator[Hold]:
        """Hold the signal's lock for the block; wait at most ``wait_ms`` for another holder.

        Never raises for the lock's sake: after ``wait_ms`` or on a Redis error the block
        runs anyway (``Hold.outcome`` says which), since the store's receipt decides.
        """
        if wait_ms < 0:
            raise ValueError(f"wait_ms must not be negative, not {wait_ms}")
        key = self.key(fingerprint)
        token = secrets.token_hex(16)
        started = time.monotonic()
        deadline = started + wait_ms / 1000
        outcome: Outcome
        try:
            while True:
                if self.client.set(key, token, nx=True, px=self.ttl_ms):
                    outcome = "held"
                    break
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    outcome = "waited_out"
                    break
                time.sleep(min(self.poll_ms / 1000, remaining_s))
        except redis.RedisError as error:
            outcome = "redis_down"
            log.warning("signal lock for %s skipped, Redis failed: %s", fingerprint, error)
        self._count(outcome)
        waited_ms = int((time.monotonic() - started) * 1000)
        try:
            yield Hold(fingerprint, outcome, waited_ms)
        finally:
            if outcome == "held":
                try:
                    self._release(keys=[key], args=[token])
                except redis.RedisError as error:  # it expires after ttl_ms on its own
                    self._count("redis_down")
                    log.warning("signal lock for %s not released: %s", fingerprint, error)

    def _count(self, outcome: Outcome) -> None:
        with self._counts_lock:
            if outcome == "held":
                self.acquired += 1
            elif outcome == "waited_out":
                self.waited_out += 1
            else:
                self.redis_errors += 1
