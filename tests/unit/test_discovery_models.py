"""Instance ids, registrations, reports, durations and reading Consul's health answer."""

from __future__ import annotations

import socket

import pytest

from discovery import HealthReport, Instance, Registration, UpstreamResponse, instance_id_for
from discovery.consul_api import instances_from_health
from discovery.durations import to_go, to_seconds


def test_instance_id_prefers_service_id_from_the_environment() -> None:
    assert instance_id_for("10.0.0.5", 6066, {"SERVICE_ID": "worker-7"}) == "worker-7"
    assert instance_id_for("10.0.0.5", 6066, {"SERVICE_ID": "  "}) == "10.0.0.5-6066"
    assert instance_id_for("worker_2.local", 6066, {}) == "worker_2.local-6066"
    assert instance_id_for("fe80::1", 80, {}) == "fe80-1-80"


def test_instance_id_of_a_wildcard_host_uses_the_hostname() -> None:
    assert instance_id_for("0.0.0.0", 6066, {}).endswith("-6066")
    assert instance_id_for("0.0.0.0", 6066, {}) != "0.0.0.0-6066"
    assert socket.gethostname().split(".")[0] in instance_id_for("", 1, {})


def test_registration_refuses_what_clients_could_not_reach() -> None:
    with pytest.raises(ValueError, match="wildcard"):
        Registration("w1", "0.0.0.0", 6066, "1.0")
    with pytest.raises(ValueError, match="port"):
        Registration("w1", "127.0.0.1", 0, "1.0")
    with pytest.raises(ValueError, match="instance_id"):
        Registration("", "127.0.0.1", 1, "1.0")
    reg = Registration("w1", "127.0.0.1", 6066, "1.2.3", tags=("blue",), meta={"zone": "a"})
    assert reg.service == "dialogue"
    assert reg.all_meta == {"zone": "a", "version": "1.2.3"}
    assert reg.all_tags == ["blue", "version=1.2.3"]


def test_health_report_constructors() -> None:
    assert HealthReport.passing() == HealthReport("passing", "")
    assert HealthReport.warning("lag").status == "warning"
    assert HealthReport.critical("mongo down") == HealthReport("critical", "mongo down")


def test_instance_url_and_hash() -> None:
    a = Instance("a", "127.0.0.1", 8001, meta={"version": "1"})
    assert a.base_url == "http://127.0.0.1:8001"
    assert Instance("b", "::1", 80).base_url == "http://[::1]:80"
    assert len({a, Instance("a", "127.0.0.1", 8001, meta={"version": "1"})}) == 1


def test_upstream_response_json() -> None:
    resp = UpstreamResponse(200, b'{"object":"list","data":[]}', {}, "a")
    assert resp.json() == {"object": "list", "data": []}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("500ms", 0.5), ("1m", 60.0), ("1m30s", 90.0), ("1.5s", 1.5), ("2h", 7200)],
)
def test_durations(text: str, seconds: float) -> None:
    assert to_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "10 s", "ten seconds", "5x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        to_seconds(text)


def test_go_duration_round_trip() -> None:
    assert to_go(10.0) == "10000ms"
    assert to_seconds(to_go(2.5)) == 2.5
    with pytest.raises(ValueError):
        to_go(0)


def test_instances_from_a_health_answer() -> None:
    nodes = [
        {
            "Node": {"Address": "10.0.0.9"},
            "Service": {"ID": "w2", "Address": "", "Port": 6067, "Meta": None, "Tags": None},
        },
        {
            "Node": {"Address": "10.0.0.9"},
            "Service": {
                "ID": "w1",
                "Address": "10.0.0.5",
                "Port": 6066,
                "Meta": {"version": "1.0"},
                "Tags": ["version=1.0"],
            },
        },
        {"Node": {}, "Service": {"ID": "broken"}},
    ]
    assert instances_from_health(nodes) == (
        Instance("w1", "10.0.0.5", 6066, {"version": "1.0"}, ("version=1.0",)),
        Instance("w2", "10.0.0.9", 6067, {}, ()),
    )
