"""`make dev`'s entry point as a user drives it: `python -m infra.dev up` on other ports,
the printed curl example run literally, scaling to three workers that all get reads, and
a graceful scale-down under reads with no failed request.

Workers always register as service "dialogue", so this copy uses its own Consul agent
(DEV_CONSUL_URL): other sessions' workers on the shared agent never answer our reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.records import decode_record
from infra.dev.demo import TRY_IT, demo_pair
from infra.local import LocalSettings, Stack
from infra.local.apt import apt_install
from infra.local.stack import PrintProgress
from infra.processes.private import free_range
from infra.processes.private import private_consul as private_consul_stack
from tests.support import librdkafka
from tests.support.hostile import LIKE_JAVA, base, dead_letters, edge_values, encode, expected_kind
from tests.support.waiting import WITHIN, eventually

REPO = Path(__file__).resolve().parents[2]
ADMIN = {"Authorization": "Bearer local-only-admin-token"}


@pytest.fixture(scope="module")
def private_consul(
    infra: LocalSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with private_consul_stack(tmp_path_factory.mktemp("dev-consul"), infra.cache_dir) as stack:
        yield stack


@pytest.fixture(scope="module")
def dev_env(
    private_consul: Stack, unique: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """A second copy of make dev: own ports, run folder, topic, group, database and ids."""
    return {
        **os.environ,
        "DEV_RUN_DIR": str(tmp_path_factory.mktemp("dev-run")),
        "DEV_GATEWAY_PORT": str(free_range(1)),
        "DEV_WORKER_BASE_PORT": str(free_range(4)),
        "DEV_CONSUL_URL": private_consul.settings.consul_url,
        "DEV_TOPIC": unique("dev-messages"),
        "DEV_TOPIC_PARTITIONS": "6",
        "DEV_APP_ID": unique("dev-app"),
        "DEV_MONGO_DB": unique("dev_db").replace("-", "_"),
        "DEV_ID_PREFIX": unique("dev"),
    }


def dev(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`python -m infra.dev ...` as make runs it; fails with its output when it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "infra.dev", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"infra.dev {args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def running(dev_env: dict[str, str]) -> Iterator[str]:
    """`up`'s printed summary; `down` afterwards, which must stop everything it started."""
    try:
        yield dev(dev_env, "up").stdout
    finally:
        down = dev(dev_env, "down")
        assert "gateway" in down.stdout
        assert not list(Path(dev_env["DEV_RUN_DIR"]).glob("*.pid"))


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def json_documents(text: str) -> list[Any]:
    """The JSON bodies curl printed one after the other."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)
    return docs


def bash(script: str) -> str:
    """Run what a user pastes into a shell; the curl the printed lines use is installed
    when missing (Debian's base image has none)."""
    if shutil.which("curl") is None:
        apt_install("dev demo", "curl", PrintProgress())
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def try_it(summary: str) -> list[str]:
    lines = summary.splitlines()
    start = lines.index(TRY_IT) + 1
    return lines[start : start + 3]


def counts(api: str, prefix: str) -> dict[str, int]:
    status, body = get(f"{api}/v1/admin/instances", ADMIN)
    assert status == 200, body
    return {i["id"]: i["requests"] for i in body["data"] if i["id"].startswith(prefix)}


async def test_up_prints_what_is_where_and_a_curl_example_that_works(
    running: str, dev_env: dict[str, str]
) -> None:
    api = f"http://127.0.0.1:{dev_env['DEV_GATEWAY_PORT']}"
    assert f"API         {api}" in running
    assert f"{dev_env['DEV_CONSUL_URL']}/ui/" in running
    assert f"{dev_env['DEV_RUN_DIR']}/gateway.log" in running
    assert running.count(" passing\n") == 2  # two workers by default, both passing
    example = try_it(running)
    assert len(example) == 3 and all("curl -s" in line for line in example)
    posted, page = json_documents(bash("\n".join([*example[:2], "echo", example[2]])))
    assert posted["object"] == "message" and posted["text"] == "hello from curl"
    assert readable(page), page
    # The write went through Kafka; reading the chat again shows it once a worker wrote it.

    def read_again() -> dict[str, Any]:
        (page,) = json_documents(bash("\n".join([example[0], example[2]])))
        assert readable(page), page
        return dict(page)

    await eventually(
        lambda: asyncio.to_thread(read_again),
        lambda page: page["object"] == "list" and posted["id"] in [m["id"] for m in page["data"]],
        what=f"message {posted['id']} persisted",
    )


async def test_a_librdkafka_burst_of_edge_records_leaves_every_valid_one_readable(
    running: str, dev_env: dict[str, str], infra: LocalSettings
) -> None:
    """Issue 11's check on make dev: edge records from librdkafka, each right after a
    valid one on the chat's partition; every valid one is readable through the gateway
    and every edge record the worker refuses is in the DLQ with its reason."""
    api = f"http://127.0.0.1:{dev_env['DEV_GATEWAY_PORT']}"
    alice, bob, chat = await asyncio.to_thread(demo_pair, api)
    members = {alice.user_id, bob.user_id}
    burst: list[tuple[bytes, bytes]] = []
    valid: set[str] = set()
    refused: dict[bytes, str] = {}
    for value in edge_values(chat, alice.user_id):
        good = base(chat, bob.user_id, f"valid {len(valid)}")
        valid.add(good["id"])
        burst += [(chat.encode(), encode(good)), (chat.encode(), value)]
        kind = expected_kind(value, members)
        if kind is None:
            valid.add(decode_record(value).id)
        else:
            refused[value] = kind
    topic = dev_env["DEV_TOPIC"]
    await asyncio.to_thread(librdkafka.produce, infra.kafka_bootstrap, topic, burst, LIKE_JAVA)

    def ids_readable() -> set[str]:
        found: set[str] = set()
        query = "limit=100"
        while True:
            status, page = get(
                f"{api}/v1/chats/{chat}/messages?{query}",
                {"Authorization": f"Bearer {alice.token}"},
            )
            assert status == 200, page
            found |= {m["id"] for m in page["data"]}
            if not page["nextCursor"]:
                return found
            query = f"limit=100&before={page['nextCursor']}"

    await eventually(
        lambda: asyncio.to_thread(ids_readable), lambda ids: valid <= ids, what="valid readable"
    )
    letters = await dead_letters(infra.kafka_bootstrap, f"{topic}.dlq", set(refused), WITHIN)
    got = {v: letters.get(v, {}).get("x-dlq-kind") for v in refused}
    wrong = [(v[:80], got[v], kind) for v, kind in refused.items() if got[v] != kind]
    assert not wrong, wrong  # (value cut to 80 bytes, its dead letter's kind, the expected)
    assert all(letters[v].get("x-dlq-reason") for v in refused)


def readable(page: dict[str, Any]) -> bool:
    """A page of messages; or 5030 when, on a heavily loaded machine, FerretDB answered the
    read of a write in progress slower than the gateway's 2 s per attempt (seen once at a
    load average of 8 on 2 cores). The poll above still requires the message to show."""
    return page["object"] == "list" or (page["object"] == "error" and page["code"] == "5030")


def _reader(api: str, chat: str, token: str) -> Callable[[], int]:
    headers = {"Authorization": f"Bearer {token}"}
    return lambda: get(f"{api}/v1/chats/{chat}/messages?limit=5", headers)[0]


def _demo_login(api: str) -> str:
    request = urllib.request.Request(
        f"{api}/v1/auth/sign-in",
        data=json.dumps({"username": "alice-demo", "password": "alice-demo-password"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        token: str = json.loads(response.read())["token"]
    return token


def test_three_workers_all_get_reads_and_a_graceful_stop_fails_no_request(
    running: str, dev_env: dict[str, str]
) -> None:
    api = f"http://127.0.0.1:{dev_env['DEV_GATEWAY_PORT']}"
    prefix = dev_env["DEV_ID_PREFIX"]
    chat = try_it(running)[1].split("/v1/chats/")[1].split("/")[0]
    read = _reader(api, chat, _demo_login(api))

    scaled = dev(dev_env, "scale", "3")
    assert scaled.stdout.startswith("3 worker(s)")
    before = counts(api, prefix)
    assert len(before) == 3, before
    assert all(read() == 200 for _ in range(30))
    after = counts(api, prefix)
    gained = {wid: after[wid] - before[wid] for wid in after}
    assert all(n > 0 for n in gained.values()), gained  # round robin: about 10 each

    statuses = reads_during(read, lambda: dev(dev_env, "scale", "2"))  # SIGTERM the newest
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert set(counts(api, prefix)) == {f"{prefix}-1", f"{prefix}-2"}


def test_a_crashed_worker_costs_no_read(running: str, dev_env: dict[str, str]) -> None:
    """Crashes a third worker of its own and scales back to two: the others keep theirs."""
    api = f"http://127.0.0.1:{dev_env['DEV_GATEWAY_PORT']}"
    chat = try_it(running)[1].split("/v1/chats/")[1].split("/")[0]
    read = _reader(api, chat, _demo_login(api))
    assert dev(dev_env, "scale", "3").stdout.startswith("3 worker(s)")
    try:
        state = json.loads((Path(dev_env["DEV_RUN_DIR"]) / "state.json").read_text())
        victim = Path(dev_env["DEV_RUN_DIR"]) / f"worker-{max(state['workers'])}.pid"
        pid = int(victim.read_text().split()[0])  # "<pid> <start time>"

        def crash() -> None:
            os.kill(pid, signal.SIGKILL)  # no deregistration: Consul still lists it for a while

        statuses = reads_during(read, crash)
    finally:
        dev(dev_env, "scale", "2")  # waits until the crashed one is out of Consul and routing
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}


def reads_during(read: Callable[[], int], action: Callable[[], object]) -> list[int]:
    """Statuses of sequential reads from before `action` until 10 reads after it."""
    statuses: list[int] = []
    stop = threading.Event()
    more = threading.Condition()

    def load() -> None:  # bounded in count
        try:
            while not stop.is_set() and len(statuses) < 2000:
                status = read()
                with more:
                    statuses.append(status)
                    more.notify_all()
        finally:
            with more:
                stop.set()
                more.notify_all()

    def until(count: int) -> None:
        with more:
            more.wait_for(lambda: len(statuses) >= count or stop.is_set(), timeout=WITHIN)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        until(5)
        before = len(statuses)
        action()
        until(len(statuses) + 10)
    finally:
        stop.set()
        thread.join()
    assert len(statuses) >= before + 10, statuses
    return statuses
