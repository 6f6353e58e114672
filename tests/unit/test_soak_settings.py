"""The soak's settings (bench/soak/settings.py) and the chats it plans (bench/soak/plan.py):
what makes no sense is refused before anything starts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.soak.plan import memberships
from bench.soak.settings import FLAGS, SoakSettings, from_args
from infra.dev.settings import MAX_WORKERS

FLOAT_FLAGS = [f"--{name.replace('_', '-')}" for name, (kind, *_) in FLAGS.items() if kind is float]


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str]) -> str:
    with pytest.raises(SystemExit) as exited:
        from_args(argv, env)
    assert exited.value.code not in (0, None)
    return str(exited.value.code) + capsys.readouterr().err


def test_the_defaults_make_a_soak() -> None:
    settings = from_args([], {})
    assert isinstance(settings, SoakSettings) and settings.duration == 1800.0


@pytest.mark.parametrize("flag", FLOAT_FLAGS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "infinity"])
def test_a_number_that_is_not_finite_is_refused(
    capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    said = _refused(capsys, [f"{flag}={value}"], {})
    assert f"must be finite (not nan or inf): {flag}" in said


def test_a_number_from_the_environment_that_is_not_finite_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    said = _refused(capsys, ["--posts", "nan"], {"SOAK_MINUTES": "inf"})
    assert "must be finite (not nan or inf): --minutes, --posts" in said


def test_a_soak_that_sends_no_message_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    said = _refused(capsys, ["--posts", "0", "--produce", "0"], {})
    assert "--posts or --produce must be > 0" in said
    assert from_args(["--posts", "0", "--produce", "1"], {}).posts == 0


@given(users=st.integers(2, 80), chats=st.integers(1, 60))
def test_more_users_than_the_chats_pair_up_are_refused(users: int, chats: int) -> None:
    argv = ["--users", str(users), "--chats", str(chats), "--hot-chats", "0"]
    if users <= 2 * chats:
        assert from_args(argv, {}).users == users
    else:
        with pytest.raises(SystemExit):
            from_args(argv, {})


def test_the_refusal_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    said = _refused(capsys, ["--users", "21", "--chats", "10", "--hot-members", "20"], {})
    assert "--users (21) must be <= 2 x --chats (10)" in said


def test_hot_chats_that_hold_every_user_cover_them() -> None:
    argv = ["--users", "20", "--chats", "0", "--hot-chats", "1", "--hot-members", "20"]
    assert from_args(argv, {}).chats == 0


@given(st.integers(2, 60), st.integers(0, 40), st.integers(0, 3), st.integers())
def test_every_user_is_in_a_chat_when_the_settings_allow_the_plan(
    users: int, extra: int, hot: int, seed: int
) -> None:
    chats = (users + 1) // 2 + extra
    made = memberships(users, chats, hot, 5, seed)
    assert len(made) == chats + hot
    assert set().union(*(members for members, _ in made)) == set(range(users))
    assert all(len(set(members)) == len(members) >= 2 for members, _ in made)


@pytest.mark.parametrize("name", ["SOAK_USE_RUNNING", "SOAK_KEEP"])
@pytest.mark.parametrize(
    ("raw", "meant"),
    [
        *[(raw, True) for raw in ("1", "true", "TRUE", "Yes", "on", " 1 ")],
        *[(raw, False) for raw in ("0", "false", "No", "off", "")],
    ],
)
def test_a_yes_or_no_variable_takes_the_usual_words(name: str, raw: str, meant: bool) -> None:
    settings = from_args([], {name: raw})
    assert (settings.use_running if name == "SOAK_USE_RUNNING" else settings.keep) is meant


@pytest.mark.parametrize("raw", ["2", "y", "enable", "truee"])
def test_a_yes_or_no_variable_refuses_other_words(
    raw: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2, a usage error: 1 says an invariant was violated (docs/soak.md)."""
    with pytest.raises(SystemExit) as exited:
        from_args([], {"SOAK_KEEP": raw})
    assert exited.value.code == 2
    said = f"SOAK_KEEP must be one of 1/true/yes/on or 0/false/no/off, got {raw!r}"
    assert said in capsys.readouterr().err


@given(st.integers(-5, 3 * MAX_WORKERS), st.sampled_from(["flag", "env"]))
def test_the_worker_count_is_one_make_dev_can_run(workers: int, given_as: str) -> None:
    """--workers 10000 passed, then make dev refused it (or tried its ports past 65535)."""
    flag: list[str] = ["--workers", str(workers)] if given_as == "flag" else []
    env = {"SOAK_WORKERS": str(workers)} if given_as == "env" else {}
    if 1 <= workers <= MAX_WORKERS:
        assert from_args(flag, env).workers == workers
    else:
        with pytest.raises(SystemExit) as exited:
            from_args(flag, env)
        assert exited.value.code == 2


def test_a_worker_port_past_65535_is_refused_as_make_dev_would(
    capsys: pytest.CaptureFixture[str],
) -> None:
    said = _refused(capsys, ["--workers", "3"], {"DEV_WORKER_BASE_PORT": "65534"})
    assert "--workers: worker 3 would listen on port 65536" in said
    assert from_args(["--workers", "2"], {"DEV_WORKER_BASE_PORT": "65534"}).workers == 2
