"""What a worker checks of FerretDB at start, against a FerretDB of its own (its own
database in the shared PostgreSQL cluster): an ordered insert must stop at a duplicate,
which id entries are claimed by (dialogue_worker/adapters/mongo_log.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dialogue_worker.adapters.mongo import ORDERED_CHUNK, MongoDatabase
from dialogue_worker.errors import StoreMisconfigured
from infra.local import LocalSettings
from infra.processes.private import free_port, private_stack


async def test_a_ferretdb_whose_ordered_inserts_go_past_a_duplicate_is_refused_at_start(
    infra: LocalSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FerretDB inserts in batches (FERRETDB_TEST_BATCH_SIZE, 100 by default) and, ordered,
    goes on with the next batch after a duplicate: with batches smaller than a claim's
    commands, a claim would leave entries above a copy (seats nobody fills)."""
    monkeypatch.setenv("FERRETDB_TEST_BATCH_SIZE", str(ORDERED_CHUNK // 4))
    ports = {"LOCAL_MONGO_PORT": str(free_port())}
    with private_stack(tmp_path, infra.cache_dir, ["ferretdb"], ports) as private:
        database = MongoDatabase(private.settings.mongo_url, f"w_{uuid.uuid4().hex[:8]}", 30.0)
        try:
            with pytest.raises(StoreMisconfigured, match="went on past a duplicate"):
                await database.open()
        finally:
            await database.close()


async def test_the_local_ferretdb_passes_every_start_check(infra: LocalSettings) -> None:
    database = MongoDatabase(infra.mongo_url, f"w_{uuid.uuid4().hex[:8]}", 30.0)
    try:
        await database.open()
    finally:
        await database.client.drop_database(database.db.name)
        await database.close()
