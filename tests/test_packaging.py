"""The package as an operator gets it: a wheel, installed into a fresh virtualenv outside the
source tree, must migrate a store and decide an alert on its own.

The editable install the other tests use reads everything from the working tree, so it cannot
notice a file the wheel leaves behind (the migrations' SQL, a new package). This test builds
the wheel from a copy of the tree, installs it (its dependencies come from the package index
or pip's cache) and runs `ledger` from a directory with no source in it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ADMIN_URL

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 180
INSTALL_TIMEOUT_S = 300
COMMAND_TIMEOUT_S = 60
# Not part of the package; never copied into the build (a stale build/ could hide a miss).
NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                    "__pycache__", ".pytest_cache", ".hypothesis",
                                    ".ruff_cache", ".mypy_cache", "*.sqlite3*", "*.lock")
ALERT = {"type": "BASE_ENTRY", "instrument": "BANK_NIFTY", "position": "Long_1",
         "price": 52000, "stop": 51650, "atr": 350, "er": 0.82,
         "timestamp": "2025-11-28T10:30:00Z"}


def _run(cmd: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, (f"{' '.join(cmd)} exited {result.returncode}:\n"
                                    f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a clean copy of the working tree."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"),
          str(source)], timeout=BUILD_TIMEOUT_S)
    (built,) = (base / "dist").glob("portfolio_ledger-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a fresh virtualenv with the wheel (and its dependencies)."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=COMMAND_TIMEOUT_S)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
         timeout=INSTALL_TIMEOUT_S)
    return venv / "bin"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own, like the one an operator creates for the ledger."""
    name = f"ledger_pkg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_wheel_carries_every_package_and_the_migrations_sql(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    for backend in ("postgres", "sqlite"):
        expected = sorted(p.relative_to(ROOT).as_posix()
                          for p in (ROOT / "migrations" / backend).glob("*.sql"))
        assert expected, f"no SQL migrations for {backend} in the tree"
        assert [n for n in expected if n not in names] == [], f"{backend} SQL missing"
    packages = [p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()
                and p.name not in ("tests", "bench")]
    assert [p for p in packages if f"{p}/__init__.py" not in names] == []
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_installed_wheel_migrates_decides_and_verifies(
        backend: str, installed: Path, tmp_path: Path, request: pytest.FixtureRequest):
    url = (f"sqlite:///{tmp_path / 'ledger.sqlite3'}" if backend == "sqlite"
           else request.getfixturevalue("postgres_url"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LEDGER_", "PYTHON", "VIRTUAL_ENV"))}
    env["LEDGER_DATABASE_URL"] = url
    ledger = str(installed / "ledger")

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return _run([ledger, *args], input=stdin, env=env, cwd=tmp_path,
                    timeout=COMMAND_TIMEOUT_S)

    where = _run([str(installed / "python"), "-c", "import migrations; print(migrations.HERE)"],
                 env=env, cwd=tmp_path, timeout=COMMAND_TIMEOUT_S).stdout.strip()
    assert Path(where).is_relative_to(installed.parent), f"imported from {where}"

    migrated = run("migrate")
    assert "001_projections" in migrated.stderr, migrated.stderr
    decision = json.loads(run("signal", stdin=json.dumps(ALERT)).stdout)
    assert decision["decision"] == "accepted", decision
    assert json.loads(run("project", "--once").stdout)["applied"] > 0
    run("verify")
