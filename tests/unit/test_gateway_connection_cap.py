"""The gateway's connection cap: in all, and per client address."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from gateway.entrypoints.server import SHARED, ConnectionCap

PROXY = ipaddress.ip_network("10.0.0.0/8")


def test_one_address_cannot_fill_the_cap_and_lock_others_out() -> None:
    """A host holding idle connections kept everyone out, the health check included."""
    cap = ConnectionCap(limit=10, per_address=3, proxies=[PROXY])
    held = [cap.admit(("203.0.113.9", 1000 + i)) for i in range(3)]
    assert held == ["203.0.113.9"] * 3
    assert cap.admit(("203.0.113.9", 2000)) is None
    assert cap.admit(("198.51.100.7", 1)) == "198.51.100.7"
    cap.release("203.0.113.9")
    assert cap.admit(("203.0.113.9", 2001)) == "203.0.113.9"  # a slot came back
    assert (cap.open, cap.refused) == (4, 1)


def test_an_ipv6_client_is_counted_by_its_64() -> None:
    cap = ConnectionCap(limit=10, per_address=2)
    assert cap.admit(("2001:db8::1", 1, 0, 0)) == "2001:db8::/64"
    assert cap.admit(("2001:db8::2", 1, 0, 0)) == "2001:db8::/64"
    assert cap.admit(("2001:db8::3", 1, 0, 0)) is None
    assert cap.admit(("2001:db8:0:1::1", 1, 0, 0)) == "2001:db8:0:1::/64"


def test_trusted_proxies_and_loopback_share_only_the_whole_cap() -> None:
    cap = ConnectionCap(limit=6, per_address=1, proxies=[PROXY])
    assert [cap.admit(("10.1.2.3", i)) for i in range(3)] == [SHARED] * 3
    assert [cap.admit(("127.0.0.1", i)) for i in range(3)] == [SHARED] * 3
    assert cap.admit(("127.0.0.1", 9)) is None  # MAX_CONNECTIONS holds for everyone
    assert cap.admit(("10.1.2.3", 9)) is None
    cap.release(SHARED)
    assert cap.open == 5


def test_a_trusted_ipv6_proxy_leaves_its_64_its_share() -> None:
    """Counted under its /64, a busy proxy locked out every other host of its LAN."""
    proxy = ipaddress.ip_network("2001:db8:1::10/128")
    cap = ConnectionCap(limit=100, per_address=2, proxies=[proxy])
    assert [cap.admit(("2001:db8:1::10", i, 0, 0)) for i in range(5)] == [SHARED] * 5
    assert cap.admit(("2001:db8:1::20", 1, 0, 0)) == "2001:db8:1::/64"


@given(
    events=st.lists(
        st.tuples(st.booleans(), st.sampled_from(["192.0.2.1", "192.0.2.2", "10.0.0.1", "::1"])),
        max_size=200,
    ),
    limit=st.integers(1, 20),
    per_address=st.integers(1, 20),
)
def test_the_counts_never_pass_the_caps_and_come_back_on_release(
    events: list[tuple[bool, str]], limit: int, per_address: int
) -> None:
    cap = ConnectionCap(limit, per_address, proxies=[PROXY])
    held: list[str] = []
    for opening, host in events:
        if opening:
            key = cap.admit((host, 1))
            if key is not None:
                held.append(key)
        elif held:
            cap.release(held.pop(0))
        assert cap.open == len(held) <= limit
        for key in set(held) - {SHARED}:  # trusted proxies, loopback
            assert held.count(key) <= per_address
    for key in held:
        cap.release(key)
    assert cap.open == 0


def test_a_peer_without_an_address_is_counted_as_unknown() -> None:
    cap = ConnectionCap(limit=5, per_address=1)
    assert cap.admit(None) == "unknown"
    assert cap.admit("/tmp/socket") is None  # a second one shares the key
