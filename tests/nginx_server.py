"""Test helpers: the shipped nginx configs, rendered into a private prefix and run for real.

The site files (docker/nginx.conf, docker/nginx/*.conf) and the snippets they include
(docker/nginx/snippets/) are used as shipped; rendering changes only what is tied to the
machine: listen ports (spare ones on 127.0.0.1), certificate and log paths, and the upstream
addresses (the test's instances, with the shipped server parameters). Every change must find
its target, so a config that changes shape fails here instead of being tested half-rendered.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
SNIPPETS = DOCKER / "nginx" / "snippets"
START_TIMEOUT_S = 10
STOP_TIMEOUT_S = 10
CHECK_TIMEOUT_S = 30

MAIN = """\
{user}worker_processes 1;
daemon off;
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include conf.d/*.conf;
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None)
    if found is None:
        raise AssertionError("nginx is not installed: `apt-get install -y nginx` (.ci/run "
                             "installs it when it is missing)")
    return found


def nginx_version() -> tuple[int, ...]:
    out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True,
                         timeout=CHECK_TIMEOUT_S).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    assert match, out
    return tuple(int(part) for part in match.groups())


def _sub(text: str, pattern: str, replacement: str, what: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count, f"{what}: {pattern!r} not found (the shipped nginx config changed shape)"
    return new


def upstream_for(servers: Sequence[str]) -> str:
    """snippets/ledger-upstream.conf with ``servers`` (host:port) in place of the shipped
    addresses, each keeping the shipped server parameters (max_fails, fail_timeout)."""
    shipped = (SNIPPETS / "ledger-upstream.conf").read_text()
    line = re.compile(r"^([ \t]*)server\s+\S+(.*);[ \t]*\n", flags=re.MULTILINE)
    found = list(line.finditer(shipped))
    assert found, "ledger-upstream.conf lists no server"
    indent, parameters = found[0].groups()
    block = "".join(f"{indent}server {address}{parameters};\n" for address in servers)
    first = found[0]
    return shipped[:first.start()] + block + line.sub("", shipped[first.end():])


def render(prefix: Path, site: str, *, listen: Mapping[int, int],
           upstream: Sequence[str] | None = None,
           certificate: tuple[Path, Path] | None = None,
           trust_loopback: bool = False) -> Path:
    """Lay out an nginx prefix serving ``site`` (a site file's text, as in conf.d/); return
    the main config's path. ``listen`` maps each shipped port to a spare local one."""
    conf = prefix / "conf"
    for sub in ("logs", "temp", "conf/conf.d"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    shutil.copytree(SNIPPETS, conf / "snippets", dirs_exist_ok=True)
    if upstream is not None:
        (conf / "snippets" / "ledger-upstream.conf").write_text(upstream_for(upstream))
    if trust_loopback:  # the test's client stands in for TradingView
        geo = conf / "snippets" / "ledger-tradingview.conf"
        geo.write_text(_sub(geo.read_text(), r"^(geo \$tradingview \{\n)",
                            r"\g<1>    127.0.0.1 1;\n", "geo"))

    def port(match: re.Match[str]) -> str:
        indent, shipped = match.group(1), int(match.group(2))
        assert shipped in listen, f"the site listens on {shipped}: map it to a spare port"
        return f"{indent}listen 127.0.0.1:{listen[shipped]}{match.group(3)};"

    # Directives only (a line's first word), never the same words in comments.
    site = _sub(site, r"^([ \t]*)listen\s+(\d+)([^;\n]*);", port, "listen")
    site = re.sub(r"^([ \t]*)access_log\s+/[^;\s]+",
                  rf"\g<1>access_log {prefix}/logs/ledger.access.log", site, flags=re.MULTILINE)
    if certificate is not None:
        site = _sub(site, r"^([ \t]*)ssl_certificate\s+[^;\n]+;",
                    rf"\g<1>ssl_certificate {certificate[0]};", "ssl_certificate")
        site = _sub(site, r"^([ \t]*)ssl_certificate_key\s+[^;\n]+;",
                    rf"\g<1>ssl_certificate_key {certificate[1]};", "ssl_certificate_key")
    (conf / "conf.d" / "ledger.conf").write_text(site)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers can read the private prefix
    main = conf / "nginx.conf"
    main.write_text(MAIN.format(prefix=prefix, user=user))
    return main


def _command(prefix: Path, main: Path, *args: str) -> list[str]:
    return [nginx_binary(), "-p", f"{prefix}/", "-c", str(main), "-e",
            str(prefix / "logs" / "error.log"), *args]


def check(prefix: Path, main: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the rendered config (it also binds the listen ports, briefly)."""
    return subprocess.run(_command(prefix, main, "-t"), capture_output=True, text=True,
                          timeout=CHECK_TIMEOUT_S)


def self_signed(directory: Path, name: str = "ledger.test") -> tuple[Path, Path]:
    """A throwaway certificate and key, as certbot would have left them."""
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=CHECK_TIMEOUT_S)
    return cert, key


class Nginx:
    """nginx in the foreground on a rendered prefix; stopped (bounded) on exit."""

    def __init__(self, prefix: Path, main: Path, port: int) -> None:
        self.prefix = prefix
        self.process = subprocess.Popen(_command(prefix, main), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx did not start:\n{self.errors()}") from None
                time.sleep(0.05)

    def errors(self) -> str:
        log = self.prefix / "logs" / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish in-flight requests
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
