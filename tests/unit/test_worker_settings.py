"""The worker's settings: local mode's loopback rule and the log level."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dialogue_worker.adapters.mongo import MongoDatabase
from dialogue_worker.bootstrap import faust_app
from dialogue_worker.settings import WorkerSettings


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.7"])
def test_a_worker_on_the_public_local_token_binds_to_loopback_only(host: str) -> None:
    with pytest.raises(ValidationError, match="WORKER_HOST"):
        WorkerSettings(dialogue_env="local", worker_host=host)
    assert WorkerSettings(dialogue_env="local", worker_host="127.0.0.1").worker_host
    assert WorkerSettings(dialogue_env="local", worker_host=host, entrypoint_token="t" * 40)


@pytest.mark.parametrize("level", ["info", "Warning", "DEBUG"])
def test_a_worker_log_level_is_taken_in_any_case(level: str) -> None:
    assert WorkerSettings(dialogue_env="local", log_level=level).log_level == level.upper()


def test_a_retry_ceiling_below_the_first_pause_is_refused_at_start() -> None:
    """0.05 passed validation, then every write step failed building its backoff."""
    with pytest.raises(ValueError, match="retry_backoff_max"):
        WorkerSettings(dialogue_env="local", retry_backoff_max=0.05)
    assert WorkerSettings(dialogue_env="local", retry_backoff_max=0.1).retry_backoff_max == 0.1


@given(st.floats(min_value=1e-3, max_value=1e12, allow_nan=False))
def test_a_mongo_timeout_is_one_the_client_takes_or_refused_when_read(seconds: float) -> None:
    """A timeout past pymongo's bound passed the settings and broke start with a traceback."""
    try:
        settings = WorkerSettings(dialogue_env="local", mongo_timeout=seconds)
    except ValidationError as exc:
        assert "mongo_timeout" in str(exc)
        return
    MongoDatabase(settings.mongo_url, settings.mongo_db, settings.mongo_timeout)


async def test_faust_reads_two_batches_ahead_not_its_default_4096_records(
    tmp_path: Path,
) -> None:
    """faust's buffer counts records, not bytes: at its default of 4,096 a partition of
    1 MiB junk records held about 4 GiB (docs/worker.md, BATCH_SIZE)."""
    settings = WorkerSettings(dialogue_env="local", data_dir=tmp_path, batch_size=7)
    app = faust_app(settings)  # made inside the running loop, as the worker makes it
    assert app.conf.stream_buffer_maxsize == 14
