"""The first two layers of dedupe, in front of the store's receipt (the third layer, and the
only one correctness rests on: docs/ARCHITECTURE.md, "Exactly once per signal").

1. In this process: one lock per fingerprint, so a redelivery arriving while this process
   decides the first delivery waits for it.
2. Across instances (Redis mode only): the coordinator's signal lock on the fingerprint, so
   a redelivery on another instance waits too.

Either wait is bounded (``wait_ms``, and never past the request's deadline), and every
failure means *proceed*: the waiter then finds the receipt and answers with the first
decision, instead of racing the first delivery into a version conflict and a retry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from coordination.signal_lock import SignalLocks


class Dedupe:
    def __init__(self, locks: SignalLocks | None, mode: Callable[[], str]) -> None:
        """``locks``: the Redis signal locks (None without Redis); ``mode``: the coordination
        mode now (the Redis layer is skipped outside redis mode: no waiting on a dead
        socket)."""
        self.locks = locks
        self.mode = mode
        self._guard = threading.Lock()
        # fingerprint -> (lock, holders and waiters): bounded by the requests in flight
        self._local: dict[str, tuple[threading.Lock, int]] = {}
        # metrics
        self.local_waits = 0
        self.local_waits_timed_out = 0

    @contextmanager
    def turn(self, fingerprint: str, wait_ms: int) -> Iterator[None]:
        """Decide ``fingerprint`` after any delivery of it already being decided (bounded)."""
        if wait_ms <= 0:
            yield
            return
        lock = self._enter(fingerprint)
        contended = lock.locked()
        acquired = lock.acquire(timeout=wait_ms / 1000)
        if contended:
            self.local_waits += 1
            if not acquired:
                self.local_waits_timed_out += 1
        try:
            if self.locks is not None and self.mode() == "redis":
                with self.locks.hold(fingerprint, wait_ms):
                    yield
            else:
                yield
        finally:
            if acquired:
                lock.release()
            self._leave(fingerprint)

    def _enter(self, fingerprint: str) -> threading.Lock:
        with self._guard:
            lock, users = self._local.get(fingerprint, (threading.Lock(), 0))
            self._local[fingerprint] = (lock, users + 1)
            return lock

    def _leave(self, fingerprint: str) -> None:
        with self._guard:
            lock, users = self._local[fingerprint]
            if users == 1:
                del self._local[fingerprint]
            else:
                self._local[fingerprint] = (lock, users - 1)
