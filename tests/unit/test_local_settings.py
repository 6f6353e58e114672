"""infra/local/settings.py: MariaDB names that would break the local server are refused
with a message naming the variable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
