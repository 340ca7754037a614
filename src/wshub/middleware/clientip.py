"""Header lookup and client-IP resolution for the pre-upgrade chain.

``resolve_client_ip`` is what the transport calls once per upgrade to fill
``Request.client_ip``: the peer address, unless the peer is a trusted proxy, in which case
``X-Forwarded-For`` is walked right to left, skipping trusted hops, and the first address
that is not a trusted proxy is the client. Entries to the left of it were written by the
client itself and are never believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache

from wshub.errors import ConfigError

__all__ = ["get_header", "parse_trusted", "resolve_client_ip"]

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def get_header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` case-insensitively (the transport's mapping already is; plain dicts
    built by tests or embedders may not be)."""
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    value = headers.get(lower)
    if value is not None:
        return value
    for k, v in headers.items():
        if k.lower() == lower:
            return v
    return None


def parse_trusted(trusted: Sequence[str]) -> tuple[_Net, ...]:
    """Parse IPs/CIDRs (``limits.trusted_proxies``); raises ConfigError on a bad entry."""
    return _parse_trusted(tuple(trusted))


@lru_cache(maxsize=32)
def _parse_trusted(trusted: tuple[str, ...]) -> tuple[_Net, ...]:
    nets: list[_Net] = []
    for entry in trusted:
        try:
            nets.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ConfigError("limits.trusted_proxies", f"not an IP or CIDR: {entry!r}") from None
    return tuple(nets)


def _parse_ip(text: str) -> _Addr | None:
    """An address from an XFF entry or a peer string; tolerates ``ip:port``, ``[v6]:port``
    and IPv4-mapped IPv6 (returned as IPv4)."""
    s = text.strip().strip('"')
    if not s:
        return None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            return None
        s = s[1:end]
    elif s.count(":") == 1:  # IPv4 with a port
        s = s.split(":", 1)[0]
    s = s.split("%", 1)[0]  # zone id
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _is_trusted(addr: _Addr, nets: tuple[_Net, ...]) -> bool:
    return any(addr.version == n.version and addr in n for n in nets)


def resolve_client_ip(peer_ip: str, headers: Mapping[str, str], trusted: Sequence[str]) -> str:
    """The client address of an upgrade request (see the module docstring).

    Returns ``peer_ip`` unchanged when it is not a trusted proxy (or not an IP at all).
    When every X-Forwarded-For hop is trusted, the leftmost one is returned; a malformed
    entry stops the walk at the last good hop.
    """
    if not trusted:
        return peer_ip
    peer = _parse_ip(peer_ip)
    nets = parse_trusted(trusted)
    if peer is None or not _is_trusted(peer, nets):
        return peer_ip
    xff = get_header(headers, "X-Forwarded-For")
    if not xff:
        return str(peer)
    current: _Addr = peer
    for entry in reversed(xff.split(",")):
        addr = _parse_ip(entry)
        if addr is None:
            break
        current = addr
        if not _is_trusted(addr, nets):
            break
    return str(current)
