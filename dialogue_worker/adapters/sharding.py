"""Sharding of the worker's collections (SHARD_KEYS) when connected to a mongos; idempotent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pymongo.errors import OperationFailure

from dialogue_worker.errors import StoreMisconfigured

log = logging.getLogger(__name__)

Command = Callable[..., Awaitable[Mapping[str, Any]]]
#: A chat's history is sharded by page: a page (PAGE_SIZE consecutive seqs) lives on one
#: shard, so a read of 50 touches two or three; the pages of a hot chat spread over all
#: shards. A message's `_id` determines its page, so `_id` stays unique across shards.
#: Ids, chats and read markers spread by their hashed key (read markers by user: a user's
#: chat list reads them on one shard).
SHARD_KEYS: dict[str, dict[str, Any]] = {
    "history": {"page": "hashed"},
    "message_ids": {"_id": "hashed"},
    "chats": {"_id": "hashed"},
    "reads": {"u": "hashed"},
}
ALREADY_INITIALIZED = 23


def is_mongos(hello: Mapping[str, Any]) -> bool:
    return hello.get("msg") == "isdbgrid"


#: The shard key of a namespace as the config servers hold it (`config.collections`),
#: None when it is not sharded.
KeyOf = Callable[[str], Awaitable[Mapping[str, Any] | None]]


async def ensure_sharding(
    command: Command, database: str, hello: Mapping[str, Any], key_of: KeyOf
) -> bool:
    """Shard the collections of SHARD_KEYS on a mongos; False on a plain server.

    A collection sharded already must be so on its key in SHARD_KEYS: MongoDB answers
    "already sharded" also when the key differs, and a history sharded on another key
    would spread a page over shards (or keep a hot chat on one) with nothing said."""
    if not is_mongos(hello):
        log.info("not connected to a mongos: sharding of %s skipped", database)
        return False
    try:
        await command("enableSharding", database)
    except OperationFailure as exc:
        if not _already(exc):
            raise
    for collection, key in SHARD_KEYS.items():
        namespace = f"{database}.{collection}"
        try:
            await command("shardCollection", namespace, key=key)
        except OperationFailure as exc:
            if not _already(exc):
                raise
            found = await key_of(namespace)
            if found is None or not same_key(found, key):
                raise StoreMisconfigured(
                    f"{namespace} is sharded on {dict(found or {})}, not {key} "
                    "(dialogue_worker/adapters/sharding.py): a collection cannot be sharded "
                    "again on another key; reshard it (reshardCollection) or move the data"
                ) from exc
    log.info("sharding of %s ensured: %s", database, SHARD_KEYS)
    return True


def same_key(found: Mapping[str, Any], key: Mapping[str, Any]) -> bool:
    """Whether a shard key read back is `key`: the same fields in the same order (a
    compound key's order is part of it), each with the same kind, numbers compared by
    value (1, 1.0 and Int64(1) are one key)."""

    def kind(value: Any) -> Any:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return ("number", float(value)) if is_number else (type(value).__name__, value)

    return [(f, kind(v)) for f, v in found.items()] == [(f, kind(v)) for f, v in key.items()]


def _already(exc: OperationFailure) -> bool:
    """Whether a refusal says the database or collection is sharded already."""
    return exc.code == ALREADY_INITIALIZED or "already" in str(exc)
