"""Run the synchronous ledger from the event loop: a bounded thread pool, bounded waits.

Each call has a deadline. A call still queued at its deadline is withdrawn and never runs; a
call already running is never interrupted: a decision that has started completes and commits
(or not) as one transaction, and only its caller stops waiting. A retry of that signal is then
answered from the store as a duplicate, which is why giving up is safe.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Overloaded(RuntimeError):
    """More calls are waiting than the queue bound allows; nothing was started."""


class DeadlineExceeded(TimeoutError):
    """The caller stopped waiting. ``started``: the call may still complete in its thread."""

    def __init__(self, started: bool) -> None:
        super().__init__("deadline exceeded " + ("while running" if started else "in queue"))
        self.started = started


class WorkerPool:
    """``threads`` workers and at most ``queue_depth_max`` calls waiting for one."""

    def __init__(self, name: str, threads: int, queue_depth_max: int) -> None:
        self.name = name
        self.threads = threads
        self.queue_depth_max = queue_depth_max
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._guard = threading.Condition()
        self._outstanding = 0  # submitted and not yet finished (queued + running)

    @property
    def outstanding(self) -> int:
        return self._outstanding

    async def run(self, fn: Callable[[], T], *, timeout_s: float) -> T:
        """``fn()`` in a worker thread; raise DeadlineExceeded after ``timeout_s``."""
        with self._guard:
            if self._outstanding >= self.threads + self.queue_depth_max:
                raise Overloaded(f"{self.name}: {self._outstanding} calls outstanding")
            self._outstanding += 1
        try:
            # In the caller's context: what the thread logs names the caller's request.
            future: Future[T] = self._executor.submit(contextvars.copy_context().run, fn)
        except RuntimeError:  # shut down: treat as an overload, nothing was started
            self._finished(None)
            raise Overloaded(f"{self.name}: shutting down") from None
        future.add_done_callback(self._finished)
        try:
            # Cancelling the asyncio wrapper cancels the call only if it has not started.
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except TimeoutError:
            # cancel() succeeds only for a call no thread has picked up yet.
            raise DeadlineExceeded(started=not future.cancel()) from None

    def _finished(self, _future: object) -> None:
        with self._guard:
            self._outstanding -= 1
            self._guard.notify_all()

    def shutdown(self, timeout_s: float) -> bool:
        """Withdraw queued calls and wait up to ``timeout_s`` for running ones to finish.

        False if some are still running: against a dead store a call can retry for many
        seconds. Closing the store under it then makes it fail fast, and since a decision is
        one transaction, failing mid-way commits nothing.
        """
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._guard:
            return self._guard.wait_for(lambda: self._outstanding == 0, timeout=timeout_s)
