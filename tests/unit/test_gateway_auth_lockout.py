"""Sign-in lockout of names that share a throttle key: "alice" and "álice" are separate
accounts counted under one key, and the owner of one must not clear the other's."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from gateway.domain.throttle import FailureBudget, FailureLimit, SignInThrottle
from gateway.domain.tokens import TokenCodec
from gateway.domain.usernames import sign_in_name, throttle_key, username
from gateway.domain.users import Credentials
from gateway.errors import GatewayError
from gateway.services.auth import AuthService
from tests.support.gateway_fakes import FakeHasher, FakeUsers

MAX_FAILURES = 5
ADDRESS = "203.0.113.9"


class _Clock:
    """Time stands still unless a test moves it: every failure stays within the window."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _world(clock: _Clock) -> AuthService:
    users, hasher = FakeUsers(), FakeHasher()
    await users.add(username("alice"), await hasher.hash("victim-password"), "f")
    await users.add(username("álice"), await hasher.hash("attacker-password"), "m")
    throttle = SignInThrottle(
        FailureLimit(MAX_FAILURES, window=300, lockout=60),
        FailureLimit(0, window=300, lockout=60),  # the address limit is off: one account
        FailureBudget(0, window=300),
    )
    return AuthService(users, hasher, TokenCodec("k" * 40, "test", 3600), throttle, clock)


async def _sign_in(auth: AuthService, name: str, password: str) -> str:
    """ "ok", or the error code of the refusal."""
    try:
        await auth.sign_in(Credentials(sign_in_name(name), password), ADDRESS)
    except GatewayError as exc:
        return exc.code.value
    return "ok"


def test_alice_and_álice_are_two_accounts_under_one_key() -> None:
    alice, sibling = username("alice"), username("álice")
    assert alice.canonical != sibling.canonical
    assert throttle_key(alice.canonical) == throttle_key(sibling.canonical)


async def test_a_right_password_on_álice_does_not_clear_the_failures_of_alice() -> None:
    auth = await _world(_Clock())
    for n in range(MAX_FAILURES - 1):
        assert await _sign_in(auth, "alice", f"guess-{n}") == ErrorCode.BAD_TOKEN.value
    assert await _sign_in(auth, "álice", "attacker-password") == "ok"
    assert await _sign_in(auth, "alice", "guess-last") == ErrorCode.BAD_TOKEN.value
    assert await _sign_in(auth, "alice", "guess-more") == ErrorCode.TOO_MANY_ATTEMPTS.value
    # The lockout is the shared key's: neither account is checked until it ends.
    assert await _sign_in(auth, "alice", "victim-password") == ErrorCode.TOO_MANY_ATTEMPTS.value
    assert await _sign_in(auth, "álice", "attacker-password") == ErrorCode.TOO_MANY_ATTEMPTS.value


async def test_a_right_password_still_clears_the_failures_of_its_own_name() -> None:
    auth = await _world(_Clock())
    for n in range(MAX_FAILURES - 1):
        assert await _sign_in(auth, "ALICE", f"typo-{n}") == ErrorCode.BAD_TOKEN.value
    assert await _sign_in(auth, "alice", "victim-password") == "ok"
    for n in range(MAX_FAILURES - 1):  # a fresh allowance, not one failure left
        assert await _sign_in(auth, "alice", f"typo-again-{n}") == ErrorCode.BAD_TOKEN.value


async def test_failures_of_álice_still_count_toward_the_shared_lockout() -> None:
    auth = await _world(_Clock())
    for n in range(MAX_FAILURES - 1):
        assert await _sign_in(auth, "álice", f"guess-{n}") == ErrorCode.BAD_TOKEN.value
    assert await _sign_in(auth, "alice", "victim-password") == "ok"  # clears none of them
    assert await _sign_in(auth, "alice", "typo") == ErrorCode.BAD_TOKEN.value
    assert await _sign_in(auth, "alice", "victim-password") == ErrorCode.TOO_MANY_ATTEMPTS.value


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_no_interleaving_of_sibling_sign_ins_buys_more_guesses(plan: list[bool]) -> None:
    """Whatever the owner of "álice" does between guesses at "alice" (True: he signs in
    to his own account), at most MAX_FAILURES guesses at alice's password are checked
    within one window."""

    async def run() -> int:
        auth = await _world(_Clock())
        checked = 0
        for n, sibling_first in enumerate(plan):
            if sibling_first:
                await _sign_in(auth, "álice", "attacker-password")
            if await _sign_in(auth, "alice", f"guess-{n}") == ErrorCode.BAD_TOKEN.value:
                checked += 1
        return checked

    assert asyncio.run(run()) <= MAX_FAILURES


def test_forgetting_one_name_keeps_the_others_and_a_running_lockout() -> None:
    limit = FailureLimit(max_failures=3, window=60, lockout=30)
    limit.failed("alice", now=0, name="alice")
    limit.failed("alice", now=1, name="álice")
    limit.forget("alice", name="álice")
    limit.failed("alice", now=2, name="alice")
    assert limit.retry_after("alice", now=2) is None  # two failures of alice remain
    limit.failed("alice", now=3, name="álice")
    assert limit.retry_after("alice", now=3) == 30
    limit.forget("alice", name="alice")
    limit.forget("alice", name="álice")
    assert limit.retry_after("alice", now=4) == 29  # no right password lifts a lockout
    assert limit.retry_after("alice", now=33) is None


def test_a_lockout_lasts_its_time_whatever_the_wall_clock_does() -> None:
    """On the wall clock, a step back (an NTP correction) lengthened every running lockout
    by its size, and a step forward ended them all."""

    async def scenario() -> None:
        users, hasher = FakeUsers(), FakeHasher()
        await users.add(username("alice"), await hasher.hash("victim-password"), "f")
        throttle = SignInThrottle(
            FailureLimit(MAX_FAILURES, window=300, lockout=60),
            FailureLimit(0, window=300, lockout=60),
            FailureBudget(0, window=300),
        )
        wall, elapsed = _Clock(), _Clock()
        codec = TokenCodec("k" * 40, "test", 3600)
        auth = AuthService(users, hasher, codec, throttle, wall, elapsed)
        for _ in range(MAX_FAILURES):
            assert await _sign_in(auth, "alice", "wrong") == ErrorCode.BAD_TOKEN.value
        assert await _sign_in(auth, "alice", "victim-password") == ErrorCode.TOO_MANY_ATTEMPTS.value
        wall.now -= 3600  # stepped back an hour
        elapsed.now += 61  # the lockout's minute has passed
        assert await _sign_in(auth, "alice", "victim-password") == "ok"

    asyncio.run(scenario())
