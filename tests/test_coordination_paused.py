"""A paused leader (SIGSTOP) wakes up after another has taken over: the fence stops it.

Three worker processes (tests/coordination_worker.py) elect a leader, which writes fenced
rows into ``scratch`` nonstop. We SIGSTOP it past its term, wait for another to lead and
write, then SIGCONT it: its next write must be refused (``Fenced``), it must step down, and
in the rows, ordered as inserted, no row of the old epoch may follow one of the new.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from coordination import CoordinationSettings
from tests.coordination_servers import RedisServer, running_redis, throwaway_database, until

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 3
START_S = 15  # bound on the workers starting and one of them writing as leader
FAILOVER_S_MAX = 3  # another leads (and writes) this soon after the pause
FENCED_S_MAX = 3  # the woken leader is fenced this soon after SIGCONT
EXIT_S = 5  # bound on a worker exiting after SIGTERM
TTL_S = CoordinationSettings().lease_ttl_ms / 1000


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def conninfo() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


class Worker:
    """One worker process and the events it has printed so far."""

    def __init__(self, conninfo: str, redis_url: str, name: str, instance_id: str) -> None:
        self.instance_id = instance_id
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.coordination_worker", conninfo, redis_url, name,
             instance_id], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.events.append(json.loads(line))

    def seen(self, event: str, **match: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["event"] == event
                    and all(e.get(k) == v for k, v in match.items())]

    def last_epoch_led(self) -> int | None:
        led = self.seen("leader")
        return led[-1]["epoch"] if led else None

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def end(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(EXIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(EXIT_S)
                return None
        self._reader.join(EXIT_S)
        return self.process.returncode


def test_a_paused_leader_is_fenced_when_it_wakes_and_steps_down(redis_server, conninfo):
    name = f"paused-{uuid.uuid4().hex[:8]}"
    workers = [Worker(conninfo, redis_server.url, name, f"{name}-{i}") for i in range(WORKERS)]
    try:
        until(lambda: any(w.seen("wrote") for w in workers), START_S, "a leader writing")
        (old,) = [w for w in workers if w.seen("wrote")]
        old_epoch = old.last_epoch_led()
        assert old_epoch is not None

        old.signal(signal.SIGSTOP)
        others = [w for w in workers if w is not old]

        def new_leader_writing() -> bool:
            return any(e["epoch"] > old_epoch for w in others for e in w.seen("wrote"))

        took_s = until(new_leader_writing, FAILOVER_S_MAX, "another leader writing")
        print(f"\ntakeover from a paused leader: {took_s * 1000:.0f} ms")
        # a new term began, so the old one had run out: the paused leader is past its TTL
        assert took_s >= TTL_S / 2
        (new,) = [w for w in others if w.seen("leader")]
        new_epoch = new.last_epoch_led()
        assert new_epoch is not None and new_epoch > old_epoch

        old.signal(signal.SIGCONT)
        until(lambda: old.seen("fenced"), FENCED_S_MAX, "the woken leader to be fenced")
        (fenced,) = old.seen("fenced")
        assert fenced["epoch"] == old_epoch
        assert fenced["current"] >= new_epoch
        assert fenced["fenced_writes"] > 0
        until(lambda: old.seen("change", kind="leader_lost", epoch=old_epoch), FENCED_S_MAX,
              "the woken leader to step down")
        assert not old.seen("leader", epoch=new_epoch)
        # Paused between two writes (most runs), the woken job is fenced on its next write;
        # paused inside one, the server ended its idle transaction (so the new term could
        # begin) and the job's retry is fenced. Either way nothing of the old epoch lands.
        print(f"paused inside a write transaction: {bool(old.seen('write_failed'))}")

        with psycopg.connect(conninfo) as conn:
            rows = conn.execute("SELECT epoch, writer FROM scratch WHERE writer LIKE %s"
                                " ORDER BY id", (f"{name}-%",)).fetchall()
        epochs = [epoch for epoch, _ in rows]
        assert epochs == sorted(epochs), "a row of an older epoch follows one of a newer"
        assert {writer for epoch, writer in rows if epoch == old_epoch} == {old.instance_id}
        assert {writer for epoch, writer in rows if epoch == new_epoch} == {new.instance_id}
    finally:
        codes = [w.end() for w in workers]
    assert codes == [0] * WORKERS, [w.process.stderr.read() for w in workers
                                    if w.process.stderr is not None]
