"""Clients that hold connections open without finishing a request (slowloris): a real
`ledger serve` closes every connection that has not sent a complete request head within
``header_read_timeout_s`` (counted from when it opened, or from its previous answer),
however slowly it trickles bytes, while it goes on answering everyone else.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import migrations
from api.settings import ServeSettings, from_environment
from ledger.application import Ledger
from ledger.config import Limits, default_config
from service.serve import hypercorn_config
from tests.api_server import ServeProcess

STALLED = 20
GRACE_S = 2  # beyond the bound, for the server to get round to closing
HEADER_READ_TIMEOUT_S = ServeSettings().header_read_timeout_s


def closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """True once the server has closed ``sock`` (EOF or reset), False if still open at
    ``deadline``."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, min(0.2, deadline - time.monotonic())))
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:  # reset
            return True
    return False


def trickle(sock: socket.socket, stop: threading.Event) -> None:
    """A header that never ends, one byte every 0.3 s: each read gets something."""
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: ledger\r\nX-Slow: ")
        while not stop.wait(0.3):
            sock.sendall(b"a")
    except OSError:
        pass  # closed by the server: what the test waits for


def test_connections_stalled_or_trickling_in_their_headers_are_closed(new_store_url):
    url = new_store_url("sqlite")
    with Ledger(default_config(), url) as ledger:
        migrations.migrate(ledger)
    with ServeProcess(url) as server:
        address = urlsplit(server.url)
        opened = time.monotonic()
        stalled = [socket.create_connection((address.hostname, address.port), timeout=5)
                   for _ in range(STALLED)]
        for sock in stalled:
            sock.sendall(b"GET /hea")  # part of a request line, then nothing
        trickler = socket.create_connection((address.hostname, address.port), timeout=5)
        stop = threading.Event()
        thread = threading.Thread(target=trickle, args=(trickler, stop), daemon=True)
        thread.start()
        try:
            # Everyone else is answered meanwhile.
            with server.client() as client:
                assert client.get("/health").status_code == 200
                time.sleep(1)
                assert client.get("/health").status_code == 200  # kept alive, within bound
            deadline = opened + HEADER_READ_TIMEOUT_S + GRACE_S
            still_open = [i for i, sock in enumerate([*stalled, trickler])
                          if not closed_by_server(sock, deadline)]
            assert still_open == [], f"{len(still_open)} connections still open after " \
                                     f"{HEADER_READ_TIMEOUT_S + GRACE_S} s"
            with server.client() as client:
                assert client.get("/health").status_code == 200
        finally:
            stop.set()
            for sock in [*stalled, trickler]:
                sock.close()
            thread.join(timeout=5)


def test_the_bound_has_a_default_and_an_environment_override():
    assert HEADER_READ_TIMEOUT_S == 5
    assert hypercorn_config(ServeSettings()).keep_alive_timeout == HEADER_READ_TIMEOUT_S
    settings = from_environment(Limits(), {"LEDGER_HEADER_READ_TIMEOUT_S": "2"})
    assert hypercorn_config(settings).keep_alive_timeout == 2
