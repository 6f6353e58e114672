"""The worker's settings: local mode's loopback rule and the log level."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.events import MembersAdded
from contracts.requests import MAX_USERS
from dialogue_worker.adapters.mongo import MongoDatabase
from dialogue_worker.adapters.outbox import MAX_RECORD
from dialogue_worker.bootstrap import faust_app
from dialogue_worker.settings import WorkerSettings
from platform_common.local import LOCAL_SECRETS
from platform_common.settings_base import NUMBER_MAX


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.7"])
def test_a_worker_on_the_public_local_token_binds_to_loopback_only(host: str) -> None:
    with pytest.raises(ValidationError, match="WORKER_HOST"):
        WorkerSettings(dialogue_env="local", worker_host=host)
    assert WorkerSettings(dialogue_env="local", worker_host="127.0.0.1").worker_host
    assert WorkerSettings(
        dialogue_env="local",
        worker_host=host,
        entrypoint_token="gs4WkYD2nO55sLNRQg3kCdkJp0aZZh6_z1qT2PHd",
    )


@pytest.mark.parametrize("token", ["x", "t" * 40])
def test_a_worker_on_a_weak_token_binds_to_loopback_only(token: str) -> None:
    """Local mode took any token that was not a development default beyond loopback.
    (A token of spaces is refused anywhere: test_header_tokens.py.)"""
    with pytest.raises(ValidationError, match=r"WORKER_HOST.*weak secret"):
        WorkerSettings(dialogue_env="local", worker_host="0.0.0.0", entrypoint_token=token)
    assert WorkerSettings(dialogue_env="local", worker_host="127.0.0.1", entrypoint_token=token)


def test_an_empty_consul_token_is_no_token() -> None:
    assert WorkerSettings(dialogue_env="local", consul_token="").consul_token is None


@pytest.mark.parametrize("token", sorted(LOCAL_SECRETS))
def test_a_worker_on_any_development_secret_binds_to_loopback_only(token: str) -> None:
    """Only the worker's own development token was caught: another published one (the
    gateway's development JWT secret, say) let it serve every interface in local mode."""
    with pytest.raises(ValidationError, match="WORKER_HOST"):
        WorkerSettings(dialogue_env="local", worker_host="0.0.0.0", entrypoint_token=token)


@pytest.mark.parametrize("level", ["info", "Warning", "DEBUG"])
def test_a_worker_log_level_is_taken_in_any_case(level: str) -> None:
    assert WorkerSettings(dialogue_env="local", log_level=level).log_level == level.upper()


def test_a_retry_ceiling_below_the_first_pause_is_refused_at_start() -> None:
    """0.05 passed validation, then every write step failed building its backoff."""
    with pytest.raises(ValueError, match="retry_backoff_max"):
        WorkerSettings(dialogue_env="local", retry_backoff_max=0.05)
    assert WorkerSettings(dialogue_env="local", retry_backoff_max=0.1).retry_backoff_max == 0.1


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_a_member_limit_is_taken_between_one_request_and_ten_thousand(most: int) -> None:
    if MAX_USERS <= most <= 10_000:
        assert WorkerSettings(dialogue_env="local", max_chat_members=most).max_chat_members == most
    else:
        with pytest.raises(ValidationError, match="max_chat_members"):
            WorkerSettings(dialogue_env="local", max_chat_members=most)


def test_the_members_event_of_the_largest_chat_fits_in_a_record() -> None:
    """chat.members_added lists every member: at the highest limit, with the widest ids,
    it must still be a record the outbox can send, or no member could be added."""
    most = WorkerSettings.model_fields["max_chat_members"].metadata[-1].le
    wide = 2**63 - 1
    event = MembersAdded(
        cid="f" * 24,
        users=list(range(wide - MAX_USERS + 1, wide + 1)),
        members=list(range(wide - most + 1, wide + 1)),
    )
    assert len(event.model_dump_json()) < MAX_RECORD // 2


@given(st.floats(min_value=1e-3, max_value=1e12, allow_nan=False))
def test_a_mongo_timeout_is_one_the_client_takes_or_refused_when_read(seconds: float) -> None:
    """A timeout past pymongo's bound passed the settings and broke start with a traceback."""
    try:
        settings = WorkerSettings(dialogue_env="local", mongo_timeout=seconds)
    except ValidationError as exc:
        assert "mongo_timeout" in str(exc)
        return
    MongoDatabase(settings.mongo_url, settings.mongo_db, settings.mongo_timeout)


@given(st.text(max_size=70) | st.sampled_from(["", "a.b", "x$y", "a b", "é" * 32, "d" * 63]))
def test_a_database_name_is_one_the_client_takes_or_refused_when_read(name: str) -> None:
    """MONGO_DB=a.b (or empty) passed the settings and broke start with pymongo's
    InvalidName, a traceback (found in review)."""
    try:
        settings = WorkerSettings(dialogue_env="local", mongo_db=name)
    except ValidationError as exc:
        assert "MONGO_DB" in str(exc)
        return
    assert 0 < len(name.encode()) <= 63
    MongoDatabase(settings.mongo_url, settings.mongo_db, settings.mongo_timeout)


def test_an_empty_app_id_is_refused_when_read() -> None:
    """faust refused it at start with ImproperlyConfigured, a traceback."""
    with pytest.raises(ValidationError, match="worker_app_id"):
        WorkerSettings(dialogue_env="local", worker_app_id="")


@pytest.mark.parametrize(("replication", "min_insync"), [(1, 2), (2, 3), (3, 4)])
def test_more_in_sync_replicas_than_replicas_is_refused_when_read(
    replication: int, min_insync: int
) -> None:
    """Kafka creates such a topic, and then refuses every acks=all write to it: the
    worker's outbox failed for ever (found in review)."""
    with pytest.raises(ValidationError, match=r"TOPIC_MIN_INSYNC=\d+ is more than"):
        WorkerSettings(
            dialogue_env="local", topic_replication=replication, topic_min_insync=min_insync
        )
    taken = WorkerSettings(
        dialogue_env="local", topic_replication=replication, topic_min_insync=replication
    )
    assert (taken.topic_replication, taken.topic_min_insync) == (replication, replication)


async def test_faust_reads_two_batches_ahead_not_its_default_4096_records(
    tmp_path: Path,
) -> None:
    """faust's buffer counts records, not bytes: at its default of 4,096 a partition of
    1 MiB junk records held about 4 GiB (docs/worker.md, BATCH_SIZE)."""
    settings = WorkerSettings(dialogue_env="local", data_dir=tmp_path, batch_size=7)
    app = faust_app(settings)  # made inside the running loop, as the worker makes it
    assert app.conf.stream_buffer_maxsize == 14


async def test_faust_takes_no_setting_of_its_own_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust reads its own variables and lets them override the app's arguments: an
    exported WEB_BIND=0.0.0.0 bound a local worker beyond loopback, WEB_PORT made every
    worker of `make dev` take one port, a Celery user's BROKER_URL moved the consumer."""
    for name, value in {
        "WEB_BIND": "0.0.0.0",
        "WEB_PORT": "8080",
        "WEB_HOST": "elsewhere",
        "BROKER_URL": "kafka://elsewhere:9092",
        "STREAM_BUFFER_MAXSIZE": "4096",
        "CONSUMER_AUTO_OFFSET_RESET": "latest",
        "APP_DATADIR": "/nowhere",
    }.items():
        monkeypatch.setenv(name, value)
    settings = WorkerSettings(dialogue_env="local", data_dir=tmp_path, batch_size=7)
    conf = faust_app(settings).conf
    assert (conf.web_bind, conf.web_port, conf.web_host) == (
        settings.worker_host,
        settings.worker_port,
        settings.advertise_host,
    )
    assert [str(url) for url in conf.broker] == [
        f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")
    ]
    assert conf.stream_buffer_maxsize == 14
    assert conf.consumer_auto_offset_reset == "earliest"
    assert str(conf.datadir).startswith(str(tmp_path))


BOUNDS = {
    "commit_interval": (0.1, 60.0),
    "heartbeat_ttl": (2.0, 86_400.0),
    "stall_after": (3.0, NUMBER_MAX),  # every number setting fits 32 bits
}


@given(
    st.sampled_from(sorted(BOUNDS)),
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False) | st.sampled_from([0.0, 1e-9]),
)
def test_a_timer_setting_is_taken_within_its_bounds_or_refused_when_read(
    name: str, seconds: float
) -> None:
    """Timers at 0.01 s turned into busy loops flooding Consul or the group coordinator,
    and a STALL_AFTER under the watch timer's two ticks rewound idle transactional tails."""
    low, high = BOUNDS[name]
    if low <= seconds <= high:
        assert getattr(WorkerSettings(dialogue_env="local", **{name: seconds}), name) == seconds
    else:
        with pytest.raises(ValidationError, match=name):
            WorkerSettings(dialogue_env="local", **{name: seconds})
