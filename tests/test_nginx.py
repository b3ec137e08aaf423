"""The shipped nginx configs, run by the real nginx (tests/nginx_server.py renders them).

- The host install's two stages pass `nginx -t` in the order docs/TRADINGVIEW.md gives them:
  the port-80 config on a bare host (no certificate yet), then the TLS config once the
  certificate exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.api_server import free_port
from tests.nginx_server import DOCKER, ROOT, check, render, self_signed

HTTP_SITE = DOCKER / "nginx" / "ledger-http.conf"
HTTPS_SITE = DOCKER / "nginx.conf"


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
