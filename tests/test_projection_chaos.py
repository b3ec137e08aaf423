"""The projection runner and rebuild under abuse, on SQLite and on Postgres.

- a `ledger project` process SIGKILLed mid-stream and restarted, again and again, while
  signals keep coming: no event is applied twice or skipped;
- rebuilds (all tables, then some) while a writer decides nonstop, a live runner projects
  and a reader polls: the reader never sees a missing or partial table;
- two runners stepping at once: the compare-and-set on the tracking row keeps every batch
  applied once; the projections' session lock admits one holder and passes on when it dies.

Each ends with ``verify`` (the tables equal a replay of the log) and with counts taken from
what the test itself delivered (``tests.projection_load.Tally``), not from the projector.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.application import Ledger
from projections.projector import ends_transaction
from projections.read_model import ProjectionReads
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner, lag, tracked_position
from projections.verify import verify
from tests.projection_load import (
    PORTFOLIOS,
    Trader,
    assert_tables_match,
    config_for,
    write_config,
)

POLL_S = 0.002  # how often a test looks at the tracking position
WAIT_S = 60  # bound on any wait for a process or thread to get somewhere


def _until(condition, timeout_s: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)


def _at_boundary(ledger: Ledger, position: int) -> bool:
    """The tracked position ends a transaction of the log (or is the start)."""
    if position == 0:
        return True
    (n,) = ledger.recorder.select_notifications(position, 1)
    return n.id == position and ends_transaction(n)


# --- 1. SIGKILL the runner mid-stream, restart, repeat ------------------------------------


def _project(store_url: str, config: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LEDGER_DATABASE_URL": store_url, "LEDGER_CONFIG": str(config)}
    return subprocess.Popen([sys.executable, "-m", "service.cli", "project", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_runner_killed_mid_stream_and_restarted_applies_every_event_once(
        open_ledger, tmp_path, store_url):
    config_path = write_config(tmp_path, 20, projection_poll_ms=5,
                               projection_standby_poll_ms=50)
    ledger = open_ledger(config_for(config_path))
    trader = Trader(ledger, seed=11)
    trader.run(1000)
    rng = random.Random(5)
    killed_mid_stream = 0
    for round_ in range(6):
        start = tracked_position(ledger)
        head = lag(ledger).head
        # Kill somewhere in the first 70 % of what is left (a different point each round).
        target = start + max(1, int((head - start) * rng.uniform(0.05, 0.7)))
        runner = _project(store_url, config_path)
        try:
            _until(lambda t=target, r=runner: tracked_position(ledger) >= t or r.poll() is not None,
                   what=f"round {round_}: the runner reaching {target}")
            assert runner.poll() is None, runner.stderr.read().decode()
            runner.send_signal(signal.SIGKILL)
            runner.wait(WAIT_S)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait(WAIT_S)
            runner.stdout.close()
            runner.stderr.close()
        at = tracked_position(ledger)
        killed_mid_stream += start < at < head
        # What the dead runner committed is whole: a transaction boundary, equal to the log.
        assert _at_boundary(ledger, at), at
        position, diffs = verify(ledger)
        assert (position, diffs) == (at, []), diffs[:10]
        trader.run(rng.randint(20, 120))  # the log goes on while no runner is up
    assert killed_mid_stream >= 4  # the kills really landed mid-stream
    once = subprocess.run([sys.executable, "-m", "service.cli", "project", "--once"],
                          env={**os.environ, "LEDGER_DATABASE_URL": store_url,
                               "LEDGER_CONFIG": str(config_path)},
                          capture_output=True, timeout=WAIT_S, check=False)
    assert once.returncode == 0, once.stderr.decode()
    head = lag(ledger).head
    assert tracked_position(ledger) == head
    assert verify(ledger) == (head, [])
    assert_tables_match(ledger, trader.tally)
    assert len(trader.tally.fingerprints) > 900 and trader.tally.duplicates > 50


# --- 2. rebuild while a writer appends, a runner projects and a reader reads ---------------


class Background:
    """Threads that run until stopped, collecting every exception they meet."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []

    def spawn(self, name: str, loop) -> None:
        def body() -> None:
            try:
                while not self.stop.is_set():
                    loop()
            except Exception as e:
                self.errors.append(f"{name}: {type(e).__name__}: {e}")

        thread = threading.Thread(target=body, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(WAIT_S)
            assert not thread.is_alive(), thread.name


class Reader:
    """Polls the tables on its own connection; remembers what it saw to catch regressions."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.reads = ProjectionReads(ledger)
        self.signals = 0  # most signal_log rows seen so far
        self.portfolios: set[str] = set()
        self.polls = 0
        self.problems: list[str] = []

    def poll(self) -> None:
        with self.ledger.transaction() as cursor:
            cursor.execute("SELECT COUNT(*) FROM signal_log")
            row = cursor.fetchone()
            count = int(next(iter(row.values())) if isinstance(row, dict) else row[0])
            cursor.execute("SELECT portfolio FROM portfolio_state")
            names = {r["portfolio"] if isinstance(r, dict) else r[0] for r in cursor.fetchall()}
            cursor.execute("SELECT COUNT(*) FROM portfolio_positions")
            cursor.fetchone()
        if count < self.signals:
            self.problems.append(f"signal_log went from {self.signals} to {count} rows")
        if not self.portfolios <= names:
            self.problems.append(f"portfolio_state lost {sorted(self.portfolios - names)}")
        self.signals, self.portfolios = max(count, self.signals), self.portfolios | names
        # The HTTP read model: several tables in one transaction.
        for name in self.portfolios:
            self.reads.portfolio(name)
        self.polls += 1


def test_rebuild_while_a_writer_appends_and_a_reader_reads(open_ledger, tmp_path):
    config = config_for(write_config(tmp_path, 20, projection_poll_ms=5,
                                     projection_rebuild_batch_events=200))
    main = open_ledger(config)
    trader = Trader(open_ledger(config), seed=3)
    trader.run(400)  # something to rebuild from
    runner = ProjectionRunner(open_ledger(config))
    runner.catch_up()
    reader = Reader(open_ledger(config))
    reader.poll()
    assert reader.signals > 0 and reader.portfolios == set(PORTFOLIOS)

    background = Background()
    background.spawn("writer", trader.one)
    background.spawn("reader", reader.poll)
    runner.start()
    try:
        _until(lambda: len(trader.tally.fingerprints) > 450, what="the writer")
        before = (reader.polls, len(trader.tally.fingerprints))
        everything = rebuild(main)
        assert everything.events >= everything.position > 0
        some = rebuild(main, ["signal_log", "portfolio_positions"])
        assert some.tables == ("portfolio_positions", "signal_log")  # TABLES order
        _until(lambda: reader.polls > before[0] + 5, what="the reader")
        # The writer kept deciding through both rebuilds.
        assert len(trader.tally.fingerprints) > before[1]
    finally:
        background.join()
        runner.stop()
    assert background.errors == []
    assert reader.problems == []
    runner.catch_up()
    head = lag(main).head
    assert verify(main) == (head, [])
    assert_tables_match(main, trader.tally)


# --- 4. two runners at once; leadership -----------------------------------------------------


class CountingRunner(ProjectionRunner):
    """A runner that records the notification ids of every batch it committed."""

    def __init__(self, ledger: Ledger, committed: list[tuple[int, str]], name: str):
        super().__init__(ledger)
        self.committed, self.name = committed, name
        self._read: list[int] = []

    def _batch(self, after: int, size: int) -> list[Any]:
        batch = super()._batch(after, size)
        self._read = [n.id for n in batch]
        return batch

    def step(self) -> int:
        self._read = []
        applied = super().step()
        if applied:  # committed (a batch that found the position moved returns 0)
            assert applied == len(self._read)
            self.committed.extend((i, self.name) for i in self._read)
        return applied


def _no_batch_twice(committed: list[tuple[int, str]], ledger: Ledger) -> None:
    """The committed batches tile the log: each event in exactly one, none left out."""
    ids = [i for i, _ in committed]
    twice = sorted(i for i, n in Counter(ids).items() if n > 1)
    assert twice == [], f"applied twice: {twice[:20]}"
    log = [n.id for n in ledger.recorder.select_notifications(0, 10**6,
                                                              inclusive_of_start=False)]
    assert sorted(ids) == log


def test_two_runners_stepping_alternately_and_at_once_apply_each_batch_once(
        open_ledger, tmp_path):
    config = config_for(write_config(tmp_path, 20))
    writer = open_ledger(config)
    trader = Trader(writer, seed=8)
    committed: list[tuple[int, str]] = []
    a = CountingRunner(open_ledger(config), committed, "a")
    b = CountingRunner(open_ledger(config), committed, "b")
    # Alternately, in one thread: each must notice the other moved the position.
    for _ in range(15):
        trader.run(10)
        a.step()
        b.step()
        b.step()
        a.step()
    assert a.resumes > 1 and b.resumes > 1
    # At once, in threads, while the writer decides.
    background = Background()
    for runner in (a, b):
        background.spawn(runner.name, runner.step)
    try:
        trader.run(300)
    finally:
        background.join()
    assert background.errors == []
    a.catch_up()
    b.catch_up()
    head = lag(writer).head
    assert tracked_position(writer) == head
    _no_batch_twice(committed, writer)
    assert {name for *_, name in committed} == {"a", "b"}
    assert verify(writer) == (head, [])
    assert_tables_match(writer, trader.tally)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_leadership_admits_one_holder_and_passes_on_when_its_connection_closes(open_ledger):
    ledgers = [open_ledger() for _ in range(3)]
    first, second, third = (ledger.dialect.session_lock("projections") for ledger in ledgers)
    assert first.try_acquire() and first.held and first.check()
    assert not second.try_acquire() and not third.try_acquire()
    assert first.try_acquire()  # holding it already
    # The holder's connection dies (a killed process): the server drops its lock.
    pid = first._conn.info.backend_pid
    with psycopg.connect(ledgers[1].store.url.split("?")[0], autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _until(lambda: second.try_acquire(), timeout_s=10, what="the standby taking over")
    assert not first.check() and not first.held
    assert not third.try_acquire() and not first.try_acquire()
    # A clean release passes it on too.
    second.release()
    _until(lambda: third.try_acquire(), timeout_s=10, what="the next standby")
    assert not second.try_acquire()
    third.release()
