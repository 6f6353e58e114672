"""Token buckets, the rate limits built on them, and which address a client is."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from gateway.domain.addresses import UNKNOWN, address_key, client_address, parse_ip
from gateway.domain.rate_limit import Rate, TokenBuckets
from gateway.errors import GatewayError
from gateway.services.limits import Action, RateLimits, Scope

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "rate"), [("20/60", Rate(20, 60)), (" 5/0.5 ", Rate(5, 0.5)), ("off", Rate(0, 1))]
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize(
    "text",
    ["", "20", "x/60", "20/0", "-1/5", "20/inf", "20/nan", "1/-1", "1" + "0" * 400 + "/60"],
)
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="N/SECONDS"):
        Rate.parse(text)


@given(st.integers(min_value=-(10**20), max_value=10**20), st.floats(allow_nan=True))
def test_a_rate_is_refused_or_makes_buckets(capacity: int, period: float) -> None:
    """A capacity of hundreds of digits passed the settings and overflowed a float when
    the buckets were built: a traceback at start (found in review)."""
    try:
        rate = Rate.parse(f"{capacity}/{period!r}")
    except ValueError:
        return
    bucket = TokenBuckets(rate)
    assert bucket.wait("k", 0.0) == 0.0


def test_a_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    buckets = TokenBuckets(Rate(3, 30))  # 3 at once, then one every 10 s
    for _ in range(3):
        assert buckets.wait("k", 0) == 0
        buckets.take("k", 0)
    assert buckets.wait("k", 0) == pytest.approx(10)
    assert buckets.wait("k", 4) == pytest.approx(6)
    assert buckets.wait("other", 4) == 0
    assert buckets.wait("k", 10) == 0


@given(st.lists(st.tuples(st.floats(0, 5), st.booleans()), max_size=300), st.integers(1, 10))
def test_a_bucket_never_admits_more_than_capacity_plus_refill(
    steps: list[tuple[float, bool]], capacity: int
) -> None:
    buckets, now, admitted = TokenBuckets(Rate(capacity, 10.0)), 0.0, 0
    for delta, try_one in steps:
        now += delta
        if try_one and buckets.wait("k", now) == 0:
            buckets.take("k", now)
            admitted += 1
    assert admitted <= capacity + now * capacity / 10.0 + 1e-9


def test_buckets_are_bounded_in_keys() -> None:
    buckets = TokenBuckets(Rate(1, 60), max_keys=100)
    for n in range(1000):
        buckets.take(f"k{n}", 0)
    assert len(buckets) == 100


def _limits(clock: Clock) -> RateLimits:
    rules = {
        (Action.POST_MESSAGE, Scope.USER): Rate(2, 10),
        (Action.POST_MESSAGE, Scope.ADDRESS): Rate(3, 10),
        (Action.SIGN_UP, Scope.ADDRESS): Rate.parse("off"),
    }
    return RateLimits(rules, clock)


def test_every_bucket_of_an_action_must_have_a_token_and_refusals_spend_none() -> None:
    clock = Clock()
    limits = _limits(clock)
    limits.admit(Action.POST_MESSAGE, address="1.1.1.1", user="7")
    limits.admit(Action.POST_MESSAGE, address="1.1.1.1", user="7")
    with pytest.raises(GatewayError) as caught:
        limits.admit(Action.POST_MESSAGE, address="1.1.1.1", user="7")
    error = caught.value
    assert error.code is ErrorCode.TOO_MANY_ATTEMPTS and error.headers["Retry-After"] == "5"
    assert "from this user" in error.message
    limits.admit(Action.POST_MESSAGE, address="1.1.1.1", user="8")  # address still has one
    with pytest.raises(GatewayError, match="from this address"):
        limits.admit(Action.POST_MESSAGE, address="1.1.1.1", user="9")
    clock.now += 5
    limits.admit(Action.POST_MESSAGE, address="2.2.2.2", user="7")


def test_unlimited_and_unconfigured_actions_always_pass() -> None:
    limits = _limits(Clock())
    for _ in range(1000):
        limits.admit(Action.SIGN_UP, address="1.1.1.1")
        limits.admit(Action.CREATE_CHAT, address="1.1.1.1", user="1")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("192.0.2.7", "192.0.2.7"),
        (" 192.0.2.7:443 ", "192.0.2.7"),
        ("[2001:db8::1]:80", "2001:db8::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("unknown", None),
        ("", None),
        ("192.0.2.256", None),
    ],
)
def test_parse_ip(text: str, parsed: str | None) -> None:
    address = parse_ip(text)
    assert (None if address is None else str(address)) == parsed


def test_ipv6_clients_are_keyed_by_their_64() -> None:
    one = address_key(ipaddress.ip_address("2001:db8:1:2:aaaa::1"))
    other = address_key(ipaddress.ip_address("2001:db8:1:2:bbbb::9"))
    assert one == other == "2001:db8:1:2::/64"


def test_forwarded_for_is_read_only_from_trusted_proxies() -> None:
    spoof = ["203.0.113.9"]
    assert client_address("198.51.100.1", spoof, PROXIES) == "198.51.100.1"
    assert client_address("198.51.100.1", spoof, []) == "198.51.100.1"
    assert client_address("10.1.1.1", spoof, PROXIES) == "203.0.113.9"
    # The client's own X-Forwarded-For sits left of what our proxies appended.
    chain = ["1.1.1.1, 203.0.113.9", "10.2.2.2"]
    assert client_address("10.1.1.1", chain, PROXIES) == "203.0.113.9"
    assert client_address("10.1.1.1", ["garbage, 10.2.2.2"], PROXIES) == "10.2.2.2"
    assert client_address("10.1.1.1", [], PROXIES) == "10.1.1.1"
    assert client_address(None, spoof, PROXIES) == UNKNOWN


_HOPS = st.one_of(
    st.ip_addresses().map(str),
    st.text(max_size=40),
    st.sampled_from(["10.0.0.1", "fd00::1", "", " ", ",", "[::1]:x", "1.2.3.4:99999"]),
)


@given(
    st.one_of(st.ip_addresses().map(str), st.text(max_size=40)),
    st.lists(st.lists(_HOPS, max_size=30).map(", ".join), max_size=3),
)
def test_any_forwarded_for_yields_one_address_key(remote: str, headers: list[str]) -> None:
    key = client_address(remote, headers, PROXIES)
    assert key == UNKNOWN or ipaddress.ip_network(key, strict=False)
    peer = parse_ip(remote)
    if peer is not None and not any(peer in n for n in PROXIES if peer.version == n.version):
        assert key == address_key(peer)  # an untrusted peer's header changes nothing
