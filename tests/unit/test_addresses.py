"""The address checks both services' settings make at start-up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dialogue_worker.settings import WorkerSettings
from gateway.settings import GatewaySettings
from platform_common.addresses import consul_address, consul_url, kafka_bootstrap

HOSTS = st.sampled_from(["kafka", "127.0.0.1", "[::1]", "k-1.example.org"])


@given(hosts=st.lists(st.tuples(HOSTS, st.integers(1, 65535)), min_size=1, max_size=4))
def test_host_port_lists_are_accepted(hosts: list[tuple[str, int]]) -> None:
    value = ",".join(f"{host}:{port}" for host, port in hosts)
    assert kafka_bootstrap(value) == value


@given(port=st.integers(max_value=0) | st.integers(min_value=65536) | st.just("x9092"))
def test_a_port_out_of_range_is_refused(port: object) -> None:
    with pytest.raises(ValueError, match="port"):
        kafka_bootstrap(f"kafka:{port}")


@pytest.mark.parametrize("value", ["", " ", "kafka", "kafka:9092,", ":9092", "[]:9092"])
def test_what_is_no_host_port_list_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        kafka_bootstrap(value)


@pytest.mark.parametrize("value", ["http://consul:8500", "https://c", "consul:8500", "c"])
def test_consul_urls(value: str) -> None:
    assert consul_url(value) == value


@pytest.mark.parametrize("value", ["", "ftp://c", "http://", "http://c:port", "http://c:0"])
def test_what_names_no_consul_agent_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        consul_url(value)


@pytest.mark.parametrize(
    ("settings", "name", "value"),
    [
        (GatewaySettings, "kafka_bootstrap", "k:x"),
        (GatewaySettings, "consul_url", "ftp://c"),
        (GatewaySettings, "stream_heartbeat", float("inf")),
        (GatewaySettings, "kafka_send_timeout", float("nan")),
        (WorkerSettings, "kafka_bootstrap", "k:x"),
        (WorkerSettings, "consul_url", "ftp://c"),
        (WorkerSettings, "mongo_timeout", float("inf")),
    ],
)
def test_both_services_refuse_them(settings: type, name: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        settings(dialogue_env="local", **{name: value})
    assert err.value.errors()[0]["loc"] == (name,)


@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="@"),
        min_size=4,
        max_size=30,
    ),
    st.sampled_from(["ftp", "http"]),
    st.sampled_from(["", ":notaport"]),
)
def test_a_refused_consul_url_is_quoted_without_its_credentials(
    secret: str, scheme: str, port: str
) -> None:
    url = f"{scheme}://admin:{secret}@consul{port}"
    with pytest.raises(ValueError) as refused:
        consul_address(url if scheme == "ftp" or port else url + ":0")
    # Refused for its '@' before anything else, quoting none of it (a password with '/',
    # '?' or '#' moved the '@' out of what urlsplit calls the host, and was quoted whole).
    assert str(refused.value) == (
        "a Consul URL with an '@' in it: Consul takes an ACL token (CONSUL_TOKEN), "
        "not a user and password in the URL"
    )
