"""The settings refuse missing or development secrets outside local mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from argon2 import PasswordHasher
from argon2.exceptions import HashingError
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway import users as users_cli
from gateway.__main__ import shutdown_grace
from gateway.settings import GatewaySettings
from platform_common.local import LOCAL_ADMIN_TOKEN, LOCAL_JWT_SECRET
from platform_common.settings_base import NUMBER_MAX

REPO = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DIALOGUE_ENV": "production",
    "JWT_SECRET": "caB4IYRJra8vwYFNxP-if3ogsGZAmXfJoOYU7h6M",
    "ENTRYPOINT_TOKEN": "Q8mv36URbZS5Zhgh6NYyxkXGLcQ4evmkekfR_-7B",
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
    assert settings.secret("jwt_secret") == "caB4IYRJra8vwYFNxP-if3ogsGZAmXfJoOYU7h6M"
    assert settings.admin_secret() is None


def test_local_mode_has_development_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, {"DIALOGUE_ENV": "local"})
    assert settings.secret("jwt_secret") == LOCAL_JWT_SECRET
    assert settings.admin_secret() is not None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"JWT_SECRET": ""}, "JWT_SECRET is not set"),
        ({"JWT_SECRET": LOCAL_JWT_SECRET}, "JWT_SECRET is a local development default"),
        ({"JWT_SECRET": "short"}, "shorter than 32 bytes"),
        ({"ENTRYPOINT_TOKEN": ""}, "ENTRYPOINT_TOKEN is not set"),
        ({"ENTRYPOINT_TOKEN": "a"}, "ENTRYPOINT_TOKEN is shorter than 32 bytes"),
        ({"ENTRYPOINT_TOKEN": LOCAL_JWT_SECRET}, "ENTRYPOINT_TOKEN is a local development"),
        ({"ADMIN_TOKEN": "c"}, "ADMIN_TOKEN is shorter than 32 bytes"),
        ({"ADMIN_TOKEN": LOCAL_ADMIN_TOKEN}, "ADMIN_TOKEN is a local development default"),
        ({"MYSQL_PASSWORD": "dialogue-local"}, "MYSQL_PASSWORD is the local development default"),
        ({"MYSQL_PASSWORD": "   "}, "MYSQL_PASSWORD is not set"),
        ({"JWT_SECRET": "e2e-gateway-secret-" + "x" * 32}, "JWT_SECRET is not random"),
        ({"JWT_SECRET": " " * 40}, "JWT_SECRET starts or ends with white space"),
        ({"JWT_SECRET": LOCAL_JWT_SECRET + " "}, "JWT_SECRET is a local development default"),
        ({"ADMIN_TOKEN": "ab" * 20}, "ADMIN_TOKEN is not random"),
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


def test_limits_and_proxies_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        **PRODUCTION,
        "RATE_MESSAGES_PER_USER": "5/2",
        "RATE_SIGN_UP_PER_ADDRESS": "off",
        "TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8",
        "CONSUL_TOKEN": "3f0c1f7e-1111-4222-8333-944445555666",
    }
    settings = _settings(monkeypatch, env)
    assert (settings.rate_messages_per_user.capacity, settings.rate_messages_per_user.period) == (
        5,
        2.0,
    )
    assert settings.rate_sign_up_per_address.unlimited
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "fd00::/8"]
    assert settings.consul_token is not None and "3f0c" not in repr(settings)
    monkeypatch.delenv("TRUSTED_PROXIES")
    assert _settings(monkeypatch, PRODUCTION).trusted_proxies == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("RATE_CHATS_PER_USER", "lots"), ("RATE_CHATS_PER_USER", "0/0"), ("TRUSTED_PROXIES", "x")],
)
def test_bad_limits_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    with pytest.raises(ValidationError):
        _settings(monkeypatch, {**PRODUCTION, name: value})


@pytest.mark.parametrize("cooldown", [0, -1, 60.5, 120])
def test_a_cooldown_the_balancer_cannot_use_is_refused_as_configuration(cooldown: float) -> None:
    """The balancer takes 0 < cooldown <= 60: anything else is an invalid setting, not a
    traceback at start."""
    with pytest.raises(ValidationError, match="upstream_cooldown"):
        GatewaySettings(dialogue_env="local", upstream_cooldown=cooldown)
    assert GatewaySettings(dialogue_env="local", upstream_cooldown=60).upstream_cooldown == 60


@pytest.mark.parametrize("faults", [0, -1])
def test_a_fault_count_the_balancer_cannot_use_is_refused_as_configuration(faults: int) -> None:
    with pytest.raises(ValidationError, match="upstream_faults_to_eject"):
        GatewaySettings(dialogue_env="local", upstream_faults_to_eject=faults)
    settings = GatewaySettings(dialogue_env="local", upstream_faults_to_eject=1)
    assert settings.upstream_faults_to_eject == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "gateway.example"])
def test_local_mode_on_its_public_secrets_binds_to_loopback_only(host: str) -> None:
    with pytest.raises(ValidationError, match="GATEWAY_HOST"):
        GatewaySettings(dialogue_env="local", gateway_host=host)
    for loopback in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert GatewaySettings(dialogue_env="local", gateway_host=loopback).local
    own = {
        "jwt_secret": "caB4IYRJra8vwYFNxP-if3ogsGZAmXfJoOYU7h6M",
        "entrypoint_token": "Q8mv36URbZS5Zhgh6NYyxkXGLcQ4evmkekfR_-7B",
        "admin_token": "5JrnKhzXlnZKjvGJpFbg1sIUlPD4CrjkBM462D9T",
    }
    assert GatewaySettings(dialogue_env="local", gateway_host=host, **own).local
    for name in own:  # an empty value means the public default as well
        with pytest.raises(ValidationError, match="GATEWAY_HOST"):
            GatewaySettings(dialogue_env="local", gateway_host=host, **own | {name: ""})
        # and a secret production would refuse is as weak beyond loopback (a 1-byte
        # signing key served every interface)
        with pytest.raises(ValidationError, match=r"GATEWAY_HOST.*weak secret"):
            GatewaySettings(dialogue_env="local", gateway_host=host, **own | {name: "a"})


@pytest.mark.parametrize("token", ["", None])
def test_an_empty_consul_token_is_no_token(token: str | None) -> None:
    """CONSUL_TOKEN= sent no token while the start-up warning about it said nothing."""
    settings = GatewaySettings(dialogue_env="local", consul_token=token)
    assert settings.consul_token is None


def test_the_shutdown_grace_covers_a_post_in_flight() -> None:
    """A post may take its membership check and its Kafka send: SIGTERM waits for both,
    and compose gives the gateway longer than that before it kills it."""
    default = GatewaySettings(dialogue_env="local")
    assert shutdown_grace(default) == 20.0
    slow = GatewaySettings(dialogue_env="local", kafka_send_timeout=30, upstream_deadline=8)
    assert shutdown_grace(slow) == 43.0
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    period = compose["services"]["gateway"]["stop_grace_period"]
    assert period.endswith("s") and float(period[:-1]) > shutdown_grace(default)


@pytest.mark.parametrize("raw", ["1_0", "\u0663", " 7 ", "0", "-1", str(2**63), "7.0", ""])
def test_the_rename_command_reads_a_user_id_as_the_api_does(
    raw: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """int() read "1_0" as 10 and an Arabic-Indic digit as 3: another account renamed."""
    with pytest.raises(SystemExit) as refused:
        users_cli.main(["rename", raw, "newname"])
    assert refused.value.code == 2 and "is not a user id" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ARGON2_MEMORY_KIB": "16", "ARGON2_PARALLELISM": "4"}, "ARGON2_MEMORY_KIB=16"),
        ({"ARGON2_MEMORY_KIB": "7"}, "argon2_memory_kib"),
        ({"ARGON2_MEMORY_KIB": str(2**32)}, "argon2_memory_kib"),
        ({"ARGON2_TIME_COST": str(2**32)}, "argon2_time_cost"),
        ({"ARGON2_TIME_COST": "0"}, "argon2_time_cost"),
        ({"ARGON2_PARALLELISM": str(2**24)}, "argon2_parallelism"),
    ],
)
def test_argon2_settings_argon2_cannot_use_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    """Accepted, they made every hash fail: every sign-up (and every sign-in of an
    unknown name, which hashes a decoy) answered 5000."""
    with pytest.raises(ValidationError, match=named):
        _settings(monkeypatch, {**PRODUCTION, **env})


@given(
    memory=st.integers(min_value=8, max_value=NUMBER_MAX),  # argon2's own bound is 2**32 - 1
    lanes=st.integers(min_value=1, max_value=2**24 - 1),
)
def test_argon2_memory_is_accepted_exactly_when_argon2_can_hash_with_it(
    memory: int, lanes: int
) -> None:
    """argon2 takes at least 8 KiB per lane; the settings agree with it at every boundary."""
    try:
        read = GatewaySettings(
            dialogue_env="local", argon2_memory_kib=memory, argon2_parallelism=lanes
        )
    except ValidationError as exc:
        assert memory < 8 * lanes and "ARGON2_PARALLELISM" in str(exc)
    else:
        assert memory >= 8 * lanes and read.argon2_memory_kib == memory


def test_the_smallest_argon2_settings_accepted_hash_a_password() -> None:
    read = GatewaySettings(dialogue_env="local", argon2_memory_kib=32, argon2_parallelism=4)
    hasher = PasswordHasher(
        time_cost=read.argon2_time_cost,
        memory_cost=read.argon2_memory_kib,
        parallelism=read.argon2_parallelism,
    )
    assert hasher.verify(hasher.hash("secret1"), "secret1")
    with pytest.raises(HashingError):  # what the refused ARGON2_MEMORY_KIB=31 would do
        PasswordHasher(time_cost=1, memory_cost=31, parallelism=4).hash("secret1")


@given(st.floats(0.01, 100.0), st.floats(0.01, 100.0))
def test_an_idempotency_key_must_outlive_a_kafka_send(ttl: float, send: float) -> None:
    """A send still waiting for Kafka outlived its entry: the retry queued behind its 5031
    found none, and made a second message (found in review)."""
    if ttl >= send:
        settings = GatewaySettings(
            dialogue_env="local", idempotency_ttl=ttl, kafka_send_timeout=send
        )
        assert settings.idempotency_ttl == ttl
    else:
        with pytest.raises(ValidationError, match="IDEMPOTENCY_TTL"):
            GatewaySettings(dialogue_env="local", idempotency_ttl=ttl, kafka_send_timeout=send)
