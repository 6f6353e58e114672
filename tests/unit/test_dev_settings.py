"""infra/dev/settings.py: what make dev hands the gateway and the workers, whatever the
caller's shell exports, and the events topic that goes with its message topic."""

from __future__ import annotations

import os

import pytest

from dialogue_worker.settings import WorkerSettings
from gateway.domain.rate_limit import Rate
from gateway.settings import GatewaySettings
from infra.dev.settings import (
    SERVICE_SETTINGS,
    DevSettings,
    events_topic_for,
    service_environment,
)
from infra.processes.worker import WorkerProcess
from platform_common.local import LOCAL_ADMIN_TOKEN

ENV = {"LOCAL_RUN_DIR": "/tmp/dev-test-run", "LOCAL_CACHE_DIR": "/tmp/dev-test-cache"}

#: What a shell holds after sourcing a compose `.env` (and a little more).
EXPORTED = {
    "ADMIN_TOKEN": "an-admin-token-of-the-docker-deployment-0123",
    "JWT_SECRET": "a-jwt-secret-of-the-docker-deployment-0123456",
    "ENTRYPOINT_TOKEN": "an-entrypoint-token-of-the-docker-deployment",
    "DIALOGUE_ENV": "production",
    "EVENTS_TOPIC": "somebody.elses.events",
    "RATE_MESSAGES_PER_USER": "1/3600",
    "WORKER_ADVERTISE_HOST": "10.1.2.3",
    "mongo_db": "lower-case-is-read-too",
}


def test_every_setting_of_the_services_is_a_plain_upper_cased_field_name() -> None:
    for model in (GatewaySettings, WorkerSettings):
        assert not model.model_config.get("env_prefix")
        assert not model.model_config.get("case_sensitive")
        for name, field in model.model_fields.items():
            assert field.alias is None and field.validation_alias is None, name
            assert name.upper() in SERVICE_SETTINGS
    assert {"ADMIN_TOKEN", "EVENTS_TOPIC", "RATE_READS_PER_USER", "VERSION"} <= SERVICE_SETTINGS


def test_the_callers_settings_are_dropped_and_the_rest_is_kept() -> None:
    inherited = {**EXPORTED, "PATH": "/usr/bin", "HOME": "/home/u", "DEV_TOPIC": "t"}
    child = service_environment(inherited, {"TOPIC": "mine", "LOG_LEVEL": "DEBUG"})
    assert child == {"PATH": "/usr/bin", "HOME": "/home/u", "DEV_TOPIC": "t"} | {
        "TOPIC": "mine",
        "LOG_LEVEL": "DEBUG",
    }


def _only(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_the_gateway_keeps_make_devs_settings_under_an_exported_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = DevSettings.from_env(ENV)
    _only(monkeypatch, service_environment(EXPORTED, s.gateway_env()))
    gateway = GatewaySettings()
    assert gateway.local and gateway.admin_secret() == LOCAL_ADMIN_TOKEN
    assert gateway.events_topic == s.events_topic
    assert gateway.rate_messages_per_user == Rate.parse("60/10")


def test_a_worker_keeps_make_devs_settings_under_an_exported_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = DevSettings.from_env(ENV)
    _only(monkeypatch, service_environment(EXPORTED, s.worker_env(1)))
    worker = WorkerSettings()
    assert worker.dialogue_env == "local" and worker.advertise_host == s.host
    assert (worker.events_topic, worker.mongo_db) == (s.events_topic, s.mongo_db)


@pytest.mark.parametrize(
    ("env", "events"),
    [
        ({}, "dialogue.events"),
        ({"DEV_TOPIC": "dialogue.messages"}, "dialogue.events"),
        ({"DEV_TOPIC": "copy-messages"}, "copy-messages.events"),
        ({"DEV_TOPIC": "copy-messages", "DEV_EVENTS_TOPIC": "mine"}, "mine"),
    ],
)
def test_the_events_topic_follows_the_message_topic(env: dict[str, str], events: str) -> None:
    s = DevSettings.from_env({**ENV, **env})
    assert s.events_topic == events
    assert s.gateway_env()["EVENTS_TOPIC"] == s.worker_env(2)["EVENTS_TOPIC"] == events


def test_a_copy_names_its_events_topic_as_the_test_workers_do() -> None:
    worker = WorkerProcess("k:9092", "mongodb://m", "http://c", "a", "copy", "d", "id", port=1)
    assert events_topic_for("copy") == worker.events_topic


def test_a_consul_token_reaches_the_services_only_through_dev_consul_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exported = {**EXPORTED, "CONSUL_TOKEN": "a-token-of-the-docker-deployment"}
    plain = DevSettings.from_env(ENV)
    assert plain.consul_token is None
    assert "CONSUL_TOKEN" not in service_environment(exported, plain.gateway_env())

    mine = "0f2c7a1e-6a43-4f1b-9d5e-3c8b2a9e7d10"
    s = DevSettings.from_env(
        {**ENV, "DEV_CONSUL_URL": "http://127.0.0.1:18500/", "DEV_CONSUL_TOKEN": mine}
    )
    assert s.consul_url == "http://127.0.0.1:18500"
    _only(monkeypatch, service_environment(exported, s.gateway_env()))
    gateway = GatewaySettings()
    assert gateway.consul_token is not None and gateway.consul_token.get_secret_value() == mine
    _only(monkeypatch, service_environment(exported, s.worker_env(1)))
    worker = WorkerSettings()
    assert worker.consul_token is not None and worker.consul_token.get_secret_value() == mine


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://h:abc", "not a Consul URL"),
        ("http://h:0", "not a Consul URL"),
        ("http://h:99999", "not a Consul URL"),
        ("ftp://h:8500", "the scheme must be http or https"),
        ("h:8500", "must start with http:// or https://"),
    ],
)
def test_a_consul_url_make_dev_cannot_call_is_a_readable_exit(url: str, said: str) -> None:
    """http://h:abc ended `make dev` in an http.client.InvalidURL traceback."""
    with pytest.raises(SystemExit, match="DEV_CONSUL_URL") as refused:
        DevSettings.from_env({**ENV, "DEV_CONSUL_URL": url})
    assert said in str(refused.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:18500", "https://consul.example", "http://[::1]:8500/"]
)
def test_a_consul_url_make_dev_can_call_is_taken(url: str) -> None:
    assert DevSettings.from_env({**ENV, "DEV_CONSUL_URL": url}).consul_url == url.rstrip("/")
