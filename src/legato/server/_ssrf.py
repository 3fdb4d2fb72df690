"""SSRF policy for URLs that clients supply (image URLs, custom base URLs).

A URL passes when its scheme is allowed and every address its host stands for is a
public unicast address, or the host/network is allow-listed. Refused: private
(RFC 1918, ULA), loopback, link-local (including the 169.254.169.254 cloud metadata
address), carrier-grade NAT (which holds 100.100.100.200, another metadata
address), multicast, reserved and unspecified ranges, and IPv4 hidden inside IPv6
(IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo).

Host literals are read the way ``inet_aton`` reads them, because that is how the
resolver of the machine that eventually connects will read them: ``2130706433``,
``0x7f000001``, ``0177.0.0.1``, ``127.1`` and ``0x7f.1`` are all 127.0.0.1. Python's
:mod:`ipaddress` only accepts the dotted-decimal form, so that parsing is written
here (a few lines, and the reason this module exists rather than a dependency).
Host names are resolved and every address is checked; ``metadata.google.internal``
and friends are refused by name.

Redirects: the gateway never follows a redirect blindly. :meth:`SSRFPolicy.transport`
wraps an httpx transport so that *every* request, including each redirect hop the
client follows, is checked before it is sent.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import anyio
import httpx

from legato.errors import URLNotAllowed
from legato.server._settings import SSRFSettings

__all__ = ["SSRFPolicy", "parse_host_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Awaitable[list[str]]]

_METADATA_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")
_IPV4_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


def parse_host_ip(host: str) -> IPAddress | None:
    """The IP address a host literal stands for, in any encoding; None for a name.

    Raises :class:`URLNotAllowed` for a numeric-looking host that is not a valid address
    (resolvers disagree about such hosts, so they are refused rather than guessed).
    """
    h = host.strip().rstrip(".").lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        h = h.split("%", 1)[0]  # zone id
        try:
            return ipaddress.IPv6Address(h)
        except ValueError as exc:
            raise URLNotAllowed(f"invalid IPv6 host {host!r}") from exc
    if not h or not _NUMERIC_HOST.match(h):
        return None  # letters beyond hex digits, or other characters: a name
    parts = h.split(".")
    if len(parts) > 4 or not all(_IPV4_PART.match(p) for p in parts):
        if all(p[:1].isdigit() for p in parts):
            raise URLNotAllowed(f"host {host!r} looks like an IP address but is not a valid one")
        return None  # e.g. "cafe.be": a name spelt with hex letters
    values = [_ipv4_part(p) for p in parts]
    # inet_aton: the last part fills all the remaining bytes.
    limits = {1: [2**32], 2: [256, 2**24], 3: [256, 256, 2**16], 4: [256, 256, 256, 256]}[len(values)]
    if any(v >= lim for v, lim in zip(values, limits, strict=True)):
        raise URLNotAllowed(f"host {host!r} is out of range for an IPv4 address")
    number = 0
    for v in values[:-1]:
        number = number * 256 + v
    number = (number << (8 * (5 - len(values)))) | values[-1] if len(values) > 1 else values[0]
    return ipaddress.IPv4Address(number)


def _ipv4_part(part: str) -> int:
    if part.startswith("0x"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)
    return int(part)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    # IPv4-compatible (deprecated) ::a.b.c.d
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip))
    return None


async def _system_resolver(host: str) -> list[str]:
    infos = await anyio.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class SSRFPolicy:
    """Checks user-supplied URLs. ``check`` raises :class:`URLNotAllowed` with the reason."""

    def __init__(self, settings: SSRFSettings | None = None, *, resolver: Resolver | None = None) -> None:
        self.settings = settings or SSRFSettings()
        self._resolve = resolver or _system_resolver
        self._hosts = [h.lower().rstrip(".") for h in self.settings.allow_hosts]
        self._networks = [ipaddress.ip_network(n, strict=False) for n in self.settings.allow_networks]

    def _host_allowed(self, host: str) -> bool:
        for pattern in self._hosts:
            if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return True
        return False

    def _ip_allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self._networks)

    def check_ip(self, ip: IPAddress, shown: str) -> None:
        if self._ip_allowed(ip):
            return
        if isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_ipv4(ip)
            if inner is not None:
                self.check_ip(inner, shown)
                return
        if not ip.is_global or ip.is_multicast:
            raise URLNotAllowed(f"URL host {shown!r} is a non-public address ({ip}); it is not allowed")

    async def check(self, url: str) -> None:
        """Refuse ``url`` unless it is allowed. ``data:`` URLs carry their content and pass."""
        if url.startswith("data:"):
            return
        try:
            parts = urlsplit(url)
            host = parts.hostname
            _ = parts.port
        except ValueError as exc:
            raise URLNotAllowed(f"malformed URL: {exc}") from exc
        if parts.scheme.lower() not in self.settings.schemes:
            raise URLNotAllowed(
                f"URL scheme {parts.scheme!r} is not allowed (allowed: {', '.join(self.settings.schemes)})"
            )
        if not host:
            raise URLNotAllowed("URL has no host")
        host = host.rstrip(".").lower()
        if self._host_allowed(host):
            return
        ip = parse_host_ip(host)
        if ip is not None:
            self.check_ip(ip, host)
            return
        if host in _METADATA_NAMES or host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
            raise URLNotAllowed(f"URL host {host!r} is an internal name; it is not allowed")
        if not self.settings.resolve_dns:
            return
        try:
            addresses = await self._resolve(host)
        except OSError as exc:
            raise URLNotAllowed(f"URL host {host!r} does not resolve: {exc.strerror or exc}") from exc
        if not addresses:
            raise URLNotAllowed(f"URL host {host!r} does not resolve")
        for address in addresses:
            self.check_ip(ipaddress.ip_address(address.split("%", 1)[0]), host)

    async def check_all(self, urls: Iterable[str]) -> None:
        for url in urls:
            await self.check(url)

    def transport(self, inner: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncBaseTransport:
        """An httpx transport that checks every request it sends, redirect hops included."""
        return _GuardedTransport(self, inner or httpx.AsyncHTTPTransport())


class _GuardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, policy: SSRFPolicy, inner: httpx.AsyncBaseTransport) -> None:
        self.policy = policy
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.policy.check(str(request.url))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
