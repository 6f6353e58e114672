"""TTL cache, idempotency bookkeeping and sign-in throttling, on a fake clock (and the
sign-in service on a burst, against hand-written user store and hasher)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from gateway.domain.idempotency import (
    ENTRY_OVERHEAD,
    USER_OVERHEAD,
    Attempt,
    IdempotencyCache,
    request_digest,
)
from gateway.domain.throttle import FailureBudget, FailureLimit, SignInThrottle
from gateway.domain.tokens import TokenCodec
from gateway.domain.ttl_cache import TtlCache
from gateway.domain.users import parse_sign_in
from gateway.errors import GatewayError
from gateway.services.auth import AuthService
from tests.support.waiting import eventually

CID = "65f0c0ffee0123456789abcd"


def test_ttl_cache_expires_and_evicts_oldest() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl=10, max_entries=2)
    cache.put("a", 1, now=0)
    assert cache.get("a", now=9.9) == 1
    assert cache.get("a", now=10) is None
    cache.put("a", 1, now=20)
    cache.put("b", 2, now=21)
    cache.put("c", 3, now=22)
    assert len(cache) == 2
    assert cache.get("a", now=22) is None
    assert cache.get("c", now=22) == 3
    cache.discard("c")
    assert cache.get("c", now=22) is None


MID = "65f0c0ffee0123456789aaaa"


def _attempt(text: str = "hi", acked: bool = True) -> Attempt:
    return Attempt(MID, 1_700_000_000, request_digest(CID, text), acked)


def _cache(**bounds: int) -> IdempotencyCache:
    limits = {"max_entries": 10, "max_bytes": 10**6, "keys_per_user": 10, **bounds}
    return IdempotencyCache(ttl=60, **limits)


def test_idempotency_remembers_per_user_and_key() -> None:
    cache = _cache()
    digest = request_digest(CID, "hi")
    assert cache.lookup(1, "k", digest, now=0) is None
    cache.record(1, "k", _attempt(), now=0)
    attempt = cache.lookup(1, "k", digest, now=59)
    assert attempt is not None and attempt.acked and attempt.message_id == MID
    assert cache.lookup(2, "k", digest, now=1) is None
    assert cache.lookup(1, "other", digest, now=1) is None
    assert cache.lookup(1, "k", digest, now=61) is None


def test_idempotency_key_reused_for_another_body_is_4000() -> None:
    cache = _cache()
    cache.record(1, "k", _attempt(), now=0)
    for cid, text in ((CID, "different"), ("65f0c0ffee0123456789abce", "hi")):
        with pytest.raises(GatewayError) as caught:
            cache.lookup(1, "k", request_digest(cid, text), now=1)
        assert caught.value.code is ErrorCode.MALFORMED


def test_idempotency_keeps_a_digest_not_the_text() -> None:
    text = "x" * 50_000
    attempt = _attempt(text)
    assert len(attempt.digest) == 32
    assert text not in repr(attempt) and all(len(str(v)) < 100 for v in vars(attempt).values())


def test_idempotency_a_user_past_his_limit_loses_his_own_oldest_key() -> None:
    cache = _cache(keys_per_user=3)
    for n in range(5):
        cache.record(1, f"k{n}", _attempt(), now=n)
    cache.record(2, "theirs", _attempt(), now=5)
    assert cache.keys_of(1) == 3 and cache.keys_of(2) == 1
    digest = request_digest(CID, "hi")
    assert cache.lookup(1, "k0", digest, now=6) is None
    assert cache.lookup(1, "k4", digest, now=6) is not None
    assert cache.lookup(2, "theirs", digest, now=6) is not None


def test_idempotency_counts_keys_dropped_before_their_time() -> None:
    cache = _cache(max_entries=2)
    cache.record(1, "a", _attempt(), now=0)
    cache.record(1, "b", _attempt(), now=1)
    assert cache.evicted_early == 0
    cache.record(2, "c", _attempt(), now=2)  # full: "a" goes long before its ttl
    assert cache.evicted_early == 1
    expired = 10**6
    cache.record(2, "d", _attempt(), now=expired)  # "b" and "c" expired: not early
    assert cache.evicted_early == 1 and len(cache) == 1


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.text(min_size=1, max_size=255), st.booleans()),
        max_size=200,
    ),
    st.integers(1, 20),
    st.integers(ENTRY_OVERHEAD + USER_OVERHEAD + 255, 20_000),
)
def test_idempotency_stays_within_every_bound(
    writes: list[tuple[int, str, bool]], per_user: int, max_bytes: int
) -> None:
    cache = _cache(max_entries=50, max_bytes=max_bytes, keys_per_user=per_user)
    for now, (uid, key, acked) in enumerate(writes):
        cache.record(uid, key, _attempt(acked=acked), now=now)
        assert len(cache) <= 50 and cache.bytes <= max_bytes
        assert all(cache.keys_of(u) <= per_user for u in range(1, 6))
        assert cache.lookup(uid, key, request_digest(CID, "hi"), now=now) is not None
    users = {uid for (uid, _) in _keys(cache)}
    entries = sum(ENTRY_OVERHEAD + len(k) for (_, k) in _keys(cache))
    assert cache.bytes == entries + USER_OVERHEAD * len(users)


def _keys(cache: IdempotencyCache) -> list[tuple[int, str]]:
    return list(cache._entries)


def _throttle(account: int = 3, address: int = 0, budget: int = 0) -> SignInThrottle:
    return SignInThrottle(
        FailureLimit(account, 60, 30), FailureLimit(address, 60, 30), FailureBudget(budget, 60)
    )


def test_limit_locks_one_key_after_max_failures() -> None:
    limit = FailureLimit(max_failures=3, window=60, lockout=30)
    for t in (0, 1, 2):
        assert limit.retry_after("alice", now=t) is None
        limit.failed("alice", now=t)
    assert limit.retry_after("alice", now=2) == 30
    assert limit.retry_after("alice", now=31) == 1
    assert limit.retry_after("bob", now=3) is None
    assert limit.retry_after("alice", now=32) is None


def test_limit_failures_outside_the_window_do_not_add_up() -> None:
    limit = FailureLimit(max_failures=3, window=10, lockout=30)
    limit.failed("alice", now=0)
    limit.failed("alice", now=5)
    limit.failed("alice", now=20)
    assert limit.retry_after("alice", now=20) is None


def test_success_resets_the_account_and_lockout_is_not_extended() -> None:
    throttle = _throttle(account=2)
    throttle.failed("alice", "1.2.3.4", now=0)
    throttle.succeeded("alice")
    throttle.failed("alice", "1.2.3.4", now=1)
    assert throttle.refusal("alice", "1.2.3.4", now=1) is None
    throttle.failed("alice", "1.2.3.4", now=2)
    refusal = throttle.refusal("alice", "5.6.7.8", now=2)
    assert refusal is not None and (refusal.scope, refusal.retry_after) == ("account", 30)
    throttle.failed("alice", "1.2.3.4", now=10)
    assert throttle.refusal("alice", "1.2.3.4", now=31) is not None
    assert throttle.refusal("alice", "1.2.3.4", now=33) is None


def test_an_address_that_failed_too_often_is_refused_for_every_account() -> None:
    throttle = _throttle(account=100, address=3)
    for n in range(3):
        throttle.failed(f"victim{n}", "1.2.3.4", now=n)
    refusal = throttle.refusal("anyone", "1.2.3.4", now=3)
    assert refusal is not None and refusal.scope == "address"
    assert throttle.refusal("anyone", "5.6.7.8", now=3) is None
    throttle.succeeded("victim0")  # a right password elsewhere does not clear the address
    assert throttle.refusal("anyone", "1.2.3.4", now=3) is not None


def test_the_global_budget_refuses_everyone_until_failures_age_out() -> None:
    throttle = _throttle(account=100, address=100, budget=4)
    for n in range(4):
        throttle.failed(f"user{n}", f"10.0.0.{n}", now=n)
    refusal = throttle.refusal("fresh", "192.0.2.1", now=10)
    assert refusal is not None and refusal.scope == "global" and refusal.retry_after == 50
    assert throttle.refusal("fresh", "192.0.2.1", now=60) is None  # the first aged out


def test_zero_turns_the_address_limit_and_the_budget_off() -> None:
    throttle = _throttle(account=1000, address=0, budget=0)
    for n in range(500):
        throttle.failed(f"u{n}", "1.2.3.4", now=0)
    assert throttle.refusal("u", "1.2.3.4", now=0) is None


def test_attempts_being_checked_count_against_the_address_and_the_budget() -> None:
    """Checked before any failure of a burst is recorded, every attempt of it used to
    pass: the limits now count the attempts still in flight."""
    throttle = _throttle(account=100, address=3, budget=5)
    throttle.failed("a0", "1.2.3.4", now=0)
    with throttle.attempt("1.2.3.4"), throttle.attempt("1.2.3.4"):
        refusal = throttle.refusal("a3", "1.2.3.4", now=1)
        assert refusal is not None and (refusal.scope, refusal.retry_after) == ("address", 1)
        assert throttle.refusal("b0", "5.6.7.8", now=1) is None
        with throttle.attempt("5.6.7.8"), throttle.attempt("9.9.9.9"):
            refusal = throttle.refusal("b0", "5.6.7.8", now=1)
            assert refusal is not None and refusal.scope == "global"
    assert throttle.refusal("a3", "1.2.3.4", now=1) is None  # they ended without failing


class _Users:
    async def by_username(self, username: Any) -> None:
        return None


class _SlowHasher:
    """Every check waits for `gate`, so a burst is in flight together."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.checked = 0

    async def hash(self, password: str, *, urgent: bool = False) -> str:
        return "dummy"

    async def verify(self, password_hash: str, password: str) -> bool:
        self.checked += 1
        await self.gate.wait()
        return False


async def test_a_burst_of_sign_ins_checks_no_more_passwords_than_the_budget() -> None:
    hasher = _SlowHasher()
    auth = AuthService(
        _Users(),  # type: ignore[arg-type]
        hasher,
        TokenCodec("k" * 40, "test", 60),
        _throttle(account=5, address=0, budget=10),
        lambda: 0.0,
    )
    burst = [
        asyncio.create_task(
            auth.sign_in(
                parse_sign_in({"username": f"burst_user_{i}", "password": "p"}), f"10.0.{i}.1"
            )
        )
        for i in range(50)
    ]
    await eventually(lambda: hasher.checked, lambda n: n == 10, what="the budget's checks")
    hasher.gate.set()
    codes = [
        r.code.value if isinstance(r, GatewayError) else r
        for r in await asyncio.gather(*burst, return_exceptions=True)
    ]
    assert hasher.checked == 10
    assert sorted(codes) == ["4011"] * 10 + ["4290"] * 40
