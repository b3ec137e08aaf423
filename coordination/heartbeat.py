"""Instance heartbeats: who is running, who leads, in which mode.

Every ``heartbeat_interval_ms`` an instance upserts its ``instance_heartbeats`` row and, in
redis mode, sets ``<ns>:instance:<id>`` with a TTL of ``heartbeat_stale_ms`` (so Redis forgets
a dead instance by itself). This is operational state, not events: the projections never
rebuild it, and losing it loses nothing of the books.

"crashed" is never stored: ``instances`` computes it when read, for any instance not stopped
cleanly whose last heartbeat is older than the staleness bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from coordination.coordinator import Change, Coordinator
from coordination.db import (
    DATABASE_ERRORS,
    Dialect,
    close_quietly,
    parse_time,
    sqlite_time,
    transaction,
    values,
)
from coordination.lease import redis_client

log = logging.getLogger("ledger.coordination")

_COLUMNS = ("instance_id", "hostname", "port", "version", "started_at", "last_heartbeat",
            "is_leader", "leader_epoch", "leader_acquired_at", "mode", "status")


@dataclass(frozen=True)
class Beat:
    """What one heartbeat records about this instance."""

    instance_id: str
    hostname: str | None
    port: int | None
    version: str | None
    started_at: datetime
    is_leader: bool
    leader_epoch: int | None
    leader_acquired_at: datetime | None
    mode: str
    status: str  # active (leader) or standby


@dataclass(frozen=True)
class InstanceRow:
    instance_id: str
    hostname: str | None
    port: int | None
    version: str | None
    started_at: datetime | None
    last_heartbeat: datetime
    is_leader: bool  # False once crashed or stopped, whatever it last reported
    leader_epoch: int | None
    leader_acquired_at: datetime | None
    mode: str | None
    status: str  # active, standby, stopped, crashed


def record_beat(cursor: Any, dialect: Dialect, beat: Beat) -> None:
    """Upsert this instance's row; the time is the database's (Postgres) or UTC now (SQLite)."""
    values: tuple[Any, ...]
    if dialect == "postgres":
        values = (beat.instance_id, beat.hostname, beat.port, beat.version, beat.started_at,
                  beat.is_leader, beat.leader_epoch, beat.leader_acquired_at, beat.mode,
                  beat.status)
        marks = "%s, %s, %s, %s, %s, now(), %s, %s, %s, %s, %s"
    else:
        values = (beat.instance_id, beat.hostname, beat.port, beat.version,
                  sqlite_time(beat.started_at), sqlite_time(datetime.now(UTC)),
                  int(beat.is_leader), beat.leader_epoch,
                  None if beat.leader_acquired_at is None else sqlite_time(beat.leader_acquired_at),
                  beat.mode, beat.status)
        marks = ", ".join("?" * 11)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
    cursor.execute(f"INSERT INTO instance_heartbeats ({', '.join(_COLUMNS)}) VALUES ({marks})"
                   f" ON CONFLICT (instance_id) DO UPDATE SET {updates}", values)


def mark_stopped(cursor: Any, dialect: Dialect, instance_id: str) -> bool:
    """Record a clean stop, so the instance reads as "stopped", never "crashed"."""
    if dialect == "postgres":
        cursor.execute("UPDATE instance_heartbeats SET status = 'stopped', is_leader = FALSE,"
                       " last_heartbeat = now() WHERE instance_id = %s", (instance_id,))
    else:
        cursor.execute("UPDATE instance_heartbeats SET status = 'stopped', is_leader = 0,"
                       " last_heartbeat = ? WHERE instance_id = ?",
                       (sqlite_time(datetime.now(UTC)), instance_id))
    return cursor.rowcount == 1


def instances(cursor: Any, dialect: Dialect, stale_ms: int) -> list[InstanceRow]:
    """Every instance, with "crashed" for a heartbeat older than ``stale_ms`` (read time)."""
    if stale_ms <= 0:
        raise ValueError(f"stale_ms must be positive, not {stale_ms}")
    status = ("CASE WHEN status <> 'stopped' AND last_heartbeat < {cutoff}"
              " THEN 'crashed' ELSE status END")
    if dialect == "postgres":
        cutoff: Any = stale_ms
        status = status.format(cutoff="now() - %s * interval '1 millisecond'")
    else:
        cutoff = sqlite_time(datetime.now(UTC) - timedelta(milliseconds=stale_ms))
        status = status.format(cutoff="?")
    cursor.execute(f"SELECT {', '.join(_COLUMNS[:-1])}, {status} FROM instance_heartbeats"
                   " ORDER BY instance_id", (cutoff,))
    rows = []
    for r in map(values, cursor.fetchall()):
        state = r[10]
        rows.append(InstanceRow(
            instance_id=r[0], hostname=r[1], port=r[2], version=r[3],
            started_at=parse_time(r[4]), last_heartbeat=parse_time(r[5]),  # type: ignore[arg-type]
            is_leader=bool(r[6]) and state in ("active", "standby"),
            leader_epoch=None if r[7] is None else int(r[7]),
            leader_acquired_at=parse_time(r[8]), mode=r[9], status=state))
    return rows


class Heartbeat:
    """Records ``coordinator``'s instance every ``heartbeat_interval_ms``, in its own thread.

    Its own database connection and Redis client: a slow heartbeat must never delay a term
    renewal. It beats at once whenever leadership or the mode changes.
    """

    def __init__(self, coordinator: Coordinator, *, hostname: str | None = None,
                 port: int | None = None, version: str | None = None) -> None:
        self.coordinator = coordinator
        self.settings = coordinator.settings
        self.hostname = hostname or socket.gethostname()
        self.port = port
        self.version = version
        self.started_at = datetime.now(UTC)
        self.key = f"{coordinator.namespace}:instance:{coordinator.instance_id}"
        self._conn: Any = None
        self._client: redis.Redis | None = None
        if coordinator.redis_url:
            self._client = redis_client(coordinator.redis_url,
                                        self.settings.redis_socket_timeout_ms)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0
        self.failures = 0  # beats whose database write failed (metrics)
        self.redis_failures = 0
        coordinator.on_change(self._changed)

    def beat(self) -> None:
        """Record one heartbeat now (the store first: it is the record; Redis is a cache)."""
        c = self.coordinator
        epoch, acquired_at = c.epoch, c.leader_acquired_at  # read before is_leader: a term
        leader = c.is_leader and epoch is not None          # lost in between reads as standby
        beat = Beat(c.instance_id, self.hostname, self.port, self.version, self.started_at,
                    leader, epoch if leader else None, acquired_at if leader else None,
                    c.mode, "active" if leader else "standby")
        dialect = c.target.dialect
        try:
            with transaction(self._connection(), dialect) as cursor:
                record_beat(cursor, dialect, beat)
        except DATABASE_ERRORS:
            self.failures += 1
            self._drop_connection()
            raise
        self.beats += 1
        if self._client is not None and beat.mode == "redis":
            payload = {"hostname": beat.hostname, "port": beat.port, "version": beat.version,
                       "is_leader": beat.is_leader, "leader_epoch": beat.leader_epoch,
                       "mode": beat.mode, "status": beat.status,
                       "started_at": beat.started_at.isoformat()}
            try:
                self._client.set(self.key, json.dumps(payload),
                                 px=self.settings.heartbeat_stale_ms)
            except redis.RedisError as error:
                self.redis_failures += 1  # the coordinator notices and switches mode
                log.debug("heartbeat to Redis failed: %s", error)

    def start(self) -> Heartbeat:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and record a clean stop (the instance reads "stopped")."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.settings.stop_join_timeout_ms / 1000)
            self._thread = None
        dialect = self.coordinator.target.dialect
        try:
            with transaction(self._connection(), dialect) as cursor:
                mark_stopped(cursor, dialect, self.coordinator.instance_id)
        except DATABASE_ERRORS as error:
            log.warning("could not record a clean stop (reads as crashed later): %s", error)
        if self._client is not None:
            with contextlib.suppress(redis.RedisError):
                self._client.delete(self.key)  # our own key, no one else writes it
            with contextlib.suppress(Exception):
                self._client.close()
        self._drop_connection()

    def _run(self) -> None:
        interval_s = self.settings.heartbeat_interval_ms / 1000
        while not self._stop.is_set():
            try:
                self.beat()
            except DATABASE_ERRORS as error:
                log.warning("heartbeat failed: %s", error)
            self._wake.wait(interval_s)
            self._wake.clear()

    def _changed(self, change: Change) -> None:
        self._wake.set()

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self.coordinator.target.connect(
                self.settings.db_statement_timeout_ms, self.settings.db_connect_timeout_s,
                application_name="ledger-heartbeat")
        return self._conn

    def _drop_connection(self) -> None:
        close_quietly(self._conn)
        self._conn = None
