"""Test helpers: a real `ledger serve` process, and a private PostgreSQL server to kill.

Both are bounded in time and always stopped; nothing here touches the machine's servers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
LEDGER = str(Path(sys.executable).with_name("ledger"))
START_TIMEOUT_S = 20
STOP_TIMEOUT_S = 30
_RUNNING_ON = re.compile(r"Running on http://([\d.]+):(\d+)")


class ServeProcess:
    """`ledger serve --port 0` on ``database_url``; ``url`` once it listens."""

    def __init__(self, database_url: str, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.log = Path(tempfile.mkstemp(prefix="ledger-serve-", suffix=".log")[1])
        environment = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
        environment.update({"LEDGER_DATABASE_URL": database_url, **(env or {})})
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([LEDGER, "serve", "--port", "0", *args],
                                            stdout=out, stderr=subprocess.STDOUT,
                                            env=environment, cwd=ROOT)
        self.url = self._wait_listening()

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            match = _RUNNING_ON.search(self.output())
            if match:
                return f"http://{match.group(1)}:{match.group(2)}"
            if self.process.poll() is not None:
                raise RuntimeError(f"ledger serve exited {self.process.returncode}:\n"
                                   f"{self.output()}")
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"ledger serve did not listen within {START_TIMEOUT_S} s:\n"
                           f"{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 10, **kwargs})

    def terminate(self) -> int:
        """SIGTERM, then wait for a graceful exit (bounded)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_TIMEOUT_S)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if found:
        return str(found[-1])
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: PostgreSQL server binaries are needed")
    return path


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a spare port, owned by this test alone."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-pg-"))
        self.port = free_port()
        self.data = self.dir / "data"
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            shutil.chown(self.dir, "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync")
        self.start()

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=60)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "-l",
                  str(self.dir / "server.log"), "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                  "start")

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
