"""infra/local/settings.py: MariaDB names that would break the local server, and a
LOCAL_HOST the services' URLs cannot carry, are refused with a message naming the
variable; MariaDB gets the password the gateway will use."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.settings import LOCAL_MYSQL_PASSWORD, GatewaySettings
from infra.dev.settings import DevSettings
from infra.local import LocalSettings
from infra.local import settings as local_settings
from infra.local.settings import (
    MYSQL_DATABASE,
    MYSQL_RESERVED_DATABASES,
    MYSQL_RESERVED_USERS,
    MYSQL_USER,
)


def _settings(**env: str) -> LocalSettings:
    return LocalSettings.from_env({"LOCAL_RUN_DIR": "/tmp/run-x", **env})


def test_the_defaults_pass() -> None:
    s = _settings()
    assert (s.mysql_user, s.mysql_database) == ("dialogue", "dialogue")


@pytest.mark.parametrize(
    "user", ["root", "ROOT", "mysql", "mariadb.sys", "PUBLIC", "alice", "Alice"]
)
def test_an_account_of_the_server_or_of_the_os_user_is_refused(
    user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OS user's account is the socket superuser: the project user's set-up would
    give it a password and take its server rights away."""
    monkeypatch.setattr(local_settings, "os_user", lambda: "alice")
    with pytest.raises(SystemExit, match=f"LOCAL_MYSQL_USER cannot be '{user}'"):
        _settings(LOCAL_MYSQL_USER=user)


@pytest.mark.parametrize("user", ["", "dia`logue", "it's", 'a"b', "a b", "x" * 33, "1st"])
def test_a_user_name_that_would_need_quoting_is_refused(user: str) -> None:
    with pytest.raises(SystemExit, match="LOCAL_MYSQL_USER must be a plain MariaDB user name"):
        _settings(LOCAL_MYSQL_USER=user)


@pytest.mark.parametrize(
    "database", ["", "mysql", "MySQL", "sys", "information_schema", "dia`logue", "x'y", "a-b"]
)
def test_a_system_database_or_a_name_that_needs_quoting_is_refused(database: str) -> None:
    with pytest.raises(SystemExit, match="LOCAL_MYSQL_DATABASE must be a plain"):
        _settings(LOCAL_MYSQL_DATABASE=database)


@given(st.text(max_size=70))
def test_a_user_name_is_refused_or_safe(name: str) -> None:
    try:
        s = _settings(LOCAL_MYSQL_USER=name)
    except SystemExit as refused:
        assert "LOCAL_MYSQL_USER" in str(refused)
    else:
        assert MYSQL_USER.fullmatch(s.mysql_user)
        assert s.mysql_user.lower() not in MYSQL_RESERVED_USERS


@given(st.text(max_size=70))
def test_a_database_name_is_refused_or_safe(name: str) -> None:
    try:
        s = _settings(LOCAL_MYSQL_DATABASE=name)
    except SystemExit as refused:
        assert "LOCAL_MYSQL_DATABASE" in str(refused)
    else:
        assert MYSQL_DATABASE.fullmatch(s.mysql_database)
        assert s.mysql_database.lower() not in MYSQL_RESERVED_DATABASES
        assert not {"`", "'", '"', "\\", "%"} & set(s.mysql_database)


@given(st.integers(0, 2**24 - 1))
def test_every_ipv4_loopback_address_is_a_local_host(low_bits: int) -> None:
    host = str(ipaddress.IPv4Address((127 << 24) | low_bits))
    assert _settings(LOCAL_HOST=host).mongo_url == f"mongodb://{host}:27017/"


@pytest.mark.parametrize(
    "host",
    ["::1", "[::1]", "localhost", "127.example.com", "127.0.0.1.nip.io", "127.1", "10.0.0.1", ""],
)
def test_a_local_host_that_is_not_an_ipv4_loopback_address_is_refused(host: str) -> None:
    """ "::1" made unbracketed URLs (http://::1:8500) that Consul's, MongoDB's and Kafka's
    clients cannot read; "127.example.com" passed as it starts with "127."."""
    with pytest.raises(SystemExit, match="LOCAL_HOST must be an IPv4 loopback address"):
        _settings(LOCAL_HOST=host)


@given(st.text(max_size=40))
def test_a_local_host_is_refused_or_an_ipv4_loopback_literal(host: str) -> None:
    try:
        s = _settings(LOCAL_HOST=host)
    except SystemExit as refused:
        assert "LOCAL_HOST" in str(refused)
    else:
        assert (
            ipaddress.IPv4Address(s.host).is_loopback and str(ipaddress.IPv4Address(host)) == host
        )


@given(st.text(max_size=40).filter(lambda s: "\x00" not in s))
def test_the_gateway_uses_the_mysql_password_mariadb_was_given(password: str) -> None:
    """An empty LOCAL_MYSQL_PASSWORD gave MariaDB an empty password while the gateway took
    the empty MYSQL_PASSWORD for unset and used its default: every sign-in was 1045."""
    dev = DevSettings.from_env({"LOCAL_RUN_DIR": "/tmp/run-x", "LOCAL_MYSQL_PASSWORD": password})
    gateway = GatewaySettings(
        dialogue_env="local", mysql_password=dev.gateway_env()["MYSQL_PASSWORD"]
    )
    assert gateway.secret("mysql_password") == dev.local.mysql_password
    assert dev.local.mysql_password == (password or LOCAL_MYSQL_PASSWORD)


def test_an_empty_folder_or_version_is_unset() -> None:
    """As the shell's ${VAR:-default}: read as a path, "" would be the current folder
    (the repository under make), where the stack's files are not ignored by git."""
    empty = {
        name: ""
        for name in (
            "LOCAL_RUN_DIR",
            "LOCAL_CACHE_DIR",
            "XDG_CACHE_HOME",
            "LOCAL_KAFKA_VERSION",
            "LOCAL_CONSUL_VERSION",
            "LOCAL_FERRETDB_VERSION",
        )
    }
    assert LocalSettings.from_env(empty) == LocalSettings.from_env({})


#: Each port setting and how many ports above it the service also takes.
PORTS = {
    "LOCAL_KAFKA_PORT": 2 * local_settings.KAFKA_PORT_STEP,
    "LOCAL_KAFKA_CONTROLLER_PORT": 2 * local_settings.KAFKA_PORT_STEP,
    "LOCAL_CONSUL_PORT": 0,
    "LOCAL_CONSUL_BASE_PORT": local_settings.CONSUL_PORTS_ABOVE_BASE,
    "LOCAL_MONGO_PORT": 0,
    "LOCAL_POSTGRES_PORT": 0,
    "LOCAL_MYSQL_PORT": 0,
}


@given(
    st.sampled_from(sorted(PORTS)),
    st.integers(-(2**40), 2**40).map(str)
    | st.text(max_size=12)
    | st.sampled_from(["٣٣٠٦", "3_306", "0x10", "1e3", " 3306", "+3306", "65535", "0"]),
)
def test_a_port_setting_is_a_port_every_service_can_take_or_refused_naming_it(
    name: str, raw: str
) -> None:
    """Found in review: LOCAL_KAFKA_PORT=70000, LOCAL_CONSUL_PORT=-1 or Arabic-Indic
    digits passed, and were built into URLs; `up` then failed late as "not ready"."""
    try:
        port = getattr(_settings(**{name: raw}), name.removeprefix("LOCAL_").lower())
    except SystemExit as refused:
        assert name in str(refused)
        return
    assert raw == "" or raw.strip().lstrip("-").isascii()
    assert 1 <= port and port + PORTS[name] <= 65535


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("DEV_TOPIC_PARTITIONS", "2147483648"),
        ("DEV_TOPIC_PARTITIONS", "0"),
        ("DEV_READY_TIMEOUT", "-5"),
        ("DEV_GATEWAY_PORT", "70000"),
    ],
)
def test_make_devs_numbers_are_bounded(name: str, raw: str) -> None:
    with pytest.raises(SystemExit, match=name):
        DevSettings.from_env({"LOCAL_RUN_DIR": "/tmp/run-x", name: raw})


@given(
    st.sampled_from(["LOCAL_RUN_DIR", "LOCAL_CACHE_DIR", "DEV_CONSUL_TOKEN", "DEV_CONSUL_URL"]),
    st.text(max_size=10),
    st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),  # as os.environ reads them
)
def test_a_setting_that_is_not_utf_8_is_a_readable_exit_naming_it(
    name: str, text: str, stray: str
) -> None:
    """Found in review: LOCAL_RUN_DIR with bytes that are not UTF-8 ended every infra
    command (--help and infra-down too) in a traceback; DEV_CONSUL_TOKEN and
    DEV_CONSUL_URL ended `make dev status` in one."""
    with pytest.raises(SystemExit, match=name):
        DevSettings.from_env({"LOCAL_RUN_DIR": "/tmp/run-x", name: text + stray})


def test_make_devs_consul_token_is_visible_ascii() -> None:
    with pytest.raises(SystemExit, match="DEV_CONSUL_TOKEN must be visible ASCII"):
        DevSettings.from_env({"LOCAL_RUN_DIR": "/tmp/run-x", "DEV_CONSUL_TOKEN": "tökén"})
    token = "a1b2c3-d4e5"
    assert DevSettings.from_env({"LOCAL_RUN_DIR": "/tmp/run-x", "DEV_CONSUL_TOKEN": token})
