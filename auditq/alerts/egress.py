"""Where notifications may go: never to this host or its private network, unless allowed.

A webhook URL is chosen by whoever holds the API token; without this check a channel (and
its "send test" action) would reach ``http://127.0.0.1:<port>/metrics`` or a cloud metadata
endpoint (``169.254.169.254``) from inside the deployment. So an address that is not
globally routable (loopback, private, link-local, carrier-grade NAT, reserved, unspecified)
is refused unless ``AUDITQ_ALERT_ALLOW_PRIVATE`` is set (dev mode and tests set it).

The check runs when a channel is saved (literal addresses, and names that resolve to such
an address) and again at every send, where the name is resolved once and the request goes
to exactly the address that was checked (``pin``): a DNS answer that changes between the
check and the connection (DNS rebinding) cannot redirect it. TLS still verifies the
certificate for the original host name (SNI and Host header keep the name).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

FLAG = "AUDITQ_ALERT_ALLOW_PRIVATE"


class Refused(ValueError):
    """The destination is not allowed (the message names the host, never the URL's secrets)."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal address resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Refused(f"cannot resolve {host}") from error
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host(host: str, port: int, allow_private: bool, *, strict: bool = True) -> list[str]:
    """The addresses to use for ``host``; Refused if any of them is private and that is not
    allowed. With ``strict=False`` (saving a channel) a name that does not resolve passes:
    DNS may be down now, and the send-time check decides."""
    if allow_private:
        return []
    try:
        addresses = resolve(host, port)
    except Refused:
        if strict:
            raise
        return []
    private = [a for a in addresses if not is_public(a)]
    if private:
        raise Refused(
            f"{host} is a loopback, private or link-local address (set {FLAG} to allow it)"
        )
    return addresses


@dataclass(frozen=True)
class Pinned:
    """A request bound to a checked address: pass ``url``, ``headers`` and ``extensions``."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


def pin(url: str, allow_private: bool) -> Pinned:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = check_host(host, port, allow_private)
    if not addresses:  # private destinations allowed: nothing to pin
        return Pinned(url)
    address = addresses[0]
    literal = f"[{address}]" if ":" in address else address
    netloc = literal + (f":{parts.port}" if parts.port else "")
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return Pinned(pinned, {"Host": host_header}, extensions)
