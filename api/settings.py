"""What `ledger serve` is configured with: the environment, read once into a frozen object.

Secrets and the allowlist come from the environment (the same place as LEDGER_DATABASE_URL);
every bound has a default here and names its unit. ``body_bytes_max`` is the ledger's own
limit (``[limits]`` in LEDGER_CONFIG), so the CLI and the webhook refuse the same alerts.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ledger.config import Limits

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# TradingView sends webhooks only from these addresses (its documentation, 2025).
TRADINGVIEW_IPS = ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7")

ENV_SECRET = "LEDGER_WEBHOOK_SECRET"
ENV_TOKEN = "LEDGER_API_TOKEN"
ENV_ALLOWLIST = "LEDGER_WEBHOOK_ALLOWLIST"
ENV_PROXIES = "LEDGER_TRUSTED_PROXIES"
# Bounds that an operator may want to move without a code change.
ENV_BOUNDS = {
    "request_timeout_ms": "LEDGER_REQUEST_TIMEOUT_MS",
    "decision_threads": "LEDGER_DECISION_THREADS",
    "read_threads": "LEDGER_READ_THREADS",
    "queue_depth_max": "LEDGER_QUEUE_DEPTH_MAX",
    "graceful_timeout_ms": "LEDGER_GRACEFUL_TIMEOUT_MS",
    "signal_lock_wait_ms": "LEDGER_SIGNAL_LOCK_WAIT_MS",
    "header_read_timeout_s": "LEDGER_HEADER_READ_TIMEOUT_S",
}


class SettingsError(ValueError):
    """The serve configuration is unusable; the message says why."""


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    webhook_secret: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    # None: no source-IP check. Otherwise the networks a webhook may come from.
    allowlist: tuple[IPNetwork, ...] | None = None
    # Peers whose X-Forwarded-For is believed (nginx in front); everyone else's is ignored.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    body_bytes_max: int = Limits.body_bytes_max
    json_depth_max: int = 32  # nesting levels in an alert (TradingView's are flat)
    # TradingView gives up after 3 s; answer (if need be with 503, so it retries) before then.
    request_timeout_ms: int = 2000
    # Worker threads for decisions and for reads. Together they stay below the store's
    # connection pool (Limits.store_pool_size + store_pool_overflow), so a thread never
    # waits for a connection another thread of ours is holding.
    decision_threads: int = 6
    read_threads: int = 4
    queue_depth_max: int = 512  # requests waiting for a decision thread before 503
    # Longest a redelivery waits for its twin being decided (api/dedupe.py); 0: no waiting.
    signal_lock_wait_ms: int = 1000
    list_limit_max: int = 500  # rows in one /positions or /signals answer
    list_limit_default: int = 100
    graceful_timeout_ms: int = 10_000  # in-flight requests may finish within this on SIGTERM
    shutdown_wait_ms: int = 5_000  # then running decisions may still commit within this
    # A connection must send a complete request head within this of opening (or of its
    # previous answer), however slowly it trickles bytes, or it is closed: slow or stalled
    # headers must not hold connections. Hypercorn times this and idle keep-alive with one
    # timer, so kept-alive connections are closed after the shorter of the two; a proxy
    # keeping upstream connections must let them go sooner (docker/nginx.conf: 4 s).
    header_read_timeout_s: int = 5
    keep_alive_timeout_s: int = 75  # idle; but see header_read_timeout_s

    def __post_init__(self) -> None:
        for name in ("body_bytes_max", "json_depth_max", "request_timeout_ms",
                     "decision_threads", "read_threads", "queue_depth_max", "list_limit_max",
                     "list_limit_default", "graceful_timeout_ms", "shutdown_wait_ms",
                     "keep_alive_timeout_s", "header_read_timeout_s"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.signal_lock_wait_ms < 0:
            raise SettingsError(f"signal_lock_wait_ms must not be negative, got "
                                f"{self.signal_lock_wait_ms}")
        if self.list_limit_default > self.list_limit_max:
            raise SettingsError("list_limit_default must not exceed list_limit_max")

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    def check_startable(self, limits: Limits, bounded_pool: bool) -> None:
        """Refuse configurations that would be unsafe or self-starving to run."""
        if not self.is_loopback and not self.webhook_secret:
            raise SettingsError(
                f"refusing to listen on {self.host}: set {ENV_SECRET} (a webhook secret is "
                f"required on any address other than loopback)")
        connections = limits.store_pool_size + limits.store_pool_overflow
        if bounded_pool and self.decision_threads + self.read_threads >= connections:
            raise SettingsError(
                f"decision_threads + read_threads ({self.decision_threads} + "
                f"{self.read_threads}) must stay below the store's connection pool "
                f"({connections} = store_pool_size + store_pool_overflow)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def parse_networks(text: str, what: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or CIDR blocks; ``tradingview`` stands for its four IPs."""
    networks: list[IPNetwork] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.lower() == "tradingview":
            networks.extend(ipaddress.ip_network(ip) for ip in TRADINGVIEW_IPS)
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(f"{what}: {item!r} is not an IP address or CIDR block") from None
    return tuple(networks)


def from_environment(limits: Limits, environ: Mapping[str, str] | None = None, *,
                     host: str = "127.0.0.1", port: int = 8080) -> ServeSettings:
    """Settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    allowlist_text = env.get(ENV_ALLOWLIST, "").strip()
    settings = ServeSettings(
        host=host,
        port=port,
        webhook_secret=env.get(ENV_SECRET) or None,
        api_token=env.get(ENV_TOKEN) or None,
        # "tradingview" (or "on") enables TradingView's addresses; a list replaces them.
        allowlist=(None if allowlist_text.lower() in ("", "off")
                   else parse_networks("tradingview" if allowlist_text.lower() == "on"
                                       else allowlist_text, ENV_ALLOWLIST)),
        trusted_proxies=parse_networks(env.get(ENV_PROXIES, ""), ENV_PROXIES),
        body_bytes_max=limits.body_bytes_max,
    )
    changes = {}
    for name, variable in ENV_BOUNDS.items():
        raw = env.get(variable)
        if raw is None or not raw.strip():
            continue
        try:
            changes[name] = int(raw)
        except ValueError:
            raise SettingsError(f"{variable}: expected an integer, got {raw!r}") from None
    return replace(settings, **changes)
