"""Sign-up, sign-in, token refresh and resolving the caller of a request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from contracts.errors import ErrorCode
from gateway.domain.throttle import Refusal, SignInThrottle
from gateway.domain.tokens import Principal, Token, TokenCodec
from gateway.domain.usernames import throttle_key
from gateway.domain.users import Credentials, SignUp, User
from gateway.errors import GatewayError
from gateway.services.limits import too_many
from gateway.services.ports import PasswordHasher, UserStore

log = logging.getLogger(__name__)

_WRONG = "wrong username or password"
_REFUSALS = {
    "account": "too many failed sign-ins for this username",
    "address": "too many failed sign-ins from this address",
    "global": "too many failed sign-ins on this server",
}


class AuthService:
    def __init__(
        self,
        users: UserStore,
        hasher: PasswordHasher,
        tokens: TokenCodec,
        throttle: SignInThrottle,
        clock: Callable[[], float],
        elapsed: Callable[[], float] | None = None,
    ) -> None:
        """`clock` is wall time (tokens' iat and exp); `elapsed` (default: `clock`) times
        failures and lockouts, and should be monotonic: on the wall clock a step back
        lengthened every running lockout by its size (found in review)."""
        self._users = users
        self._hasher = hasher
        self._tokens = tokens
        self._throttle = throttle
        self._clock = clock
        self._elapsed = clock if elapsed is None else elapsed
        self._dummy_hash: str | None = None
        #: One password check at a time per account, and the attempts waiting for it.
        self._checking: dict[str, tuple[asyncio.Lock, int]] = {}

    async def sign_up(self, request: SignUp) -> Token:
        if await self._users.by_username(request.username) is not None:
            raise GatewayError(ErrorCode.USERNAME_TAKEN, "username is taken")
        password_hash = await self._hasher.hash(request.password)
        user = await self._users.add(request.username, password_hash, request.gender)
        return self._tokens.issue(user.id, user.username, self._clock())

    async def sign_in(self, credentials: Credentials, address: str) -> Token:
        """A token for right credentials; 4011 for wrong ones, 4290 while throttled.

        Failures count against the account (its throttle key, which names differing only
        in accents share), the client `address` and the process-wide budget. Success
        clears only the failures of the name that signed in: the owner of "álice" must
        not clear the failures of someone guessing at "alice".
        """
        account = throttle_key(credentials.username.canonical)
        async with self._one_at_a_time(account):
            return await self._sign_in(credentials, account, address)

    async def _sign_in(self, credentials: Credentials, account: str, address: str) -> Token:
        name = credentials.username.canonical
        refusal = self._throttle.refusal(account, address, self._elapsed())
        if refusal is not None:
            raise _throttled(refusal)
        with self._throttle.attempt(address):
            user = await self._users.by_username(credentials.username)
            if user is None:
                await self._hasher.verify(await self._dummy(), credentials.password)
                ok = False
            else:
                ok = await self._hasher.verify(user.password_hash, credentials.password)
            if user is None or not ok:
                self._throttle.failed(account, address, self._elapsed(), name)
                raise GatewayError(ErrorCode.BAD_TOKEN, _WRONG)
        self._throttle.succeeded(account, name)
        if self._hasher.needs_rehash(user.password_hash):
            await self._upgrade(user, credentials.password)
        return self._tokens.issue(user.id, user.username, self._clock())

    async def _upgrade(self, user: User, password: str) -> None:
        """Rehash with the current ARGON2_* settings: raising them strengthens every
        account as it signs in, and a known name then costs what an unknown one does
        (whose decoy is hashed with the current settings). Best effort: the sign-in
        succeeds whether or not the new hash is stored."""
        try:
            stored = await self._users.replace_password_hash(
                user.id, user.password_hash, await self._hasher.hash(password)
            )
        except GatewayError as exc:
            log.warning("password hash of user %d not upgraded: %s", user.id, exc)
            return
        if stored:
            log.info("password hash of user %d upgraded to the current settings", user.id)

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, account: str) -> AsyncIterator[None]:
        """Attempts on one account wait for each other, so each sees the failures of
        those before it: checked at once, ten guesses all got past a limit of five."""
        lock, users = self._checking.get(account, (asyncio.Lock(), 0))
        self._checking[account] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._checking[account]
            if users == 1:
                del self._checking[account]
            else:
                self._checking[account] = (lock, users - 1)

    def authenticate(self, token: str) -> Principal:
        return self._tokens.verify(token)

    async def refresh(self, caller: Principal) -> Token:
        """A new token of the caller's session, with the name the user has now (a rename
        shows from here on); 4011 when the user is gone or the session has ended."""
        user = await self._users.by_id(caller.user_id)
        if user is None:
            raise GatewayError(ErrorCode.BAD_TOKEN, "the token's user no longer exists")
        return self._tokens.refresh(caller, user.username, self._clock())

    async def me(self, caller: Principal) -> User:
        user = await self._users.by_id(caller.user_id)
        if user is None:
            raise GatewayError(ErrorCode.NOT_FOUND, "user not found")
        return user

    async def _dummy(self) -> str:
        """A real hash to verify against for unknown usernames, so timing reveals nothing."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._hasher.hash("not-a-real-password", urgent=True)
        return self._dummy_hash


def _throttled(refusal: Refusal) -> GatewayError:
    return too_many(_REFUSALS[refusal.scope], refusal.retry_after)
