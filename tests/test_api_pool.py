"""The worker pool's promises: a call that misses its deadline in the queue never runs; one
that has started is never interrupted; the queue is bounded; shutdown waits only so long."""

from __future__ import annotations

import asyncio
import threading

import pytest

from api.pool import DeadlineExceeded, Overloaded, WorkerPool

SHORT_S = 0.05  # a deadline meant to pass while a call is blocked on an event
LONG_S = 10.0  # a deadline never meant to pass


def test_a_queued_call_past_its_deadline_is_withdrawn_and_a_running_one_completes():
    pool = WorkerPool("t", threads=1, queue_depth_max=4)
    release, ran = threading.Event(), []

    def blocking() -> str:
        release.wait(LONG_S)
        ran.append("blocking")
        return "done"

    async def scenario() -> None:
        first = asyncio.ensure_future(pool.run(blocking, timeout_s=SHORT_S))
        await asyncio.sleep(0)  # let it reach the thread
        with pytest.raises(DeadlineExceeded) as queued:
            await pool.run(lambda: ran.append("queued"), timeout_s=SHORT_S)
        assert queued.value.started is False
        with pytest.raises(DeadlineExceeded) as running:
            await first
        assert running.value.started is True
        release.set()

    asyncio.run(scenario())
    assert pool.shutdown(timeout_s=LONG_S)
    assert ran == ["blocking"]  # the running call finished; the queued one never ran


def test_the_queue_is_bounded():
    pool = WorkerPool("t", threads=1, queue_depth_max=1)
    release = threading.Event()

    async def scenario() -> None:
        running = asyncio.ensure_future(pool.run(lambda: release.wait(LONG_S), timeout_s=LONG_S))
        queued = asyncio.ensure_future(pool.run(lambda: None, timeout_s=LONG_S))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await pool.run(lambda: None, timeout_s=LONG_S)
        assert pool.outstanding == 2
        release.set()
        await asyncio.gather(running, queued)
        assert pool.outstanding == 0

    asyncio.run(scenario())
    pool.shutdown(timeout_s=LONG_S)


def test_shutdown_waits_for_running_calls_only_within_its_bound():
    pool = WorkerPool("t", threads=1, queue_depth_max=1)
    release = threading.Event()

    async def start() -> None:
        with pytest.raises(DeadlineExceeded):
            await pool.run(lambda: release.wait(LONG_S), timeout_s=SHORT_S)

    asyncio.run(start())
    assert pool.shutdown(timeout_s=SHORT_S) is False  # still running
    release.set()
    assert pool.shutdown(timeout_s=LONG_S) is True

    async def after() -> None:
        with pytest.raises(Overloaded):
            await pool.run(lambda: None, timeout_s=LONG_S)

    asyncio.run(after())


def test_exceptions_of_the_call_reach_the_caller():
    pool = WorkerPool("t", threads=1, queue_depth_max=1)

    def fail() -> None:
        raise LookupError("nope")

    with pytest.raises(LookupError):
        asyncio.run(pool.run(fail, timeout_s=LONG_S))
    assert pool.outstanding == 0
    pool.shutdown(timeout_s=LONG_S)
