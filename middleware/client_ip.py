"""The client's address: the TCP peer, or what trusted proxies say in `X-Forwarded-For`.

`X-Forwarded-For` is written by every hop, and the client controls its leftmost entries, so it
is believed only from the right: starting at the peer, each hop that is a configured trusted
proxy hands over to the address it forwarded for; the first address that is not a trusted proxy
is the client. With no trusted proxies configured the header is ignored entirely, so a client
cannot pick its own rate-limit bucket by sending one.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.types import Scope

CLIENT_IP_STATE_KEY = "client_ip"
FORWARDED_FOR = b"x-forwarded-for"
UNKNOWN = "unknown"

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


def parse_address(value: str) -> Address | None:
    """An address from a peer or a forwarded hop, which may carry a port (`1.2.3.4:80`,
    `[2001:db8::1]:443`); IPv4-mapped IPv6 addresses become plain IPv4."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def resolve_client_ip(scope: Scope, trusted_proxies: Sequence[Network] = ()) -> str:
    client = scope.get("client")
    peer = client[0] if client else None
    if peer is None:
        return UNKNOWN
    if not trusted_proxies:
        return peer
    peer_address = parse_address(peer)
    if peer_address is None or not _trusted(peer_address, trusted_proxies):
        return peer
    forwarded = b",".join(v for k, v in scope.get("headers", ()) if k == FORWARDED_FOR)
    candidate = str(peer_address)
    for hop in reversed(forwarded.decode("latin-1").split(",")):
        if not hop.strip():
            continue
        address = parse_address(hop)
        if address is None:
            break  # a malformed hop: nothing to its left can be believed
        candidate = str(address)
        if not _trusted(address, trusted_proxies):
            break
    return candidate


def rate_limit_bucket(client_ip: str) -> str:
    """The rate-limit subject of a client address: an IPv4 address alone, an IPv6 address by
    its /64 (one subscriber's whole allocation: it can pick any of 2^64 addresses in it)."""
    address = parse_address(client_ip)
    if isinstance(address, IPv6Address):
        return str(IPv6Network((address, 64), strict=False))
    return client_ip


def client_ip_of(scope: Scope, trusted_proxies: Sequence[Network] = ()) -> str:
    """The address the request middleware resolved, or resolve it now (middleware used alone)."""
    known = scope.get("state", {}).get(CLIENT_IP_STATE_KEY)
    return known if known is not None else resolve_client_ip(scope, trusted_proxies)
