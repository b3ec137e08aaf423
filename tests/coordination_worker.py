"""A process that leads (or waits to) and, while leader, writes fenced rows into ``scratch``.

Run by tests/test_coordination_paused.py, which SIGSTOPs the leader. Its job deliberately
keeps writing under the epoch it began with until the fence stops it: a job that outlives
its term, which is exactly what fencing is for. One JSON object per line on stdout:

    {"event": "leader", "epoch": N}          a job begins under epoch N
    {"event": "wrote", "epoch": N, "id": I}  one fenced row committed
    {"event": "fenced", "epoch": N, "current": M, "fenced_writes": K}
    {"event": "write_failed", "error": ...}  the connection died mid-write (reconnects)
    {"event": "change", "kind": ..., "epoch": N, "mode": ...}

    python -m tests.coordination_worker CONNINFO REDIS_URL NAME INSTANCE_ID
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

import psycopg

from coordination import Change, Coordinator, Fenced
from coordination.db import close_quietly, transaction

WRITE_GAP_S = 0.02  # pause between two fenced writes of a job
LEADER_POLL_S = 0.01  # how often a follower looks whether it leads now
# A paused writer must not hold the term row's share lock for long: the server ends its
# session after this, so the next term can begin (and the stale transaction is lost).
WRITER_IDLE_IN_TRANSACTION_MS = 500


_say_lock = threading.Lock()  # the coordinator's thread speaks too: one whole line at a time


def say(**fields: Any) -> None:
    with _say_lock:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def connect(conninfo: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(conninfo, connect_timeout=2)
    conn.execute(f"SET idle_in_transaction_session_timeout = {WRITER_IDLE_IN_TRANSACTION_MS}")
    conn.execute("SET statement_timeout = 2000")
    conn.commit()
    return conn


def main(conninfo: str, redis_url: str, name: str, instance_id: str) -> int:
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    coordinator = Coordinator(conninfo=conninfo, redis_url=redis_url, name=name,
                              namespace=f"test-{name}", instance_id=instance_id)

    def changed(change: Change) -> None:
        say(event="change", kind=change.kind, epoch=change.epoch, mode=change.mode)

    coordinator.on_change(changed)
    coordinator.start()
    conn = connect(conninfo)
    try:
        while not stopping.is_set():
            if not coordinator.is_leader:
                time.sleep(LEADER_POLL_S)
                continue
            epoch = coordinator.epoch
            say(event="leader", epoch=epoch)
            while not stopping.is_set():  # the job: runs under `epoch` until fenced
                try:
                    with transaction(conn, "postgres") as cursor:
                        coordinator.fenced(cursor, epoch=epoch)
                        cursor.execute("INSERT INTO scratch (epoch, writer) VALUES (%s, %s)"
                                       " RETURNING id", (epoch, instance_id))
                        (row_id,) = cursor.fetchone()
                except Fenced as fenced:
                    say(event="fenced", epoch=fenced.epoch, current=fenced.current,
                        fenced_writes=coordinator.fenced_writes)
                    break
                except psycopg.OperationalError as error:
                    say(event="write_failed", error=str(error).strip())
                    close_quietly(conn)
                    conn = connect(conninfo)
                    continue
                say(event="wrote", epoch=epoch, id=row_id)
                time.sleep(WRITE_GAP_S)
    finally:
        coordinator.stop()
        close_quietly(conn)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
