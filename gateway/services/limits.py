"""Request rate limits per client address and per user, in this gateway process."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from enum import StrEnum

from contracts.errors import ErrorCode
from gateway.domain.rate_limit import Rate, TokenBuckets
from gateway.errors import GatewayError


class Action(StrEnum):
    SIGN_UP = "sign-up"
    SIGN_IN = "sign-in"
    REFRESH_TOKEN = "token refreshes"
    CREATE_CHAT = "chat creation"
    POST_MESSAGE = "message posts"
    OPEN_STREAM = "stream opens"
    ADD_MEMBERS = "member additions"
    MARK_READ = "read-marker moves"
    LOOK_UP_USERS = "user look-ups"


class Scope(StrEnum):
    ADDRESS = "address"
    USER = "user"


Rules = Mapping[tuple[Action, Scope], Rate]


def too_many(message: str, wait: float) -> GatewayError:
    """4290 with a Retry-After of at least one second."""
    seconds = max(1, math.ceil(wait))
    return GatewayError(
        ErrorCode.TOO_MANY_ATTEMPTS,
        f"{message}; retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


class RateLimits:
    """A token bucket per (action, scope, key); an action is admitted only when every
    bucket it touches has a token, and only then are the tokens spent."""

    def __init__(self, rules: Rules, clock: Callable[[], float], max_keys: int = 100_000) -> None:
        self._buckets = {rule: TokenBuckets(rate, max_keys) for rule, rate in rules.items()}
        self._clock = clock

    def admit(self, action: Action, *, address: str, user: str | None = None) -> None:
        """Return if allowed; GatewayError 4290 with Retry-After otherwise."""
        now = self._clock()
        keys = {Scope.ADDRESS: address, Scope.USER: user}
        touched = [
            (scope, buckets, key)
            for scope, key in keys.items()
            if key is not None and (buckets := self._buckets.get((action, scope))) is not None
        ]
        waits = [(buckets.wait(key, now), scope) for scope, buckets, key in touched]
        wait, scope = max(waits, default=(0.0, Scope.ADDRESS))
        if wait > 0:
            raise too_many(f"too many {action} from this {scope}", wait)
        for _, buckets, key in touched:
            buckets.take(key, now)
