"""docker/compose.yaml, as Compose renders it (`docker-compose config`; no engine needed), and
its nginx config, as nginx reads it (`nginx -t`).

Compose must be installed: .ci/run installs docker-compose when it is missing. Without it this
test fails (it is never skipped): the compose file is only checked by the real tool.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ledger.config import default_config
from service.bootstrap import serve_connections
from tests.api_server import free_port
from tests.nginx_server import DOCKER, ROOT, SNIPPETS, check, render

COMPOSE_FILE = DOCKER / "compose.yaml"
NGINX_CONF = DOCKER / "nginx" / "compose.conf"
INSTANCES = ("ledger-1", "ledger-2", "ledger-3")
SERVICES = {"postgres", "redis", "migrate", *INSTANCES, "nginx"}
SECRETS = {"LEDGER_WEBHOOK_SECRET": "compose-test-secret", "LEDGER_API_TOKEN": "compose-token",
           "LEDGER_DB_PASSWORD": "0123abcd"}
TIMEOUT_S = 60


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=TIMEOUT_S
    ).returncode == 0:
        return ["docker", "compose"]
    raise AssertionError("docker-compose is not installed: `apt-get install -y docker-compose` "
                         "(.ci/run installs it when it is missing)")


def compose_config(**variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LEDGER_", "COMPOSE_", "DOCKER_"))}
    env.update(variables)
    return subprocess.run([*compose_command(), "-f", str(COMPOSE_FILE), "config"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)


def rendered() -> dict[str, Any]:
    result = compose_config(**SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def condition(service: dict[str, Any], other: str) -> str:
    return service["depends_on"][other]["condition"]


def test_compose_renders_the_whole_stack():
    config = rendered()
    services = config["services"]
    assert set(services) >= SERVICES, f"missing: {SERVICES - set(services)}"

    assert services["postgres"]["image"].startswith("postgres:16")
    # An instance may hold this many connections (docs/CONFIGURATION.md).
    _, per_instance = serve_connections(default_config().limits)
    command = " ".join(services["postgres"].get("command", []))
    match = re.search(r"max_connections=(\d+)", command)
    assert match and int(match.group(1)) > len(INSTANCES) * per_instance + 1, \
        f"Postgres must admit {len(INSTANCES)} instances x {per_instance} connections + migrate"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["redis"]["image"].startswith("redis:7")
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]

    migrate = services["migrate"]
    assert migrate["command"] == ["ledger", "migrate"]
    assert condition(migrate, "postgres") == "service_healthy"

    subnet = config["networks"]["ledger"]["ipam"]["config"][0]["subnet"]
    for name in INSTANCES:
        instance = services[name]
        assert Path(instance["build"]["context"]).resolve() == ROOT
        assert instance["build"]["dockerfile"] == "docker/Dockerfile"
        assert condition(instance, "migrate") == "service_completed_successfully"
        assert condition(instance, "redis") == "service_healthy"
        env = instance["environment"]
        assert env["LEDGER_WEBHOOK_SECRET"] == SECRETS["LEDGER_WEBHOOK_SECRET"]
        assert env["LEDGER_API_TOKEN"] == SECRETS["LEDGER_API_TOKEN"]
        assert env["LEDGER_DATABASE_URL"] == (
            f"postgresql://ledger:{SECRETS['LEDGER_DB_PASSWORD']}@postgres:5432/ledger")
        assert env["LEDGER_REDIS_URL"] == "redis://redis:6379/0"
        assert env["LEDGER_TRUSTED_PROXIES"] == subnet, "believe X-Forwarded-For from nginx"
        probe = " ".join(instance["healthcheck"]["test"])
        assert "http://127.0.0.1:8080/ready/webhook" in probe, probe

    nginx = services["nginx"]
    assert set(nginx["depends_on"]) >= set(INSTANCES)
    mounts = {}
    for volume in nginx["volumes"]:
        source, target = ((volume["source"], volume["target"]) if isinstance(volume, dict)
                          else volume.split(":")[:2])
        mounts[target] = Path(source)
    assert mounts["/etc/nginx/conf.d/default.conf"] == NGINX_CONF
    assert mounts["/etc/nginx/snippets"] == SNIPPETS


def test_compose_refuses_to_render_without_the_webhook_secret():
    without = {k: v for k, v in SECRETS.items() if k != "LEDGER_WEBHOOK_SECRET"}
    result = compose_config(**without)
    assert result.returncode != 0
    assert "LEDGER_WEBHOOK_SECRET" in result.stderr, result.stderr


def test_the_compose_nginx_config_balances_the_three_instances_like_the_host_install(
        tmp_path: Path):
    site = NGINX_CONF.read_text()
    servers = re.findall(r"^\s*server\s+(\S+)(.*);\s*$", site, flags=re.MULTILINE)
    assert [address for address, _ in servers] == [f"{name}:8080" for name in INSTANCES]
    shipped = re.findall(r"^\s*server\s+\S+(.*);\s*$",
                         (SNIPPETS / "ledger-upstream.conf").read_text(), flags=re.MULTILINE)
    assert {parameters for _, parameters in servers} == set(shipped), \
        "compose and host install must fail over alike"
    assert "include snippets/ledger-locations.conf;" in site

    # nginx resolves upstream names at start: stand the instances in with local addresses.
    local = re.sub(r"server ledger-\d:8080", f"server 127.0.0.1:{free_port()}", site)
    main = render(tmp_path, local, listen={80: free_port()})
    result = check(tmp_path, main)
    assert result.returncode == 0, result.stderr
