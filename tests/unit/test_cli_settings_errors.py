"""Invalid settings are reported by `python -m gateway`, `python -m gateway.users` and
`python -m dialogue_worker` as each setting and its reason, never with the values read:
pydantic's own text repeated every setting given (MYSQL_PASSWORD, the JWT_SECRET, a
MONGO_URL with its password). `gateway.users` reads only the MySQL settings it uses."""

from __future__ import annotations

import contextlib
import io
import string
from collections.abc import Iterator
from urllib.parse import quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import dialogue_worker.__main__ as worker_main
import gateway.__main__ as gateway_main
from dialogue_worker.settings import WorkerSettings
from gateway import users as users_cli
from gateway.settings import LOCAL_MYSQL_PASSWORD, GatewaySettings
from platform_common.settings_errors import invalid_settings

#: Every variable either service reads (field names, upper-cased).
SETTINGS = {
    name.upper() for model in (GatewaySettings, WorkerSettings) for name in model.model_fields
}

#: Secrets that cannot occur in any fixed text of the messages (the "Zq9" prefix).
SECRETS = st.text(string.ascii_letters + string.digits + "-_.~!*$%&+", min_size=6, max_size=60).map(
    lambda tail: f"Zq9{tail}"
)


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[io.StringIO]:
    """Exactly `env` of the services' settings; what is printed, both streams."""
    printed = io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stdout(printed),
        contextlib.redirect_stderr(printed),
    ):
        for name in SETTINGS:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setattr(gateway_main, "setup_logging", lambda *args, **kwargs: None)
        patch.setattr(worker_main, "setup_logging", lambda *args, **kwargs: None)
        yield printed


def _shown(secret: str, text: str) -> bool:
    return secret in text or quote_plus(secret) in text


@given(
    secret=SECRETS,
    where=st.sampled_from(
        ["JWT_SECRET", "ENTRYPOINT_TOKEN", "MYSQL_PASSWORD", "ADMIN_TOKEN", "CONSUL_TOKEN"]
    ),
    trigger=st.sampled_from(
        [{}, {"GATEWAY_PORT": "99999"}, {"DIALOGUE_ENV": "staging"}, {"JWT_TTL": "1"}]
    ),
)
def test_the_gateway_never_prints_a_secret(
    secret: str, where: str, trigger: dict[str, str]
) -> None:
    with _environment({where: secret, **trigger}), pytest.raises(SystemExit) as refused:
        gateway_main.main([])  # production without its other secrets: always refused
    said = str(refused.value.code)
    assert said.startswith("gateway: invalid configuration\n")
    assert not _shown(secret, said)


@given(
    secret=SECRETS,
    where=st.sampled_from(
        ["JWT_SECRET", "ENTRYPOINT_TOKEN", "MYSQL_PASSWORD", "ADMIN_TOKEN", "CONSUL_TOKEN"]
    ),
    trigger=st.sampled_from(
        [
            {"DIALOGUE_ENV": "production"},
            {"DIALOGUE_ENV": "production", "MYSQL_PORT": "0"},
            {"DIALOGUE_ENV": "staging"},
            {"DIALOGUE_ENV": "local", "MYSQL_TIMEOUT": "nan"},
        ]
    ),
)
def test_the_rename_command_never_prints_a_secret(
    secret: str, where: str, trigger: dict[str, str]
) -> None:
    async def renamed(settings: users_cli.UserStoreSettings, user_id: int, name: str) -> str:
        return name

    with _environment({where: secret, **trigger}) as printed, pytest.MonkeyPatch.context() as p:
        p.setattr(users_cli, "rename", renamed)
        code = users_cli.main(["rename", "7", "newname"])
    assert code in (users_cli.DONE, users_cli.INVALID)
    assert not _shown(secret, printed.getvalue())
    if code == users_cli.INVALID:
        assert printed.getvalue().startswith("gateway.users: invalid configuration\n")


@given(
    secret=SECRETS,
    where=st.sampled_from(["ENTRYPOINT_TOKEN", "CONSUL_TOKEN", "MONGO_URL"]),
    trigger=st.sampled_from(
        [
            {},  # production on the development token
            {"DIALOGUE_ENV": "local", "WORKER_PORT": "0"},
            {"DIALOGUE_ENV": "local", "MONGO_URL": "mongodb://app:{}@mongos:abc/"},
            {"DIALOGUE_ENV": "local", "MONGO_URL": "mongodb://app:{}@mongos/?w=1&foo=bar"},
            {"DIALOGUE_ENV": "local", "MONGO_URL": "mongodb://app:{}@mongos/?readPreference=x"},
        ]
    ),
)
def test_the_worker_never_prints_a_secret(secret: str, where: str, trigger: dict[str, str]) -> None:
    env = {name: value.format(quote_plus(secret)) for name, value in trigger.items()}
    if where == "MONGO_URL":
        env.setdefault("MONGO_URL", f"mongodb://app:{quote_plus(secret)}@mongos/")
    else:
        env[where] = secret

    async def run(settings: WorkerSettings) -> int:
        return 0

    with _environment(env) as printed, pytest.MonkeyPatch.context() as patch:
        patch.setattr(worker_main, "_run", run)
        code = worker_main.main([])
    assert code in (0, 1)
    assert not _shown(secret, printed.getvalue())
    if code == 1:
        assert printed.getvalue().startswith("dialogue_worker: invalid configuration\n")


def test_the_report_names_each_setting_and_its_reason() -> None:
    with pytest.raises(ValidationError) as refused:
        WorkerSettings(dialogue_env="local", worker_port=0, mongo_url="mongodb://h:x/")
    assert invalid_settings("dialogue_worker", refused.value).splitlines() == [
        "dialogue_worker: invalid configuration",
        "  mongo_url: MONGO_URL is not a URL the MongoDB client takes: Port contains non-digit "
        "characters. Hint: username and password must be escaped according to RFC 3986, use "
        "urllib.parse.quote_plus (e.g. mongodb://host:27017/ or mongodb+srv://host/)",
        "  worker_port: Input should be greater than or equal to 1",
    ]


def test_the_rename_command_needs_only_the_mysql_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It used to read every gateway setting, and refused to run in production without
    the JWT_SECRET and ENTRYPOINT_TOKEN it never uses."""
    used: list[users_cli.UserStoreSettings] = []

    async def renamed(settings: users_cli.UserStoreSettings, user_id: int, name: str) -> str:
        used.append(settings)
        return name

    env = {"DIALOGUE_ENV": "production", "MYSQL_PASSWORD": "a-production-password"}
    with _environment(env), pytest.MonkeyPatch.context() as patch:
        patch.setattr(users_cli, "rename", renamed)
        assert users_cli.main(["rename", "7", "newname"]) == users_cli.DONE
    [settings] = used
    assert settings.password() == "a-production-password"


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"DIALOGUE_ENV": "production"}, "MYSQL_PASSWORD is not set"),
        ({"MYSQL_PASSWORD": LOCAL_MYSQL_PASSWORD}, "MYSQL_PASSWORD is the local development"),
        ({"DIALOGUE_ENV": "local", "MYSQL_PORT": "65536"}, "mysql_port: Input should be"),
    ],
)
def test_the_rename_command_still_refuses_what_the_gateway_refuses(
    env: dict[str, str], said: str
) -> None:
    with _environment(env) as printed:
        assert users_cli.main(["rename", "7", "newname"]) == users_cli.INVALID
    assert said in printed.getvalue()


def test_the_rename_commands_settings_are_the_gateways() -> None:
    """Defaults, bounds and descriptions: one definition, the gateway's."""
    gateway = GatewaySettings.model_fields
    for name, field in users_cli.UserStoreSettings.model_fields.items():
        assert repr(field) == repr(gateway[name]), name
    assert users_cli.UserStoreSettings.model_config == GatewaySettings.model_config


def test_the_rename_command_uses_the_local_password_in_local_mode() -> None:
    settings = users_cli.UserStoreSettings(dialogue_env="local", mysql_password="")
    assert settings.password() == LOCAL_MYSQL_PASSWORD
    assert GatewaySettings(dialogue_env="local").secret("mysql_password") == settings.password()
