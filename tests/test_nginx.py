"""The shipped nginx configs, run by the real nginx (tests/nginx_server.py renders them).

- The host install's two stages pass `nginx -t` in the order docs/TRADINGVIEW.md gives them:
  the port-80 config on a bare host (no certificate yet), then the TLS config once the
  certificate exists.
- Failover: three `ledger serve` instances behind nginx, one killed (SIGKILL) in the middle
  of a stream of alerts; every alert is still answered 200 and decided exactly once.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.alerts import Alerts
from tests.api_server import LEDGER, ServeProcess, free_port
from tests.nginx_server import DOCKER, ROOT, Nginx, check, render, self_signed

HTTP_SITE = DOCKER / "nginx" / "ledger-http.conf"
HTTPS_SITE = DOCKER / "nginx.conf"
SECRET = "nginx-test-secret"
TOKEN = "nginx-test-token"
ALERTS = 300
KILL_AFTER = 100
CONCURRENCY = 4  # alerts in flight at once, so some are in flight on the killed instance
CATCH_UP_S = 30  # projections: a standby takes over within ~15 s if the leader was killed


def test_the_port_80_config_passes_nginx_t_on_a_bare_host(tmp_path: Path):
    site = HTTP_SITE.read_text()
    main = render(tmp_path, site, listen={80: free_port()})
    rendered = "".join(p.read_text() for p in (tmp_path / "conf").rglob("*.conf"))
    assert "ssl_certificate" not in rendered, "stage 1 must not need a certificate"
    assert re.search(r"location \^~ /\.well-known/acme-challenge/ \{ root /var/www/certbot; \}",
                     site), "certbot --webroot needs the challenge location"
    result = check(tmp_path, main)
    assert result.returncode == 0, result.stderr


def test_the_tls_config_needs_the_certificate_and_passes_nginx_t_with_one(tmp_path: Path):
    listen = {80: free_port(), 443: free_port()}
    cert_dir = tmp_path / "live"
    cert_dir.mkdir()
    cert, key = cert_dir / "fullchain.pem", cert_dir / "privkey.pem"
    main = render(tmp_path / "nginx", HTTPS_SITE.read_text(), listen=listen,
                  certificate=(cert, key))

    # Before certbot: why the TLS config cannot be the first one installed.
    before = check(tmp_path / "nginx", main)
    assert before.returncode != 0 and "certificate" in before.stderr, before.stderr

    self_signed(cert_dir)  # what certbot leaves behind
    after = check(tmp_path / "nginx", main)
    assert after.returncode == 0, after.stderr


def test_tradingview_md_installs_port_80_then_certificate_then_tls():
    text = (ROOT / "docs" / "TRADINGVIEW.md").read_text()
    commands = [line.strip() for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S)
                for line in block.splitlines() if line.strip()]

    def first(pattern: str, after: int = -1) -> int:
        for i, command in enumerate(commands):
            if i > after and re.search(pattern, command):
                return i
        raise AssertionError(f"no command matching {pattern!r} after step {after}: {commands}")

    http = first(r"cp docker/nginx/ledger-http\.conf /etc/nginx/conf\.d/ledger\.conf")
    snippets = first(r"cp docker/nginx/snippets/\S* /etc/nginx/snippets/")
    reload_http = first(r"nginx -t && .*systemctl reload nginx", max(http, snippets))
    certbot = first(r"certbot certonly --webroot -w /var/www/certbot", reload_http)
    tls = first(r"cp docker/nginx\.conf /etc/nginx/conf\.d/ledger\.conf", certbot)
    first(r"nginx -t && .*systemctl reload nginx", tls)
    for path in re.findall(r"docker/[\w/-]+\.conf", text):
        assert (ROOT / path).is_file(), f"docs/TRADINGVIEW.md names {path}: it does not exist"


# --- failover -------------------------------------------------------------------------------


def _migrate(url: str) -> None:
    subprocess.run([LEDGER, "migrate"], env={"LEDGER_DATABASE_URL": url}, check=True,
                   capture_output=True, timeout=60)


def _post(client: httpx.Client, body: dict[str, Any]) -> tuple[int, dict[str, Any] | str]:
    try:
        r = client.post("/webhook", json=body)
    except httpx.HTTPError as e:  # nginx itself failed to answer: count it as an error
        return 0, repr(e)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


@pytest.mark.postgres
def test_an_instance_killed_mid_stream_costs_no_alert(new_store_url, tmp_path: Path):
    url = new_store_url("postgres")
    _migrate(url)
    env = {"LEDGER_WEBHOOK_SECRET": SECRET, "LEDGER_API_TOKEN": TOKEN,
           "LEDGER_TRUSTED_PROXIES": "127.0.0.1"}
    alerts = Alerts()
    bodies = [{"secret": SECRET, **alerts.mark(52000 + i, 350)} for i in range(ALERTS)]
    port = free_port()
    servers: list[ServeProcess] = []
    try:
        servers = [ServeProcess(url, env=env) for _ in range(3)]
        upstream = [s.url.removeprefix("http://") for s in servers]
        main = render(tmp_path, HTTP_SITE.read_text(), listen={80: port}, upstream=upstream,
                      trust_loopback=True)
        with Nginx(tmp_path, main, port) as nginx:
            local = threading.local()

            def send(body: dict[str, Any]) -> tuple[int, dict[str, Any] | str]:
                if not hasattr(local, "client"):
                    local.client = httpx.Client(base_url=nginx.url, timeout=10)
                return _post(local.client, body)

            answers = []
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                futures = [pool.submit(send, body) for body in bodies]
                for done, future in enumerate(as_completed(futures), start=1):
                    answers.append(future.result())
                    if done == KILL_AFTER:
                        servers[0].kill()  # SIGKILL: in-flight requests die with it
            failed = [(status, body) for status, body in answers if status != 200]
            print(f"non-200 answers: {len(failed)} of {ALERTS} "
                  f"{dict(Counter(status for status, _ in failed))}")
            assert failed == [], f"{len(failed)} alerts not answered 200: {failed[:5]}"

            decided = [body for _, body in answers if isinstance(body, dict)]
            fingerprints = {body["fingerprint"] for body in decided}
            duplicates = sum(1 for body in decided if body["duplicate"])
            print(f"distinct fingerprints: {len(fingerprints)}, duplicate answers "
                  f"(resent by nginx after the instance had decided): {duplicates}")
            assert len(fingerprints) == ALERTS
            # Refused (dead before the request), closed or reset (killed while answering):
            # each is nginx meeting the dead instance and going to the next.
            met = ("111: Connection refused", "prematurely", "104: Connection reset by peer")
            assert any(sign in nginx.errors() for sign in met), \
                "nginx never met the dead instance: the test proved nothing"

            # The store holds each alert once, whichever instance decided it.
            head = max(body["log_position"] for body in decided)
            stored = _signals(nginx.url, head)
            assert sorted(stored) == sorted(fingerprints)
    finally:
        for server in servers:
            server.__exit__(None, None, None)


def _signals(base_url: str, after: int) -> list[str]:
    deadline = time.monotonic() + CATCH_UP_S
    with httpx.Client(base_url=base_url, timeout=10,
                      headers={"authorization": f"Bearer {TOKEN}"}) as client:
        while True:
            r = client.get("/signals", params={"limit": 500, "after": after})
            if r.status_code == 200:
                return [row["fingerprint"] for row in r.json()["signals"]]
            assert time.monotonic() < deadline, f"projections never caught up: {r.text}"
            time.sleep(0.5)
