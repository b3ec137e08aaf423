"""docker/Dockerfile, read as the builder reads it (no Docker engine is needed): the image runs
unprivileged with a writable home for its default SQLite store, ships every package, keeps
the context's clutter out, and its HEALTHCHECK command really tells a live instance from a
dead one (run here against a real `ledger serve`).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.api_server import ServeProcess

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
IGNORE = ROOT / "docker" / "Dockerfile.dockerignore"  # BuildKit: <Dockerfile>.dockerignore
HEALTHCHECK_TIMEOUT_S = 10


def instructions(*, every_stage: bool = False) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage (or all), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    parsed = [(m.group(1).upper(), m.group(2).strip())
              for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, flags=re.MULTILINE)
              if not m.group(0).lstrip().startswith("#")]
    last_from = max(i for i, (name, _) in enumerate(parsed) if name == "FROM")
    return parsed if every_stage else parsed[last_from:]


def one(name: str) -> str:
    found = [args for instruction, args in instructions() if instruction == name]
    assert found, f"docker/Dockerfile has no {name} in its final stage"
    return found[-1]


def env() -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction, args in instructions():
        if instruction == "ENV":
            values.update(part.split("=", 1) for part in shlex.split(args))
    return values


def test_the_image_runs_unprivileged_with_a_writable_home_for_its_default_store():
    user = one("USER")
    assert user not in ("root", "0"), "the service must not run as root"
    url = env().get("LEDGER_DATABASE_URL", "sqlite:///ledger.sqlite3")
    assert url.startswith("sqlite:////"), f"the default store must be an absolute path: {url}"
    data_dir = str(Path(url.removeprefix("sqlite:///")).parent)
    runs = " && ".join(args for instruction, args in instructions() if instruction == "RUN")
    made = re.search(rf"install -d -o {user} -g {user} -m 07\d0 {re.escape(data_dir)}(\s|$)",
                     runs)
    assert made, f"{data_dir} (where {url} lives) must be created owned by {user}"
    assert one("WORKDIR") == data_dir, "the working directory is the one writable place"
    assert data_dir in one("VOLUME"), "the SQLite store needs a volume to survive the container"


def test_the_build_context_has_every_package_and_nothing_else():
    patterns = [line.strip() for line in IGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p.removeprefix("**/")) for p in patterns)

    context = {p.name for p in ROOT.iterdir() if not ignored(p.name)}
    include = tomllib.loads((ROOT / "pyproject.toml").read_text()
                            )["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()
                and any(fnmatch.fnmatchcase(p.name, pattern) for pattern in include)}
    assert packages <= context, f"left out of the build: {packages - context}"
    assert {"pyproject.toml", "README.md"} <= context
    assert not {".git", ".venv", "tests"} & context
    copies = [args for name, args in instructions(every_stage=True) if name == "COPY"]
    assert any(args.split()[0] == "." for args in copies), \
        "copy the whole (filtered) context, so new packages are never left behind"


def test_the_healthcheck_passes_on_a_live_instance_and_fails_on_a_dead_one(tmp_path: Path):
    check = one("HEALTHCHECK")
    assert "/health" in check
    command = json.loads(check[check.index("CMD") + 3:].strip())
    assert command[0] == "python" and command[1] == "-c", "exec form; the slim image has no curl"
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    cmd = json.loads(one("CMD"))
    with ServeProcess(url, args=tuple(a for a in cmd[2:] if a == "--migrate")) as server:
        script = command[2].replace("http://127.0.0.1:8080", server.url)
        assert script != command[2], "the health check must ask 127.0.0.1:8080 (the CMD's port)"
        alive = subprocess.run([sys.executable, "-c", script], capture_output=True,
                               timeout=HEALTHCHECK_TIMEOUT_S)
        assert alive.returncode == 0, alive.stderr
        server.kill()
        dead = subprocess.run([sys.executable, "-c", script], capture_output=True,
                              timeout=HEALTHCHECK_TIMEOUT_S)
        assert dead.returncode != 0
    assert "8080" in one("CMD") and "0.0.0.0" in one("CMD")
