"""Real servers for the coordination tests: a private redis-server, a throwaway database.

Nothing here touches the machine's own Redis: each test module starts ``redis-server`` on a
spare port (no persistence) and kills it at the end. Postgres: a database created for the
module (``ledger_coord_<random>``) with the coordination migration applied, dropped
``WITH (FORCE)`` at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import redis

import migrations

ADMIN_URL = os.environ.get("LEDGER_TEST_POSTGRES_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
SERVER_START_S = 10  # bound on redis-server answering after it is started
POLL_S = 0.005  # how often a test looks again while waiting


def until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Wait (bounded) for ``condition``; the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)
    return time.monotonic() - started


def spare_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server subprocess of our own, on a spare port, without persistence."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or spare_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2)
        try:
            until(lambda: self._answers(client), SERVER_START_S, "redis-server to answer")
        finally:
            client.close()
        return self

    def _answers(self, client: redis.Redis) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited: "
                               f"{self.process.returncode}")
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server vanishes as in a crash (no clean shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(SERVER_START_S)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory).start()
    try:
        yield server
    finally:
        server.kill()


def coordination_sql(backend: str) -> str:
    (step,) = [m for m in migrations.available(backend) if m.name == "coordination"]
    return step.sql


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """The conninfo of a new Postgres database with the coordination tables."""
    name = f"ledger_coord_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(coordination_sql("postgres"))
            conn.execute("CREATE TABLE scratch (id BIGSERIAL PRIMARY KEY, epoch BIGINT NOT NULL,"
                         " writer TEXT NOT NULL)")
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_store(path: Path) -> str:
    """A SQLite file with the coordination tables (WAL, as the Ledger runs its file)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(coordination_sql("sqlite"))
        conn.execute("CREATE TABLE scratch (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                     " epoch INTEGER NOT NULL, writer TEXT NOT NULL)")
        conn.commit()
    return str(path)
