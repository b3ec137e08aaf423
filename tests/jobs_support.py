"""What the leader-job tests share: a clock the test sets, exchange time, a started coordinator
on the test's own store, and a real HTTP receiver on 127.0.0.1 for alert webhooks."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

from coordination import CoordinationSettings, Coordinator
from coordination.db import transaction
from coordination.terms import begin_term, end_term
from tests.coordination_servers import until

IST = ZoneInfo("Asia/Kolkata")
ELECTION_S = 3  # bound on a first election
# A term good for 3 s: on a busy machine a renewal that comes late still leaves the jobs'
# 500 ms timeouts covered (the production default, 1 s, is checked in test_jobs_runner).
TEST_SETTINGS = CoordinationSettings(lease_ttl_ms=3000)


class FakeClock:
    """The time is whatever the test says; ``sleep`` moves it on (and yields the CPU)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        threading.Event().wait(0.001)


def ist(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """An instant given as India Standard Time, as the UTC the service runs on."""
    return datetime(year, month, day, hour, minute, tzinfo=IST).astimezone(UTC)


@contextlib.contextmanager
def leading(store_url: str, **kwargs: Any) -> Iterator[Coordinator]:
    """A coordinator on the store (single mode: no Redis), started and leading; stopped after.
    The store must be migrated (the ``ledger`` fixture does it)."""
    kwargs.setdefault("settings", TEST_SETTINGS)
    coordinator = Coordinator.from_database_url(store_url, **kwargs).start()
    try:
        until(lambda: coordinator.is_leader, ELECTION_S, "the coordinator to lead")
        yield coordinator
    finally:
        coordinator.stop()


@contextlib.contextmanager
def paused_leader(store_url: str) -> Iterator[tuple[Coordinator, int]]:
    """A leader paused (its thread frozen: it still believes it leads) while the store gives
    the next term to another instance: (the paused coordinator, the newer epoch)."""
    with leading(store_url) as paused:
        paused._freeze()  # the test hook: no more ticks, nothing released
        conn = paused.target.connect(1000, 2)
        with contextlib.closing(conn), transaction(conn, paused.dialect) as cursor:
            assert end_term(cursor, paused.dialect, paused.name, paused.instance_id,
                            paused.epoch)
            newer = begin_term(cursor, paused.dialect, paused.name, "another-instance",
                               TEST_SETTINGS.lease_ttl_ms)
        assert paused.is_leader and newer is not None and newer > (paused.epoch or 0)
        try:
            yield paused, newer
        finally:  # the other instance stops cleanly: its term ends
            conn = paused.target.connect(1000, 2)
            with contextlib.closing(conn), transaction(conn, paused.dialect) as cursor:
                end_term(cursor, paused.dialect, paused.name, "another-instance", newer)


class Receiver:
    """A webhook receiver on 127.0.0.1: keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        bodies: list[Any] = []
        self.bodies = bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/SECRETPATH"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def texts(self) -> list[str]:
        return [b["text"] for b in self.bodies]


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """A URL whose server accepts connections and never answers (a hung receiver)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/hook"
