"""Who may read ``/metrics``: a client network from ``metrics_allow``, or the bearer
token ``metrics_token``.

The metrics name every platform and server type and show the queue's
traffic: not for the public. The client's address is the one the rest of
the app believes (:func:`graderqueue.identity.servers.client_ip`): nginx's
``X-Real-IP`` only when nginx is a trusted proxy. A request that carries
forwarding headers but does not come from a trusted proxy went through a
proxy the app was not told about, so its address is the proxy's, not the
client's (nginx on 127.0.0.1 would make everyone local): such a request
needs the token.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Mapping
from enum import Enum

from graderqueue.config import Settings
from graderqueue.errors import ConfigError
from graderqueue.identity import servers

FORWARDING_HEADERS = ("X-Real-IP", "X-Forwarded-For", "Forwarded")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Verdict(Enum):
    ALLOWED = "allowed"
    NEEDS_TOKEN = "needs token"  # 401: the token would open it
    REFUSED = "refused"  # 403: no token is configured


@functools.cache
def networks(allowed: tuple[str, ...]) -> tuple[Network, ...]:
    """``metrics_allow`` parsed; a wrong entry stops the app at start (ConfigError)."""
    parsed = []
    for entry in allowed:
        try:
            parsed.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"metrics_allow: {entry!r} is not an address or network") from exc
    return tuple(parsed)


def check_settings(settings: Settings) -> None:
    networks(settings.metrics_allow)


def _token_matches(settings: Settings, authorization: str) -> bool:
    if not settings.metrics_token:
        return False
    expected = f"Bearer {settings.metrics_token}".encode()
    return hmac.compare_digest(authorization.strip().encode(), expected)


def _address_allowed(settings: Settings, remote_addr: str, headers: Mapping[str, str]) -> bool:
    caller = servers.Caller(remote_addr=remote_addr, headers=headers, server_token=None)
    trusted = servers.from_trusted_proxy(caller, settings.trusted_proxies)
    if not trusted and any(headers.get(name) for name in FORWARDING_HEADERS):
        return False
    address = servers.client_ip(caller, settings.trusted_proxies)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket is 127.0.0.1
    return any(ip in network for network in networks(settings.metrics_allow))


def verdict(settings: Settings, remote_addr: str, headers: Mapping[str, str]) -> Verdict:
    if _token_matches(settings, headers.get("Authorization", "")):
        return Verdict.ALLOWED
    if _address_allowed(settings, remote_addr, headers):
        return Verdict.ALLOWED
    return Verdict.NEEDS_TOKEN if settings.metrics_token else Verdict.REFUSED
