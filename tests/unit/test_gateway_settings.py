"""The settings refuse missing or development secrets outside local mode."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import LOCAL_JWT_SECRET, GatewaySettings

PRODUCTION = {
    "DIALOGUE_ENV": "production",
    "JWT_SECRET": "j" * 40,
    "ENTRYPOINT_TOKEN": "e" * 40,
    "MYSQL_PASSWORD": "m" * 20,
}


def _settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> GatewaySettings:
    for key in (*PRODUCTION, "ADMIN_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return GatewaySettings()


def test_defaults_and_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, {**PRODUCTION, "GATEWAY_PORT": "9001", "TOPIC": "t"})
    assert (settings.gateway_host, settings.gateway_port, settings.topic) == (
        "127.0.0.1",
        9001,
        "t",
    )
    assert settings.jwt_ttl == 3600 and settings.worker_service == "dialogue"
    assert settings.secret("jwt_secret") == "j" * 40
    assert settings.admin_secret() is None


def test_local_mode_has_development_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, {"DIALOGUE_ENV": "local"})
    assert settings.secret("jwt_secret") == LOCAL_JWT_SECRET
    assert settings.admin_secret() is not None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"JWT_SECRET": ""}, "JWT_SECRET is not set"),
        ({"JWT_SECRET": LOCAL_JWT_SECRET}, "JWT_SECRET is the local development default"),
        ({"JWT_SECRET": "short"}, "shorter than 32 bytes"),
        ({"ENTRYPOINT_TOKEN": ""}, "ENTRYPOINT_TOKEN is not set"),
        ({"MYSQL_PASSWORD": "dialogue-local"}, "MYSQL_PASSWORD is the local development default"),
        ({"DIALOGUE_ENV": "staging"}, "dialogue_env"),
    ],
)
def test_production_refuses_bad_secrets(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, str], reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        _settings(monkeypatch, {**PRODUCTION, **change})


def test_production_is_the_default_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIALOGUE_ENV", raising=False)
    with pytest.raises(ValidationError, match="refusing to start"):
        _settings(monkeypatch, {})
