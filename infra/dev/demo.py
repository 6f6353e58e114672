"""Demo data through the public API, and the curl example that uses it."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Any

from infra.dev.http import Answer, call

#: (username, password, gender) of the two demo users.
ALICE = ("alice-demo", "alice-demo-password", "f")
BOB = ("bob-demo", "bob-demo-password", "m")
MESSAGES = (
    "Hi Bob, the dialogue platform is up.",
    "Hi Alice! Writes go through Kafka, reads through a worker.",
    "And every worker shows up in the Consul UI.",
)


TRY_IT = "# try it (three lines, in a POSIX shell):"


class DemoError(RuntimeError):
    """The API answered something the demo did not expect."""


def _expect(answer: Answer, status: int, what: str) -> Any:
    if answer.status != status:
        raise DemoError(f"{what}: HTTP {answer.status} {answer.body}")
    return answer.body


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    user_id: int
    token: str


def ensure_user(api: str, username: str, password: str, gender: str) -> DemoUser:
    """Sign up, or sign in when the name is taken (4090): safe to repeat."""
    body = {"username": username, "password": password, "passwordConfirm": password}
    answer = call("POST", f"{api}/v1/auth/sign-up", {**body, "gender": gender})
    if answer.status == 409:
        answer = call("POST", f"{api}/v1/auth/sign-in", body)
        token = _expect(answer, 200, f"sign-in of {username}")
    else:
        token = _expect(answer, 201, f"sign-up of {username}")
    return DemoUser(username, password, int(token["userId"]), str(token["token"]))


def ensure_chat(api: str, owner: DemoUser, other: DemoUser) -> str:
    """The chat of exactly these two users, created when it does not exist yet."""
    members = {owner.user_id, other.user_id}
    listing = _expect(
        call("GET", f"{api}/v1/chats?limit=100", token=owner.token), 200, "list chats"
    )
    for chat in listing["data"]:
        if set(chat["users"]) == members:
            return str(chat["id"])
    created = call("POST", f"{api}/v1/chats", {"users": sorted(members)}, token=owner.token)
    return str(_expect(created, 201, "create chat")["id"])


def demo_pair(api: str) -> tuple[DemoUser, DemoUser, str]:
    alice = ensure_user(api, *ALICE)
    bob = ensure_user(api, *BOB)
    return alice, bob, ensure_chat(api, alice, bob)


def post_messages(api: str, chat: str, alice: DemoUser, bob: DemoUser) -> list[dict[str, Any]]:
    """The demo conversation, alternating authors; the 202 bodies."""
    sent = []
    for n, text in enumerate(MESSAGES):
        author = (alice, bob)[n % 2]
        answer = call("POST", f"{api}/v1/chats/{chat}/messages", {"txt": text}, token=author.token)
        sent.append(_expect(answer, 202, "post message"))
    return list(sent)


def wait_persisted(api: str, chat: str, reader: DemoUser, ids: set[str], within: float) -> bool:
    """Whether every message id is readable from the chat (a worker wrote it) in time."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        page = call("GET", f"{api}/v1/chats/{chat}/messages?limit=100", token=reader.token)
        if page.status == 200 and ids <= {m["id"] for m in page.body["data"]}:
            return True
        time.sleep(0.2)
    return False


def warm_up(api: str, chat: str, reader: DemoUser) -> None:
    """Read the chat's messages once (the answer does not matter)."""
    try:
        call("GET", f"{api}/v1/chats/{chat}/messages?limit=1", token=reader.token, timeout=15)
    except OSError:  # a slow first read is what this is for; the user's reads will tell
        pass


def curl_example(api: str, chat: str) -> list[str]:
    """Three shell lines: sign in as the demo user, post to the demo chat, read it back."""
    username, password, _ = ALICE
    sign_in = shlex.quote(f'{{"username":"{username}","password":"{password}"}}')
    extract = shlex.quote('import json,sys; print(json.load(sys.stdin)["token"])')
    json_header = "-H 'Content-Type: application/json'"
    auth = '-H "Authorization: Bearer $TOKEN"'
    return [
        f"TOKEN=$(curl -s -X POST {api}/v1/auth/sign-in {json_header} -d {sign_in} "
        f"| python3 -c {extract})",
        f"curl -s -X POST {api}/v1/chats/{chat}/messages {auth} {json_header} "
        f"""-d '{{"txt":"hello from curl"}}'""",
        f"curl -s '{api}/v1/chats/{chat}/messages?limit=5' {auth}",
    ]
