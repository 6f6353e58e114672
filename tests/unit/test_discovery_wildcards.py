"""A wildcard address is never registered, however it is spelled: the library refuses it,
the worker's settings refuse it as WORKER_ADVERTISE_HOST with a readable message, and a
wildcard WORKER_HOST advertises the host name."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dialogue_worker.settings import WorkerSettings
from discovery import Registration, instance_id_for
from discovery.models import is_wildcard

#: Outside local mode, where any bind address is allowed.
TOKEN = "gs4WkYD2nO55sLNRQg3kCdkJp0aZZh6_z1qT2PHd"


@st.composite
def ipv6_zero(draw: st.DrawFn) -> str:
    """The IPv6 unspecified address: eight zero groups, a run of them maybe "::"."""
    groups = draw(st.lists(st.sampled_from(["0", "00", "000", "0000"]), min_size=8, max_size=8))
    start = draw(st.integers(0, 8))
    length = draw(st.integers(0, 8 - start))
    if length == 0:
        return ":".join(groups)
    return ":".join(groups[:start]) + "::" + ":".join(groups[start + length :])


@st.composite
def ipv4_zero(draw: st.DrawFn) -> str:
    """0.0.0.0 as the C library reads it: one to four parts, decimal, octal or hex."""
    part = st.sampled_from(["0", "00", "000", "0x0", "0X00"])
    return ".".join(draw(st.lists(part, min_size=1, max_size=4)))


def bracketed(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return text.map(lambda t: f"[{t}]")


WILDCARDS = st.one_of(
    ipv4_zero(),
    ipv6_zero(),
    bracketed(ipv6_zero()),
    st.just("::ffff:0.0.0.0"),
    st.just(" 0.0.0.0 "),
)


@given(WILDCARDS)
def test_every_spelling_of_a_wildcard_is_refused_as_a_registered_address(host: str) -> None:
    """ "::0", "0" and "0:0:0:0:0:0:0:0" used to be registered; "[::]" passed as well."""
    assert is_wildcard(host)
    with pytest.raises(ValueError, match="wildcard"):
        Registration("w1", host, 8100, "1.0")
    assert instance_id_for(host, 8100, {}) == instance_id_for("0.0.0.0", 8100, {})


def _reachable(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return int(address) != 0


@given(st.ip_addresses().filter(_reachable))
def test_an_address_one_can_reach_is_not_a_wildcard(address: object) -> None:
    assert not is_wildcard(str(address))
    assert Registration("w1", str(address), 8100, "1.0").address == str(address)


@pytest.mark.parametrize("host", ["worker-1", "localhost", "0.example", "1", "0.0.0.1", "::1"])
def test_names_and_other_addresses_are_not_wildcards(host: str) -> None:
    assert not is_wildcard(host)


def test_a_bracketed_ipv6_address_is_refused() -> None:
    """The instance's URL adds the brackets: "[::1]" would make "http://[[::1]]:8100"."""
    with pytest.raises(ValueError, match="without brackets"):
        Registration("w1", "[::1]", 8100, "1.0")


@given(WILDCARDS)
def test_the_worker_refuses_a_wildcard_advertise_host_with_a_clear_message(host: str) -> None:
    with pytest.raises(ValidationError, match=r"WORKER_ADVERTISE_HOST=.* is a wildcard address"):
        WorkerSettings(entrypoint_token=TOKEN, worker_advertise_host=host)


@given(WILDCARDS.filter(lambda h: "[" not in h))
def test_a_wildcard_worker_host_advertises_the_host_name(host: str) -> None:
    settings = WorkerSettings(entrypoint_token=TOKEN, worker_host=host)
    assert settings.advertise_host == socket.gethostname()
    Registration("w1", settings.advertise_host, 8100, "1.0")  # registrable


@pytest.mark.parametrize("variable", ["worker_host", "worker_advertise_host"])
def test_the_worker_refuses_a_bracketed_address_with_a_clear_message(variable: str) -> None:
    with pytest.raises(ValidationError, match=rf"{variable.upper()}=.*without brackets"):
        WorkerSettings(entrypoint_token=TOKEN, **{variable: "[fd00::7]"})


def test_an_unset_advertise_host_falls_back_to_worker_host() -> None:
    assert WorkerSettings(entrypoint_token=TOKEN, worker_advertise_host="").advertise_host == (
        "127.0.0.1"
    )
    settings = WorkerSettings(entrypoint_token=TOKEN, worker_advertise_host="10.0.0.7")
    assert settings.advertise_host == "10.0.0.7"
