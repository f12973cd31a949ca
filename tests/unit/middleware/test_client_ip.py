"""The client address: the peer, or X-Forwarded-For believed only from trusted proxies."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from middleware.client_ip import client_ip_of, parse_address, resolve_client_ip

PROXIES = (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"), ip_network("2001:db8::/32"))


def scope(peer: str | None, *forwarded: str) -> dict:
    return {
        "type": "http",
        "client": (peer, 1234) if peer else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


def test_without_trusted_proxies_the_header_is_ignored():
    assert resolve_client_ip(scope("198.51.100.9", "1.2.3.4")) == "198.51.100.9"


def test_an_untrusted_peer_cannot_pick_its_address():
    assert resolve_client_ip(scope("198.51.100.9", "1.2.3.4"), PROXIES) == "198.51.100.9"


def test_the_first_untrusted_hop_from_the_right_is_the_client():
    # The client wrote "6.6.6.6" itself; the proxies appended what they saw.
    request = scope("10.0.0.2", "6.6.6.6, 203.0.113.5, 10.0.0.1")
    assert resolve_client_ip(request, PROXIES) == "203.0.113.5"


def test_several_headers_are_one_list():
    request = scope("127.0.0.1", "6.6.6.6", "203.0.113.5")
    assert resolve_client_ip(request, PROXIES) == "203.0.113.5"


def test_all_hops_trusted_gives_the_leftmost():
    assert resolve_client_ip(scope("10.0.0.2", "10.9.9.9, 10.0.0.1"), PROXIES) == "10.9.9.9"


def test_a_malformed_hop_stops_the_walk():
    request = scope("10.0.0.2", "203.0.113.5, not-an-ip, 10.0.0.1")
    assert resolve_client_ip(request, PROXIES) == "10.0.0.1"


def test_a_trusted_peer_without_the_header_is_the_client():
    assert resolve_client_ip(scope("127.0.0.1"), PROXIES) == "127.0.0.1"


def test_no_peer_at_all():
    assert resolve_client_ip(scope(None), PROXIES) == "unknown"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("203.0.113.5:8080", "203.0.113.5"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:203.0.113.5", "203.0.113.5"),
        (" 203.0.113.5 ", "203.0.113.5"),
        ("unknown", None),
        ("", None),
    ],
)
def test_addresses_with_ports_brackets_and_mapped_ipv4(value, expected):
    parsed = parse_address(value)
    assert (str(parsed) if parsed else None) == expected


def test_ipv6_proxies():
    assert resolve_client_ip(scope("2001:db8::7", "2001:db9::1"), PROXIES) == "2001:db9::1"


def test_the_resolved_address_is_reused_from_the_request_state():
    request = scope("10.0.0.2", "203.0.113.5")
    request["state"] = {"client_ip": "192.0.2.44"}
    assert client_ip_of(request, PROXIES) == "192.0.2.44"
    del request["state"]
    assert client_ip_of(request, PROXIES) == "203.0.113.5"
