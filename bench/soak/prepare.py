"""The soak's users and chats, made through the public API before the load starts."""

from __future__ import annotations

import sys
import time
import uuid

from bench.soak.clients import Sessions, retrying
from bench.soak.plan import Account, Chat, Plan, memberships, source_address
from bench.soak.settings import SoakSettings
from platform_common.gather import bounded

#: Sign-ups at once: each costs the gateway an argon2 hash (64 MiB, 3 passes by default).
SIGN_UP_CONCURRENCY = 4
CHAT_CONCURRENCY = 16


class PrepareFailed(RuntimeError):
    """The API refused to make a user or a chat; the message has its answer."""


def _say(text: str) -> None:
    print(f"[soak] {text}", file=sys.stderr, flush=True)


async def prepare(settings: SoakSettings, api_url: str, kafka_bootstrap: str, topic: str) -> Plan:
    """Sign up the users, make the chats; the plan the load processes follow."""
    run = uuid.uuid4().hex[:6]
    plan = Plan(
        run=run,
        api_url=api_url,
        kafka_bootstrap=kafka_bootstrap,
        topic=topic,
        rates=settings.rates(),
        sockets=settings.sockets,
        pages=settings.pages,
        in_flight=settings.in_flight,
        hot_share=settings.hot_share,
        seed=settings.seed,
    )
    sessions = Sessions()
    try:
        started = time.monotonic()
        plan.accounts = await bounded(
            range(settings.users),
            lambda i: _sign_up(settings, plan, sessions, i),
            SIGN_UP_CONCURRENCY,
        )
        _say(f"{settings.users} users signed up ({time.monotonic() - started:.0f} s)")
        started = time.monotonic()
        shapes = memberships(
            settings.users, settings.chats, settings.hot_chats, settings.hot_members, settings.seed
        )
        plan.chats = await bounded(
            shapes, lambda shape: _create_chat(plan, sessions, *shape), CHAT_CONCURRENCY
        )
        _say(f"{len(plan.chats)} chats made ({time.monotonic() - started:.0f} s)")
    finally:
        await sessions.close()
    return plan


async def _sign_up(settings: SoakSettings, plan: Plan, sessions: Sessions, i: int) -> Account:
    username = f"soak{plan.run}{i:05d}"
    password = f"soak-{plan.run}-pw"
    account = Account(i, 0, username, password, "", source_address(i, settings.addresses))
    body = {
        "username": username,
        "password": password,
        "passwordConfirm": password,
        "gender": "fm"[i % 2],
    }
    code, answer = await retrying(
        sessions.of(account), "POST", f"{plan.api_url}/v1/auth/sign-up", body=body
    )
    if code != "201" or not isinstance(answer, dict):
        raise PrepareFailed(f"sign-up of {username}: {code} {answer}")
    account.uid, account.token = int(answer["userId"]), str(answer["token"])
    return account


async def _create_chat(plan: Plan, sessions: Sessions, members: list[int], hot: bool) -> Chat:
    creator = plan.accounts[members[0]]
    body = {"users": [plan.accounts[m].uid for m in members]}
    code, answer = await retrying(
        sessions.of(creator), "POST", f"{plan.api_url}/v1/chats", creator.token, body
    )
    if code != "201" or not isinstance(answer, dict):
        raise PrepareFailed(f"chat of {body['users']}: {code} {answer}")
    return Chat(str(answer["id"]), members, hot)
