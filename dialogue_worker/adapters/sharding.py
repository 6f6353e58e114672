"""Sharding of the two collections when connected to a mongos; idempotent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pymongo.errors import OperationFailure

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


async def ensure_sharding(command: Command, database: str, hello: Mapping[str, Any]) -> bool:
    """Shard messages and chats (see SHARD_KEYS) on a mongos; False on a plain server."""
    if not is_mongos(hello):
        log.info("not connected to a mongos: sharding of %s skipped", database)
        return False
    await _tolerate_done(command("enableSharding", database))
    for collection, key in SHARD_KEYS.items():
        await _tolerate_done(command("shardCollection", f"{database}.{collection}", key=key))
    log.info("sharding of %s ensured: %s", database, SHARD_KEYS)
    return True


async def _tolerate_done(pending: Awaitable[Mapping[str, Any]]) -> None:
    try:
        await pending
    except OperationFailure as exc:  # already enabled / already sharded with this key
        if exc.code != ALREADY_INITIALIZED and "already" not in str(exc):
            raise
