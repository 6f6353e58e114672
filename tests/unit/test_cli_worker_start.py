"""A worker that cannot start says why in one line and exits 1: a MONGO_URL the MongoDB
client refuses is an invalid setting (it was a pymongo traceback from build(), which
could show the URL), a DATA_DIR that cannot be a folder or another OSError while
starting is `cannot start: ...` (it was a traceback)."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pymongo.errors import ConfigurationError

import dialogue_worker.__main__ as worker_main
from dialogue_worker.bootstrap import Components
from dialogue_worker.runtime import EXIT_FAILED, EXIT_OK, WorkerRuntime
from dialogue_worker.settings import WorkerSettings
from platform_common.settings_errors import invalid_settings


def _refusal(url: str) -> str:
    with pytest.raises(ValidationError) as refused:
        WorkerSettings(dialogue_env="local", mongo_url=url)
    return invalid_settings("dialogue_worker", refused.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mongodb://app:S3cret@mongos:abc/", "Port contains non-digit characters"),
        ("http://mongos:27017/", "Invalid URI scheme"),
        ("mongodb://", "at least one hostname"),
        ("mongodb://h:70000/", "Port must be an integer"),
        ("mongodb://h/?foo=bar", "Unknown option"),  # the client only warned, and ignored it
        ("mongodb://h/?readPreference=nearst", "Not a valid read preference"),
        ("mongodb://h/?directConnection=true&loadBalanced=true", "Cannot specify"),
        ("mongodb+srv://cluster.example:27017/", "must not include a port number"),
        ("mongodb://h/?tls=true&tlsCAFile=/no/such/ca.pem", "not readable"),
    ],
)
def test_a_mongo_url_the_client_refuses_is_an_invalid_setting(url: str, reason: str) -> None:
    said = _refusal(url)
    assert "mongo_url: MONGO_URL is not a URL the MongoDB client takes" in said
    assert reason in said and "S3cret" not in said


def test_pymongos_reason_is_left_out_when_it_repeats_the_password() -> None:
    said = _refusal("mongodb://app:pw/Bad@mongos/")  # pymongo: "Bad database name"
    assert "pymongo's reason is not shown: it repeats part of the password" in said
    assert "Bad" not in said


def test_a_mongodb_srv_url_is_checked_without_a_dns_look_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dns.resolver

    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError("a DNS look-up while reading the settings")

    monkeypatch.setattr(dns.resolver, "resolve", no_dns)
    monkeypatch.setattr("socket.getaddrinfo", no_dns)
    url = "mongodb+srv://app:pw@cluster0.example.net/dialogue?retryWrites=true"
    assert WorkerSettings(dialogue_env="local", mongo_url=url).mongo_url == url


@given(password=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s))
def test_any_password_escaped_as_the_message_says_is_taken(password: str) -> None:
    url = f"mongodb://app:{quote_plus(password)}@mongo-1:27017,mongo-2/dialogue?replicaSet=rs0"
    assert WorkerSettings(dialogue_env="local", mongo_url=url).mongo_url == url


#: Passwords written into the URL unescaped: their ':', '/', '@', '?', '#' and '%' break
#: it in every way pymongo names. Between those, runs of characters no message holds
#: three of in a row (checked below), so any piece found in a message is a leak.
PIECES = "QXZqxz%+!$"
UNESCAPED = st.text(PIECES + ":/@?#", max_size=30).map(lambda tail: f"QXZ{tail}")


@given(
    password=UNESCAPED,
    shape=st.sampled_from(
        [
            "mongodb://app:{}@mongos/",
            "mongodb://app:{}@mongos:27017/dialogue",
            "mongodb+srv://app:{}@cluster.example/?w=1",
            "mongodb://app:{}@h1,h2:99999/",
            "mongodb://app:{}@mongos/?authSource=",
        ]
    ),
)
def test_a_refused_mongo_url_never_shows_its_password(password: str, shape: str) -> None:
    url = shape.format(password)
    try:
        WorkerSettings(dialogue_env="local", mongo_url=url)
    except ValidationError as refused:
        said = invalid_settings("dialogue_worker", refused)
        assert password not in said
        for piece in re.split(r"[:/@?#]", password):
            assert len(piece) < 3 or piece not in said, piece


class _Part:
    """Every part the runtime starts and stops, doing nothing; `fail` raises at open()."""

    started = False
    crashed = False

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.closed = False

    async def open(self) -> None:
        if self.fail is not None:
            raise self.fail

    async def drain(self, grace: float) -> bool:
        return True

    async def stop(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True


def _runtime(settings: WorkerSettings, database: _Part) -> WorkerRuntime:
    part = cast(Any, _Part())
    parts = Components(
        settings=settings,
        instance_id="worker-under-test",
        app=part,
        database=cast(Any, database),
        outbox=part,
        feed=part,
        lists=part,
        persister=part,
        committer=part,
        positions=part,
        health=part,
        metrics=part,
        registration=part,
    )
    return WorkerRuntime(parts)


@pytest.mark.parametrize("under", ["a-file", "a-file/deeper"])
async def test_a_data_dir_that_cannot_be_a_folder_is_a_one_line_start_failure(
    tmp_path: Path, under: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    data_dir = tmp_path / under
    settings = WorkerSettings(dialogue_env="local", data_dir=data_dir, deregister_grace=0)
    database = _Part()
    with caplog.at_level(logging.ERROR, "dialogue_worker"):
        assert await _runtime(settings, database).run() == EXIT_FAILED
    assert f"cannot start: DATA_DIR {data_dir} cannot be faust's folder" in caplog.text
    assert database.closed  # shut down in order all the same


@pytest.mark.parametrize(
    "error",
    [OSError(98, "Address already in use"), ConfigurationError("Insecure TLS options prohibited")],
)
async def test_an_os_or_client_configuration_error_at_start_is_a_one_line_failure(
    tmp_path: Path, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    settings = WorkerSettings(dialogue_env="local", data_dir=tmp_path, deregister_grace=0)
    with caplog.at_level(logging.ERROR, "dialogue_worker"):
        assert await _runtime(settings, _Part(fail=error)).run() == EXIT_FAILED
    assert f"cannot start: {error}" in caplog.text


@pytest.mark.parametrize(
    "error",
    [ConfigurationError("Cannot specify replicaSet with loadBalanced=true"), FileNotFoundError()],
)
async def test_a_client_the_settings_cannot_build_is_a_one_line_failure(
    monkeypatch: pytest.MonkeyPatch, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    def build(settings: WorkerSettings) -> Components:
        raise error

    monkeypatch.setattr(worker_main, "build", build)
    with caplog.at_level(logging.ERROR, "dialogue_worker"):
        assert await worker_main._run(WorkerSettings(dialogue_env="local")) == EXIT_FAILED
    assert "cannot start: " in caplog.text


def test_no_message_holds_three_characters_of_the_pieces_in_a_row() -> None:
    """The leak test's premise, over every refusal of its URL shapes."""
    urls = ["mongodb://app:a/b@h:x/", "mongodb://h/?foo=1", "mongodb://a:b:c@h/"]
    urls += ["mongodb://app:Q%@h/", "mongodb://h1,h2:99999/", "mongodb://h/?authSource="]
    said = "".join(_refusal(url) for url in urls)
    assert not re.search(f"[{re.escape(PIECES)}]{{3,}}", said)


class _Hanging(_Part):
    """A database whose open() waits until cancelled (MongoDB not answering yet)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()
        self.cancelled = False

    async def open(self) -> None:
        self.waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_a_stop_asked_while_a_dependency_is_awaited_ends_the_wait_and_the_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = WorkerSettings(dialogue_env="local", data_dir=tmp_path, deregister_grace=0)
    database = _Hanging()
    runtime = _runtime(settings, database)
    with caplog.at_level(logging.INFO, "dialogue_worker"):
        running = asyncio.ensure_future(runtime.run())
        await database.waiting.wait()
        runtime.request_stop()  # what SIGTERM does
        # A bound so that a worker which keeps waiting fails here instead of hanging the suite.
        assert await asyncio.wait_for(running, timeout=30) == EXIT_OK
    assert database.cancelled and database.closed
    assert "asked to stop while starting" in caplog.text
    assert "ready" not in caplog.text
