"""Caps per address count an IPv6 host by its /64 (issue 18)."""

from __future__ import annotations

from hoody_mount.core.addresses import client_of


def test_ipv6_addresses_count_by_their_64() -> None:
    assert client_of("2001:db8:1:2::1") == client_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_of("2001:db8:1:3::1") != client_of("2001:db8:1:2::1")
    assert client_of("fe80::1%eth0") == "fe80::/64"


def test_ipv4_addresses_count_one_by_one() -> None:
    assert client_of("127.0.0.1") == "127.0.0.1"
    assert client_of("127.0.0.2") != client_of("127.0.0.1")
    assert client_of("::ffff:10.0.0.7") == "10.0.0.7"
    assert client_of("not an address") == "not an address"
