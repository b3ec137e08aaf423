"""Who may call: source addresses behind proxies, and the settings `ledger serve` refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from starlette.requests import HTTPConnection

from api.auth import client_address, source_allowed, webhook_secret_ok
from api.settings import (
    TRADINGVIEW_IPS,
    ServeSettings,
    SettingsError,
    from_environment,
    parse_networks,
)
from ledger.config import Limits
from tests.alerts import Alerts
from tests.api_client import SECRET, service

TRADINGVIEW = parse_networks("tradingview", "test")
NGINX = parse_networks("127.0.0.1, ::1", "test")


def connection(peer: str, *forwarded: str) -> HTTPConnection:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return HTTPConnection({"type": "http", "client": (peer, 40000), "headers": headers})


def test_tradingview_stands_for_its_four_addresses():
    assert [str(n.network_address) for n in TRADINGVIEW] == list(TRADINGVIEW_IPS)


def test_the_peer_is_the_client_when_it_is_not_a_trusted_proxy():
    # A caller cannot claim to be TradingView by writing the header itself.
    c = connection("203.0.113.9", TRADINGVIEW_IPS[0])
    assert str(client_address(c, NGINX)) == "203.0.113.9"
    assert not source_allowed(c, TRADINGVIEW, NGINX)


def test_behind_a_trusted_proxy_the_last_untrusted_hop_is_the_client():
    c = connection("127.0.0.1", f"198.51.100.7, {TRADINGVIEW_IPS[1]}")
    assert str(client_address(c, NGINX)) == TRADINGVIEW_IPS[1]
    assert source_allowed(c, TRADINGVIEW, NGINX)
    # Whatever the sender wrote to the left is ignored, however it is spelled.
    spoofed = connection("127.0.0.1", f"{TRADINGVIEW_IPS[0]}, 198.51.100.7")
    assert not source_allowed(spoofed, TRADINGVIEW, NGINX)
    several = connection("127.0.0.1", TRADINGVIEW_IPS[2], "127.0.0.1")
    assert str(client_address(several, NGINX)) == TRADINGVIEW_IPS[2]


def test_garbage_from_a_trusted_proxy_is_believed_by_nobody():
    assert client_address(connection("127.0.0.1", "not-an-ip"), NGINX) is None
    assert not source_allowed(connection("127.0.0.1", "not-an-ip"), TRADINGVIEW, NGINX)


def test_ipv4_mapped_peers_and_ports_are_understood():
    assert str(client_address(connection("::ffff:52.89.214.238"), ())) == TRADINGVIEW_IPS[0]
    c = connection("::1", f"[2001:db8::1]:443, {TRADINGVIEW_IPS[3]}:5555")
    assert str(client_address(c, NGINX)) == TRADINGVIEW_IPS[3]


def test_no_allowlist_lets_everyone_through():
    assert source_allowed(connection("203.0.113.9"), None, ())


def test_secret_compare_needs_a_string_equal_to_the_configured_one():
    assert webhook_secret_ok({"secret": SECRET}, SECRET)
    assert not webhook_secret_ok({"secret": SECRET[:-1]}, SECRET)
    assert not webhook_secret_ok({"secret": "\ud800"}, SECRET)  # a lone surrogate: no crash
    assert not webhook_secret_ok({}, SECRET)
    assert webhook_secret_ok({}, None)


def test_webhook_from_a_disallowed_address_is_403(store_url, ledger):
    # The test client's peer is "testclient", which is no address at all.
    with service(store_url, allowlist=TRADINGVIEW) as api:
        before = ledger.recorder.max_notification_id()
        r = api.post("/webhook", json=Alerts().base(52000, 51900, 100))
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert ledger.recorder.max_notification_id() == before


# --- settings --------------------------------------------------------------------------


def test_environment_sets_secrets_allowlist_proxies_and_bounds():
    s = from_environment(Limits(body_bytes_max=1000), {
        "LEDGER_WEBHOOK_SECRET": "hook-secret", "LEDGER_API_TOKEN": "read-token",
        "LEDGER_WEBHOOK_ALLOWLIST": "tradingview, 10.0.0.0/8",
        "LEDGER_TRUSTED_PROXIES": "127.0.0.1", "LEDGER_REQUEST_TIMEOUT_MS": "1500"})
    assert (s.webhook_secret, s.api_token, s.body_bytes_max, s.request_timeout_ms) == (
        "hook-secret", "read-token", 1000, 1500)
    assert s.allowlist is not None and len(s.allowlist) == 5
    assert "hook-secret" not in repr(s) and "read-token" not in repr(s)
    assert from_environment(Limits(), {}).allowlist is None
    assert from_environment(Limits(), {"LEDGER_WEBHOOK_ALLOWLIST": "on"}).allowlist == TRADINGVIEW


@pytest.mark.parametrize("env", [{"LEDGER_WEBHOOK_ALLOWLIST": "300.1.1.1"},
                                 {"LEDGER_TRUSTED_PROXIES": "nginx"},
                                 {"LEDGER_REQUEST_TIMEOUT_MS": "soon"},
                                 {"LEDGER_DECISION_THREADS": "0"}])
def test_unusable_environment_is_refused(env):
    with pytest.raises(SettingsError):
        from_environment(Limits(), env)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_refuses_a_non_loopback_address_without_a_secret(host):
    with pytest.raises(SettingsError, match="LEDGER_WEBHOOK_SECRET"):
        ServeSettings(host=host).check_startable(Limits(), bounded_pool=False)
    ServeSettings(host=host, webhook_secret="s").check_startable(Limits(), bounded_pool=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_secret(host):
    ServeSettings(host=host).check_startable(Limits(), bounded_pool=False)


def test_worker_threads_must_stay_below_the_connection_pool():
    limits = Limits(store_pool_size=4, store_pool_overflow=2)
    with pytest.raises(SettingsError, match="connection pool"):
        ServeSettings(decision_threads=4, read_threads=2).check_startable(limits, bounded_pool=True)
    ServeSettings(decision_threads=3, read_threads=2).check_startable(limits, bounded_pool=True)


def test_ledger_serve_exits_2_on_a_public_address_without_a_secret(tmp_path):
    ledger = Path(sys.executable).with_name("ledger")
    env = {"PATH": "/usr/bin:/bin", "LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"}
    done = subprocess.run([str(ledger), "serve", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 2
    assert "LEDGER_WEBHOOK_SECRET" in done.stderr
