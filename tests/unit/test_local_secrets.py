"""What a secret must be outside local mode (and beyond loopback in it): set, no
development default, no white space around it, 32 bytes or more, and not one a person
would type (too few different characters, or one character repeated)."""

from __future__ import annotations

import random
import secrets

from hypothesis import given
from hypothesis import strategies as st

from platform_common.local import (
    LOCAL_SECRETS,
    MAX_RUN,
    MIN_DISTINCT,
    MIN_SECRET_BYTES,
    longest_run,
    secret_problem,
)


def test_generated_secrets_pass() -> None:
    for _ in range(2_000):
        for value in (secrets.token_urlsafe(32), secrets.token_hex(16), secrets.token_hex(32)):
            assert secret_problem("S", value) is None, value


@given(
    st.sampled_from(sorted(LOCAL_SECRETS)),
    st.text(" \t\n", max_size=3),
    st.text(" \t\n", max_size=3),
)
def test_a_development_default_is_refused_however_padded(
    default: str, before: str, after: str
) -> None:
    problem = secret_problem("S", before + default + after)
    assert problem is not None and "local development default" in problem


@given(st.text(min_size=1, max_size=60), st.sampled_from([" ", "\t", "\n", "\u00a0"]))
def test_white_space_around_a_secret_is_refused(value: str, space: str) -> None:
    for padded in (space + value, value + space):
        assert secret_problem("S", padded) is not None


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1).filter(lambda v: v == v.strip()))
def test_a_secret_under_32_bytes_is_refused(value: str) -> None:
    if len(value.encode()) < MIN_SECRET_BYTES:
        assert secret_problem("S", value) is not None


@given(
    st.lists(
        st.sampled_from("abcdefghijklmnop"), min_size=1, max_size=MIN_DISTINCT - 1, unique=True
    ),
    st.integers(MIN_SECRET_BYTES, 200),
    st.randoms(),
)
def test_a_secret_of_few_different_characters_is_refused(
    alphabet: list[str], length: int, rng: random.Random
) -> None:
    value = "".join(rng.choice(alphabet) for _ in range(length))
    problem = secret_problem("S", value)
    assert problem is not None and "not random" in problem


@given(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"), st.integers(MAX_RUN + 1, 64))
def test_a_secret_with_a_long_run_of_one_character_is_refused(char: str, run: int) -> None:
    value = secrets.token_urlsafe(24) + char * run
    assert longest_run(value) >= run
    problem = secret_problem("S", value)
    assert problem is not None and "not random" in problem


@given(st.text(max_size=80))
def test_longest_run_is_the_longest_repeat(value: str) -> None:
    run = longest_run(value)
    if not value:
        assert run == 0
        return
    assert any(value[i : i + run] == value[i] * run for i in range(len(value)))
    assert not any(value[i : i + run + 1] == value[i] * (run + 1) for i in range(len(value)))
