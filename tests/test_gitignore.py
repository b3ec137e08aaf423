"""What `ledger serve` leaves in its working directory on the default SQLite store is never
committed by accident: every file it creates there matches a .gitignore pattern."""

from __future__ import annotations

import fnmatch
import subprocess
import time
from pathlib import Path

from tests.api_server import LEDGER, ServeProcess

ROOT = Path(__file__).resolve().parent.parent
LEADER_WAIT_S = 15


def ignored(name: str) -> bool:
    """Whether a file called ``name`` in the repository root matches a .gitignore line (our
    patterns are all plain globs on the file name, optionally with a trailing /)."""
    patterns = [line.strip().rstrip("/") for line in (ROOT / ".gitignore").read_text()
                .splitlines() if line.strip() and not line.startswith(("#", "!"))]
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def test_the_files_a_sqlite_instance_writes_are_ignored(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    subprocess.run([LEDGER, "migrate"], env={"LEDGER_DATABASE_URL": url}, cwd=tmp_path,
                   check=True, capture_output=True, timeout=60)
    with ServeProcess(url) as server, server.client() as client:
        deadline = time.monotonic() + LEADER_WAIT_S
        while "ledger_projection_leader 1.0" not in client.get("/metrics").text:
            assert time.monotonic() < deadline, "the projection runner never led"
            time.sleep(0.1)
        written = sorted(p.name for p in tmp_path.iterdir())
    assert "ledger.sqlite3" in written, written
    assert [name for name in written if not ignored(name)] == []
