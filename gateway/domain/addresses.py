"""Which client a request comes from, for rate limits and sign-in throttling.

The peer of the TCP connection, unless that peer is a trusted proxy: then the
X-Forwarded-For chain is walked from the right, past every trusted proxy, to the first
address no trusted proxy vouches for. IPv6 clients are keyed by their /64 (one
subscriber usually holds a whole /64, so per-address keys would be free to rotate).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"
IPV6_PREFIX = 64
#: Hops read from X-Forwarded-For at most (a longer chain is cut on the left).
MAX_HOPS = 20


def parse_ip(text: str) -> IPAddress | None:
    """An address from "1.2.3.4", "1.2.3.4:5678", "::1" or "[::1]:5678"; None if it is none."""
    value = text.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_key(address: IPAddress) -> str:
    """The key limits count an address under: itself (IPv4) or its /64 (IPv6)."""
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    """Whether `address` is one of the trusted proxies."""
    return any(address.version == net.version and address in net for net in proxies)


def shares_its_address(address: IPAddress | None, proxies: Sequence[IPNetwork]) -> bool:
    """Whether a peer speaks for many clients, so per-address caps must not hold it:
    loopback (a proxy on this host, Docker's port proxy) or a trusted proxy."""
    return address is not None and (address.is_loopback or trusted(address, proxies))


def client_address(
    remote: str | None, forwarded_for: Iterable[str], proxies: Sequence[IPNetwork]
) -> str:
    """The limit key of the client behind `remote` (see the module docstring)."""
    peer = parse_ip(remote) if remote else None
    if peer is None:
        return UNKNOWN
    if not trusted(peer, proxies):
        return address_key(peer)
    hops = [hop for header in forwarded_for for hop in header.split(",")][-MAX_HOPS:]
    client = peer
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            break  # garbage left of a trusted hop: the last trusted hop is all we know
        client = address
        if not trusted(address, proxies):
            break
    return address_key(client)
