"""TTL cache, idempotency bookkeeping and sign-in throttling, on a fake clock."""

from __future__ import annotations

import pytest

from contracts.api import Message
from contracts.errors import ErrorCode
from gateway.domain.idempotency import Attempt, IdempotencyCache
from gateway.domain.throttle import SignInThrottle
from gateway.domain.ttl_cache import TtlCache
from gateway.errors import GatewayError

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


def _message(text: str = "hi") -> Message:
    return Message(id="65f0c0ffee0123456789aaaa", cid=CID, uid=1, createdAt=1.5, text=text)


def test_idempotency_remembers_per_user_and_key() -> None:
    cache = IdempotencyCache(ttl=60, max_entries=10)
    assert cache.lookup(1, "k", CID, "hi", now=0) is None
    cache.record(1, "k", Attempt(_message(), acked=True), now=0)
    attempt = cache.lookup(1, "k", CID, "hi", now=59)
    assert attempt is not None and attempt.acked and attempt.message.id == _message().id
    assert cache.lookup(2, "k", CID, "hi", now=1) is None
    assert cache.lookup(1, "other", CID, "hi", now=1) is None
    assert cache.lookup(1, "k", CID, "hi", now=61) is None


def test_idempotency_key_reused_for_another_body_is_4000() -> None:
    cache = IdempotencyCache(ttl=60, max_entries=10)
    cache.record(1, "k", Attempt(_message(), acked=True), now=0)
    with pytest.raises(GatewayError) as caught:
        cache.lookup(1, "k", CID, "different", now=1)
    assert caught.value.code is ErrorCode.MALFORMED


def test_throttle_locks_one_username_after_max_failures() -> None:
    throttle = SignInThrottle(max_failures=3, window=60, lockout=30)
    for t in (0, 1, 2):
        assert throttle.retry_after("alice", now=t) is None
        throttle.failed("alice", now=t)
    assert throttle.retry_after("alice", now=2) == 30
    assert throttle.retry_after("ALICE", now=31) == 1
    assert throttle.retry_after("bob", now=3) is None
    assert throttle.retry_after("alice", now=32) is None


def test_throttle_failures_outside_the_window_do_not_add_up() -> None:
    throttle = SignInThrottle(max_failures=3, window=10, lockout=30)
    throttle.failed("alice", now=0)
    throttle.failed("alice", now=5)
    throttle.failed("alice", now=20)
    assert throttle.retry_after("alice", now=20) is None


def test_throttle_success_resets_and_lockout_is_not_extended() -> None:
    throttle = SignInThrottle(max_failures=2, window=60, lockout=30)
    throttle.failed("alice", now=0)
    throttle.succeeded("alice")
    throttle.failed("alice", now=1)
    assert throttle.retry_after("alice", now=1) is None
    throttle.failed("alice", now=2)
    assert throttle.retry_after("alice", now=2) == 30
    throttle.failed("alice", now=10)
    assert throttle.retry_after("alice", now=31) == 1
    assert throttle.retry_after("alice", now=33) is None
    throttle.failed("alice", now=33)
    assert throttle.retry_after("alice", now=33) is None
