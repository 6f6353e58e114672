"""MongoDB: the client, the collections and their indexes, and how failures are told apart.

Collections (database MONGO_DB):
- `chats`     {_id: ObjectId, users: [int], createdAt, openedAt, lastSeq, lastAt,
               lastMessage, lastPart, lastOffset, v}                     index: users
- `history`   {_id: "<cid>:<seq>", page: "<cid>:25:<page>", cid, seq, id, uid, text,
               createdAt, at, p, o}: one message per seq                 index: page
- `message_ids` {_id: ObjectId(message id), cid, seq, uid, h, p, o, w, n, v}: where an id is
- `reads`     {_id: "<cid>:<uid>", cid, u, seq, v}: read markers         index: u
- `migrations` {_id: name, at}: one-off data changes already made (CHATS_V2)

Every read the platform makes is an equality on `_id` or on an indexed field, which
FerretDB pushes down to PostgreSQL, where infra/local gives each index a GIN twin its
pushdown can use; on FerretDB the worker checks that with `explain` at start and
refuses to run without it. Mutable documents carry `v`, bumped by every update, so
PostgreSQL's version guard (infra/local) turns FerretDB's unlocked read-modify-write
into a retryable error instead of a lost update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

import bson
import pymongo
from bson import ObjectId
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    CollectionInvalid,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
)

from contracts.records import MessageRecord
from dialogue_worker.adapters.sharding import ensure_sharding
from dialogue_worker.domain.history import legacy_page_key, message_key, page_key, page_of
from dialogue_worker.errors import (
    StorageUnavailable,
    StoreMisconfigured,
    StoreRefused,
)
from dialogue_worker.services.ports import StoredMessage
from platform_common.retry import Backoff, retry

log = logging.getLogger(__name__)
Doc = dict[str, Any]
DUPLICATE_KEY = 11000
#: Documents per ordered `insert` command: FerretDB 1.24 inserts in batches of 100 and,
#: ordered, goes on with the next batch after one met a duplicate (measured: 125
#: documents with the first already there wrote 24 of the others). Checked at start.
ORDERED_CHUNK = 100
NAMESPACE_EXISTS = 48
#: Server error codes that mean "not now" rather than "not this": shutting down, not
#: (or no longer) primary, time limits, write conflicts, network trouble behind a mongos.
TRANSIENT_CODES = frozenset(
    # 133 FailedToSatisfyReadPreference and 202 NetworkInterfaceExceededTimeLimit: what a
    # mongos answers while a shard has no primary (compose's two-member shards).
    {6, 7, 50, 89, 91, 112, 133, 189, 202, 262, 9001, 10107, 11600, 11602, 13435, 13436}
)
#: PostgreSQL's serialization failure, raised by the version guard under FerretDB.
STALE_WRITE = "SQLSTATE 40001"
#: FerretDB answers InternalError for whatever its PostgreSQL connection met.
INTERNAL_ERROR = 1
#: What such an answer says when trying again can help: the connection failed or timed
#: out (Go's and pgx's network errors), or PostgreSQL refused with a SQLSTATE of class 08
#: (connection), 40 (rollback: serialization, deadlock), 53 (resources: connections,
#: memory, disk), 57 (operator: shutdown, a terminated backend, a cancelled statement)
#: or 58 (I/O). Seen here: backends terminated (57P01), and a read that timed out while
#: PostgreSQL wrote a long checkpoint. Class 54 (an index row too large) stays a refusal.
BACKEND_PASSING = re.compile(
    r"\(SQLSTATE (?:08|40|53|57|58)[0-9A-Z]{3}\)|i/o timeout|connection refused"
    r"|connection reset|broken pipe|conn closed|unexpected EOF|failed to connect"
    r"|context deadline exceeded"
)
#: Seconds close() waits for the server to end the client's sessions (pymongo would wait
#: for server selection, 30 s, when the server is down).
CLOSE_WITHIN = 2.0
COLLECTIONS = frozenset({"chats", "history", "message_ids", "reads"})
#: Field each collection is read by, besides `_id`.
INDEXES = {"chats": "users", "history": "page", "reads": "u"}
#: Query shapes checked with explain on FerretDB at start: (collection, filter).
READS: list[tuple[str, Doc]] = [
    ("chats", {"_id": ObjectId("0" * 24)}),
    ("chats", {"users": 1}),
    ("history", {"_id": "x"}),
    ("history", {"page": "x"}),
    ("message_ids", {"_id": ObjectId("0" * 24)}),
    ("reads", {"_id": "x"}),
    ("reads", {"u": 1}),
]
_INDEX_SCANS = ("Index Scan", "Bitmap Index Scan", "Index Only Scan")


#: Chats stored before message store v2 ({_id, users, createdAt}) lack the fields a
#: chat's advance filters on (`lastSeq`): `$lt` never matches a missing field, so such a
#: chat would store messages that no read ever shows. open() gives them once.
CHATS_V2 = "chats-v2-counters"
#: Seconds that one-off update is tried again when another writer's stale-write refusal
#: interrupts it.
MIGRATION_WITHIN = 3.0


def is_transient(exc: PyMongoError) -> bool:
    """Whether retrying the same operation later can succeed."""
    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WriteConcernError):
        return True
    if exc.timeout or exc.has_error_label("RetryableWriteError"):
        return True
    if exc.has_error_label("TransientTransactionError"):
        return True
    # Only a server's answer has a code; the stale write is told by its words alone.
    return passing(exc.code if isinstance(exc, OperationFailure) else None, str(exc))


def passing(code: object, message: str) -> bool:
    """Whether a server error with this code and message is "not now" (see is_transient)."""
    if code in TRANSIENT_CODES or STALE_WRITE in message:
        return True
    return code == INTERNAL_ERROR and BACKEND_PASSING.search(message) is not None


def failure(exc: PyMongoError) -> StorageUnavailable | StoreRefused:
    return StorageUnavailable(str(exc)) if is_transient(exc) else StoreRefused(str(exc))


def history_doc(message: StoredMessage) -> Doc:
    return {
        "_id": message_key(message.cid, message.seq),
        "page": page_key(message.cid, page_of(message.seq)),
        "cid": ObjectId(message.cid),
        "seq": message.seq,
        "id": ObjectId(message.id),
        "uid": message.uid,
        "text": message.text,
        "createdAt": message.created_at,
        "at": message.at,
        "p": message.partition,
        "o": message.offset,
    }


def unstorable(message: MessageRecord) -> str | None:
    """Why the message's document cannot be encoded as BSON, or None when it can."""
    probe = StoredMessage(
        message.cid, 1, message.id, message.uid, message.text, message.createdAt, 0.0, 0, 0
    )
    try:
        bson.encode(history_doc(probe))
    except (bson.errors.BSONError, OverflowError, ValueError) as exc:
        return f"cannot be encoded for MongoDB: {type(exc).__name__}: {exc}"
    return None


class MongoDatabase:
    """Owns the client: open() connects, prepares and checks the schema; close() ends it."""

    def __init__(self, url: str, database: str, timeout: float) -> None:
        self.client: AsyncMongoClient[Doc] = AsyncMongoClient(
            url, timeoutMS=int(timeout * 1000), connect=False, appname="dialogue-worker"
        )
        self.db: AsyncDatabase[Doc] = self.client[database]
        self.chats: AsyncCollection[Doc] = self.db["chats"]
        self.history: AsyncCollection[Doc] = self.db["history"]
        self.ids: AsyncCollection[Doc] = self.db["message_ids"]
        self.reads: AsyncCollection[Doc] = self.db["reads"]
        #: Behind a mongos, collections sharded (SHARD_KEYS): set by open().
        self.sharded = False

    def message(self, cid: str, seq: int) -> Doc:
        """The filter of the message at (cid, seq). Behind a mongos it names `page`, the
        shard key of `history`, as well: a filter on `_id` alone goes to every shard.
        Either page key the message may carry, as history stored with pages of 100 is
        found by this look-up (at most two shards asked)."""
        key: Doc = {"_id": message_key(cid, seq)}
        if not self.sharded:
            return key
        return key | {"page": {"$in": [page_key(cid, page_of(seq)), legacy_page_key(cid, seq)]}}

    async def open(self) -> None:
        """Check the server answers, create indexes, shard behind a mongos, and on FerretDB
        check that every read uses an index and that stale updates are refused."""
        try:
            await self.ping()
            existing = set(await self.db.list_collection_names())
            for name in COLLECTIONS - existing:
                try:
                    await self.db.create_collection(name)
                except CollectionInvalid:  # another worker made it meanwhile
                    pass
                except OperationFailure as exc:
                    if exc.code != NAMESPACE_EXISTS:  # else: made by another worker meanwhile
                        raise
            for name, field in INDEXES.items():
                await self.db[name].create_index([(field, ASCENDING)])
            hello = await self.client.admin.command("hello")
            self.sharded = await ensure_sharding(
                self.client.admin.command, self.db.name, hello, self._shard_key
            )
            await self._migrate_chats()
            info = await self.client.admin.command("buildInfo")
            if "ferretdbVersion" in info:
                await self._check_ferretdb(str(info["ferretdbVersion"]))
        except PyMongoError as exc:
            raise StorageUnavailable(f"cannot prepare MongoDB: {exc}") from exc

    async def _shard_key(self, namespace: str) -> Mapping[str, Any] | None:
        """The key `namespace` is sharded on, as the config servers hold it."""
        found = await self.client.config.collections.find_one({"_id": namespace})
        return None if found is None else found.get("key")

    async def _migrate_chats(self) -> None:
        """Give chats stored before v2 an empty count, once per database (CHATS_V2).

        Idempotent, so two workers starting together may both run it. `v` goes up by one
        like every other update of a chat (FerretDB's version guard asks that).
        """
        done = self.db["migrations"]
        if await done.find_one({"_id": CHATS_V2}) is not None:
            return
        # Another worker migrating at once (or writing a chat) may get there first: on
        # FerretDB the version guard refuses this stale write. The filter skips what is
        # done, so trying again finishes the rest.
        changed = await retry(
            lambda: self.chats.update_many(
                {"lastSeq": {"$exists": False}},
                {"$set": {"lastSeq": 0, "lastAt": None, "lastMessage": None}, "$inc": {"v": 1}},
            ),
            retry_on=lambda exc: isinstance(exc, OperationFailure) and is_transient(exc),
            backoff=Backoff(0.05, 0.5),
            deadline=time.monotonic() + MIGRATION_WITHIN,
        )
        if changed.modified_count:
            log.info(
                "gave %d chats from before message store v2 their counts", changed.modified_count
            )
        try:
            await done.insert_one({"_id": CHATS_V2, "at": time.time()})
        except pymongo.errors.DuplicateKeyError:
            pass  # another worker starting at the same moment made the marker first

    async def close(self) -> None:
        """Close the client; with the server gone, do not wait for it to end our sessions."""
        try:
            async with asyncio.timeout(CLOSE_WITHIN):
                await self.client.close()
        except TimeoutError:
            log.warning("MongoDB did not answer at close: its sessions will expire on their own")

    async def ping(self, within: float | None = None) -> None:
        """Ask the server for a pong, in `within` seconds at most: bounded by pymongo's
        own timeout, since the health check no longer cancels it (WorkerHealth)."""
        try:
            if within is None:
                await self.client.admin.command("ping")
            else:
                with pymongo.timeout(within):
                    await self.client.admin.command("ping")
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def writable(self) -> None:
        try:
            await self.db["write_checks"].update_one(
                {"_id": "write-check"}, {"$set": {"at": time.time()}}, upsert=True
            )
        except PyMongoError as exc:
            raise StorageUnavailable(f"write check failed: {exc}") from exc

    async def _check_ordered_inserts(self, version: str) -> None:
        """An ordered insert of ORDERED_CHUNK documents stops at one already there: id
        entries are claimed so (adapters.mongo_log.claim). FerretDB inserts in batches
        (100 by default, FERRETDB_TEST_BATCH_SIZE) and goes on with the next batch after
        a duplicate, which would leave entries above a copy: seats nobody fills."""
        checks = self.db["write_checks"]
        ids = [f"ordered-check-{uuid.uuid4().hex}-{n}" for n in range(ORDERED_CHUNK)]
        await checks.insert_one({"_id": ids[0]})
        try:
            with contextlib.suppress(pymongo.errors.BulkWriteError):
                await checks.insert_many([{"_id": i} for i in ids], ordered=True)
            written = await checks.count_documents({"_id": {"$in": ids}})
        finally:
            await checks.delete_many({"_id": {"$in": ids}})
        if written != 1:
            raise StoreMisconfigured(
                f"FerretDB {version}: an ordered insert of {ORDERED_CHUNK} documents went on "
                f"past a duplicate ({written - 1} written after it): run FerretDB without "
                "FERRETDB_TEST_BATCH_SIZE (or with it at 100 or more)"
            )

    async def _check_ferretdb(self, version: str) -> None:
        for name, query in READS:
            plan = await self.db.command("explain", {"find": name, "filter": query})
            if not plan.get("filterPushdown") or not _uses_index(plan.get("queryPlanner", {})):
                raise StoreMisconfigured(
                    f"FerretDB {version}: a read of {name} by {sorted(query)} does not use an "
                    "index in PostgreSQL (run `python -m infra.local up`, which installs the "
                    "GIN indexes FerretDB's pushdown needs; see docs/decisions.md)"
                )
        await self._check_ordered_inserts(version)
        guard = self.db["write_checks"]
        probe = {
            "_id": f"guard-check-{uuid.uuid4().hex}",
            "v": 1,
        }  # its own: workers start together
        await guard.insert_one(probe)
        try:
            await guard.update_one({"_id": probe["_id"]}, {"$set": {"v": 5}})
        except OperationFailure as exc:
            if STALE_WRITE in str(exc):
                log.info("FerretDB %s: reads use indexes, stale updates are refused", version)
                return
            raise
        finally:
            await guard.delete_one({"_id": probe["_id"]})
        raise StoreMisconfigured(
            f"FerretDB {version}: PostgreSQL does not refuse stale updates (the version "
            "guard of infra/local is missing), so concurrent updates could be lost"
        )


def _uses_index(plan: Any) -> bool:
    """Whether a PostgreSQL plan tree (as FerretDB's explain returns it) scans an index."""
    if isinstance(plan, list):
        return any(_uses_index(part) for part in plan)
    if not isinstance(plan, Mapping):
        return False
    node = plan.get("Plan", plan)
    if isinstance(node, Mapping) and node.get("Node Type") in _INDEX_SCANS:
        return True
    children = node.get("Plans", []) if isinstance(node, Mapping) else node
    return any(_uses_index(child) for child in children)
