"""Who may call: the webhook secret, the read token, and the webhook's source addresses.

Secrets are compared in constant time and never logged, echoed or stored.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import HTTPConnection

from api.settings import IPNetwork

SECRET_FIELD = "secret"  # TradingView cannot set headers: the secret travels in the body


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8"))


def webhook_secret_ok(data: Mapping[str, Any], expected: str | None) -> bool:
    """The alert's ``secret`` field matches (always true when no secret is configured)."""
    if expected is None:
        return True
    given = data.get(SECRET_FIELD)
    return isinstance(given, str) and _equal(given, expected)


def bearer_ok(connection: HTTPConnection, expected: str | None) -> bool:
    """``Authorization: Bearer <token>`` matches (always true when no token is configured)."""
    if expected is None:
        return True
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and _equal(token.strip(), expected)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
            networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def client_address(connection: HTTPConnection, trusted_proxies: Sequence[IPNetwork]
                   ) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The caller's address: the socket peer, or, when the peer is a trusted proxy, the
    right-most X-Forwarded-For entry that is not itself a trusted proxy.

    Entries left of the first untrusted one were written by whoever sent the request and
    prove nothing, so they are never read. None when no address can be established.
    """
    peer = _address(connection.client.host) if connection.client else None
    if peer is None or not _within(peer, trusted_proxies):
        return peer
    hops = [h for value in connection.headers.getlist("x-forwarded-for")
            for h in value.split(",") if h.strip()]
    address = peer
    for hop in reversed(hops):
        address_or_none = _address(hop)
        if address_or_none is None:
            return None  # a proxy we trust wrote garbage: believe nothing
        address = address_or_none
        if not _within(address, trusted_proxies):
            return address
    return address


def source_allowed(connection: HTTPConnection, allowlist: Sequence[IPNetwork] | None,
                   trusted_proxies: Sequence[IPNetwork]) -> bool:
    if allowlist is None:
        return True
    address = client_address(connection, trusted_proxies)
    return address is not None and _within(address, allowlist)
