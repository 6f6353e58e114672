"""FerretDB on the local PostgreSQL, through the MongoDB protocol: every index a client
makes gets a GIN twin that serves FerretDB's pushed-down equality, the version guard turns
lost updates into retryable errors, and private FerretDB copies get a database of their own.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, OperationFailure

from infra.local import LocalSettings, Stack
from infra.local.postgres import ROLE, SUPERUSER, gin_twin_name
from infra.local.service import ServiceError
from infra.processes.private import free_port, private_stack

Doc = dict[str, Any]
INDEX_SCANS = {"Bitmap Index Scan", "Index Scan", "Index Only Scan"}
#: Enough rows that the planner prefers an index to reading the table.
ROWS = 2000


@pytest.fixture
def client(infra: LocalSettings) -> Iterator[MongoClient[Doc]]:
    mongo: MongoClient[Doc] = MongoClient(infra.mongo_url)
    yield mongo
    mongo.close()


@pytest.fixture
def db_name(client: MongoClient[Doc], unique: Callable[[str], str]) -> Iterator[str]:
    name = unique("twins").replace("-", "_")
    yield name
    client.drop_database(name)


def _table(stack: Stack, db: str, collection: str, database: str | None = None) -> str:
    """The PostgreSQL table FerretDB keeps a collection in (from its metadata table)."""
    return stack.postgres.query(
        database or stack.settings.ferretdb_database,
        f"SELECT _jsonb->>'table' FROM \"{db}\"._ferretdb_database_metadata"
        f" WHERE _jsonb->>'_id' = '{collection}'",
    ).strip()


def _indexes(stack: Stack, db: str, table: str, database: str | None = None) -> dict[str, str]:
    """Index name -> definition, for one table."""
    rows = stack.postgres.query(
        database or stack.settings.ferretdb_database,
        "SELECT indexname, indexdef FROM pg_indexes"
        f" WHERE schemaname = '{db}' AND tablename = '{table}'",
    )
    return dict(line.split("|", 1) for line in rows.splitlines())


def _btree_on(indexes: dict[str, str], field: str) -> str:
    """The name of FerretDB's btree index whose first key is `field`."""
    (name,) = (
        n for n, d in indexes.items() if "USING btree (((_jsonb -> '" + field + "'::text))" in d
    )
    return name


def _gin_fields(indexes: dict[str, str]) -> list[str]:
    """The fields that have a GIN jsonb_path_ops index, once per index."""
    fields = []
    for definition in indexes.values():
        if "USING gin" in definition and "jsonb_path_ops" in definition:
            fields.append(definition.split("(_jsonb -> '", 1)[1].split("'::text", 1)[0])
    return sorted(fields)


def _pending_pages(stack: Stack, db: str, index: str) -> int:
    """Pages of the GIN index's pending list, which this merges (gin_clean_pending_list)."""
    return int(
        stack.postgres.query(
            stack.settings.ferretdb_database,
            f'SELECT gin_clean_pending_list(\'"{db}"."{index}"\'::regclass)',
        )
    )


def _options(stack: Stack, db: str, index: str) -> str:
    """The storage parameters of an index, as psql prints them ('' for none)."""
    return stack.postgres.query(
        stack.settings.ferretdb_database,
        f'SELECT reloptions FROM pg_class WHERE oid = \'"{db}"."{index}"\'::regclass',
    ).strip()


def _scanned_indexes(collection: Collection[Doc], query: Doc) -> list[str]:
    """The indexes PostgreSQL's plan for FerretDB's pushed-down query reads."""
    explained = collection.database.command("explain", {"find": collection.name, "filter": query})
    assert explained["filterPushdown"] is True, explained
    names: list[str] = []
    nodes = [explained["queryPlanner"]["Plan"]]
    while nodes:
        node = nodes.pop()
        if node.get("Node Type") in INDEX_SCANS:
            names.append(node["Index Name"])
        nodes.extend(node.get("Plans", []))
    return names


def _fill(collection: Collection[Doc]) -> None:
    collection.insert_many(
        [{"page": f"p{i % 100}", "cid": f"c{i % 40}", "seq": i, "n": i} for i in range(ROWS)]
    )


def test_an_index_a_client_makes_gets_a_gin_twin_that_serves_its_equality(
    stack: Stack, client: MongoClient[Doc], db_name: str
) -> None:
    pages = client[db_name]["pages"]  # a new database and collection
    _fill(pages)
    pages.create_index([("page", ASCENDING)])

    table = _table(stack, db_name, "pages")
    indexes = _indexes(stack, db_name, table)
    page_twin = gin_twin_name(_btree_on(indexes, "page"), "page")
    id_twin = gin_twin_name(_btree_on(indexes, "_id"), "_id")
    assert page_twin in indexes and id_twin in indexes, indexes
    assert _gin_fields(indexes) == ["_id", "page"]

    assert page_twin in _scanned_indexes(pages, {"page": "p7"})
    assert len(list(pages.find({"page": "p7"}))) == ROWS // 100
    some = pages.find_one({"seq": 1234})
    assert some is not None and isinstance(some["_id"], ObjectId)
    assert id_twin in _scanned_indexes(pages, {"_id": some["_id"]})
    assert pages.find_one({"_id": some["_id"]}) == some

    # Twins write through: what is inserted is in place, with no pending list to read.
    pages.insert_many([{"page": f"p{i % 100}", "n": i} for i in range(ROWS)])
    for twin in (page_twin, id_twin):
        assert _options(stack, db_name, twin) == "{fastupdate=off}"
        assert _pending_pages(stack, db_name, twin) == 0


def test_a_twin_with_a_pending_list_is_made_to_write_through_when_installed_again(
    stack: Stack, client: MongoClient[Doc], db_name: str
) -> None:
    """As twins made before 2026-12-06 were: GIN's default pending list, which every
    look-up read whole until (auto)vacuum merged it."""
    pages = client[db_name]["pages"]
    pages.insert_one({"_id": "first"})
    table = _table(stack, db_name, "pages")
    twin = gin_twin_name(_btree_on(_indexes(stack, db_name, table), "_id"), "_id")
    database = stack.settings.ferretdb_database
    stack.postgres.query(
        database,
        f'DROP INDEX "{db_name}"."{twin}";'
        f' CREATE INDEX "{twin}" ON "{db_name}"."{table}"'
        " USING gin ((_jsonb -> '_id') jsonb_path_ops)",
    )
    _fill(pages)  # into the pending list
    assert _options(stack, db_name, twin) == ""

    assert stack.postgres.install_triggers(database) == [
        "backfill: 0 GIN twin(s), 0 unused btree(s) emptied, 0 version guard(s) added,"
        " 1 twin(s) made to write through"
    ]
    assert _options(stack, db_name, twin) == "{fastupdate=off}"
    assert _pending_pages(stack, db_name, twin) == 0  # merged by the backfill
    some = pages.find_one({"seq": 1234})
    assert some is not None
    assert twin in _scanned_indexes(pages, {"_id": some["_id"]})
    assert pages.find_one({"_id": some["_id"]}) == some
    assert stack.postgres.install_triggers(database) == []


def test_an_index_on_an_array_takes_arrays_of_any_size_and_unique_indexes_stay_whole(
    stack: Stack, client: MongoClient[Doc], db_name: str
) -> None:
    """FerretDB's btree of a create_index is emptied once its GIN twin serves the queries:
    a btree entry holds the whole array, and PostgreSQL refuses one past 2,704 bytes (a
    chat of 500 random user ids could not be stored)."""
    chats = client[db_name]["chats"]
    chats.create_index([("users", ASCENDING)])
    users = random.Random(7).sample(range(1, 10**9), 5000)
    chats.insert_one({"_id": 1, "users": users})

    indexes = _indexes(stack, db_name, _table(stack, db_name, "chats"))
    btree = _btree_on(indexes, "users")
    assert indexes[btree].endswith(" WHERE false"), indexes[btree]
    assert "WHERE" not in indexes[_btree_on(indexes, "_id")]  # unique: it stays whole
    assert gin_twin_name(btree, "users") in _scanned_indexes(chats, {"users": users[1234]})
    assert chats.find_one({"users": users[4321]}, {"_id": 1}) == {"_id": 1}
    with pytest.raises(DuplicateKeyError):
        chats.insert_one({"_id": 1, "users": [1, 2]})
    # FerretDB keeps the emptied index's name: it lists it, and drops it.
    assert [i["name"] for i in chats.list_indexes()] == ["_id_", "users_1"]
    chats.drop_index("users_1")
    assert [i["name"] for i in chats.list_indexes()] == ["_id_"]


@pytest.mark.parametrize("rows", [0, 5, 100])
def test_small_collections_use_their_twins_too(
    client: MongoClient[Doc], db_name: str, rows: int
) -> None:
    """So a start-up check through explain does not depend on how much data there is."""
    small = client[db_name][f"small_{rows}"]
    if rows:
        small.insert_many([{"page": f"p{i % 10}"} for i in range(rows)])
    small.create_index([("page", ASCENDING)])
    assert _scanned_indexes(small, {"page": "p1"})
    assert _scanned_indexes(small, {"_id": "x"})


def test_a_compound_index_gets_a_twin_per_key_and_none_twice(
    stack: Stack, client: MongoClient[Doc], db_name: str
) -> None:
    messages = client[db_name]["messages"]
    _fill(messages)
    messages.create_index([("cid", ASCENDING), ("seq", DESCENDING)])
    messages.create_index([("cid", ASCENDING)])  # cid has a twin already
    messages.create_index([("meta.kind", ASCENDING)])  # nested: FerretDB never pushes it down

    table = _table(stack, db_name, "messages")
    indexes = _indexes(stack, db_name, table)
    assert _gin_fields(indexes) == ["_id", "cid", "seq"], indexes
    compound = next(n for n, d in indexes.items() if "btree" in d and "'seq'" in d)
    for field in ("cid", "seq"):
        assert gin_twin_name(compound, field) in indexes
    assert gin_twin_name(compound, "cid") in _scanned_indexes(messages, {"cid": "c3"})
    assert gin_twin_name(compound, "seq") in _scanned_indexes(messages, {"seq": 17})


def test_drop_and_re_create_of_collections_and_databases_still_get_twins(
    stack: Stack, client: MongoClient[Doc], db_name: str
) -> None:
    for _ in range(2):
        coll = client[db_name]["chats"]
        _fill(coll)
        coll.create_index([("page", ASCENDING)])
        coll.drop_index("page_1")
        coll.create_index([("page", ASCENDING)], name="page_1")
        indexes = _indexes(stack, db_name, _table(stack, db_name, "chats"))
        twin = gin_twin_name(_btree_on(indexes, "page"), "page")
        assert twin in _scanned_indexes(coll, {"page": "p1"})
        coll.drop()
        assert _table(stack, db_name, "chats") == ""
        _fill(coll)  # the same collection again, after a drop
        coll.create_index([("page", ASCENDING)])
        indexes = _indexes(stack, db_name, _table(stack, db_name, "chats"))
        assert _gin_fields(indexes) == ["_id", "page"]
        client.drop_database(db_name)  # and the same database again, on the next round


def test_the_version_guard_makes_concurrent_increments_exact_with_retries(
    infra: LocalSettings, client: MongoClient[Doc], db_name: str
) -> None:
    client[db_name]["counters"].insert_one({"_id": "hot", "n": 0, "v": 0})
    retries: list[int] = []
    failures: list[BaseException] = []

    def writer() -> None:
        own: MongoClient[Doc] = MongoClient(infra.mongo_url)
        counters = own[db_name]["counters"]
        stale = 0
        try:
            for _ in range(50):
                while True:
                    try:
                        counters.update_one({"_id": "hot"}, {"$inc": {"n": 1, "v": 1}})
                        break
                    except OperationFailure as exc:
                        if "stale write" not in str(exc) or stale > 10_000:
                            raise
                        stale += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)
        finally:
            retries.append(stale)
            own.close()

    threads = [threading.Thread(target=writer) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert client[db_name]["counters"].find_one({"_id": "hot"}) == {
        "_id": "hot",
        "n": 500,
        "v": 500,
    }
    print(f"stale writes retried: {sum(retries)}")


def test_an_update_that_does_not_bump_v_fails_and_unversioned_documents_are_free(
    client: MongoClient[Doc], db_name: str
) -> None:
    docs = client[db_name]["docs"]
    docs.insert_many([{"_id": "versioned", "n": 0, "v": 3}, {"_id": "free", "n": 0}])
    for update in (
        {"$inc": {"n": 1}},  # v untouched
        {"$inc": {"n": 1, "v": 2}},  # skips a version
        {"$set": {"v": 3, "n": 1}},  # rewrites the same version
        {"$unset": {"v": ""}},  # drops the version
        {"$set": {"v": "4"}},  # not a number any more
    ):
        with pytest.raises(OperationFailure) as refused:
            docs.update_one({"_id": "versioned"}, update)
        assert "stale write" in str(refused.value) and "SQLSTATE 40001" in str(refused.value)
    assert docs.find_one({"_id": "versioned"}) == {"_id": "versioned", "n": 0, "v": 3}
    assert docs.update_one({"_id": "versioned"}, {"$inc": {"n": 1, "v": 1}}).modified_count == 1
    assert docs.update_one({"_id": "free"}, {"$inc": {"n": 1}}).modified_count == 1
    assert docs.update_one({"_id": "free"}, {"$set": {"v": 7}}).modified_count == 1  # now versioned
    assert docs.find_one({"_id": "free"}) == {"_id": "free", "n": 1, "v": 7}


def test_existing_tables_converge_when_the_triggers_are_installed_again(
    stack: Stack, client: MongoClient[Doc], db_name: str
) -> None:
    client[db_name]["old"].insert_one({"_id": 1, "v": 1})
    client[db_name]["old"].create_index([("page", ASCENDING)])
    table = _table(stack, db_name, "old")
    indexes = _indexes(stack, db_name, table)
    twin = gin_twin_name(_btree_on(indexes, "_id"), "_id")
    page = _btree_on(indexes, "page")
    database = stack.settings.ferretdb_database
    # As a table made before the triggers existed would be: no twin, no guard, a whole
    # btree (made with the event triggers off, as they are in replica mode).
    stack.postgres.query(
        database,
        f'DROP INDEX "{db_name}"."{twin}";'
        f' DROP TRIGGER ferretdb_version_guard ON "{db_name}"."{table}";'
        " SET session_replication_role = replica;"
        f' DROP INDEX "{db_name}"."{page}";'
        f' CREATE INDEX "{page}" ON "{db_name}"."{table}" ((_jsonb -> \'page\'))',
    )
    indexes = _indexes(stack, db_name, table)
    assert _gin_fields(indexes) == ["page"] and "WHERE" not in indexes[page]

    assert stack.postgres.install_triggers(database) == [
        "backfill: 1 GIN twin(s), 1 unused btree(s) emptied, 1 version guard(s) added,"
        " 0 twin(s) made to write through"
    ]
    indexes = _indexes(stack, db_name, table)
    assert twin in indexes and indexes[page].endswith(" WHERE false")
    with pytest.raises(OperationFailure, match="stale write"):
        client[db_name]["old"].update_one({"_id": 1}, {"$set": {"x": 1}})
    assert stack.postgres.install_triggers(database) == []  # nothing left to do


def test_the_naming_of_twins_is_the_same_in_sql_and_python(stack: Stack) -> None:
    cases = [("short_idx", "page"), ("é" * 40, "ключ"), ("x" * 49 + "ü" * 5, "_id")]
    for index_name, field in cases:
        made = stack.postgres.query(
            stack.settings.ferretdb_database,
            f"SELECT ferretdb_infra.gin_twin_name('{index_name}', '{field}')",
        ).strip()
        assert made == gin_twin_name(index_name, field)


def test_ferretdbs_role_is_no_superuser_and_the_superuser_has_no_tcp(stack: Stack) -> None:
    pg = stack.postgres
    database = stack.settings.ferretdb_database
    assert (
        pg.query_over_tcp(
            database, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).strip()
        == f"{ROLE}|f"
    )
    for statement in (
        "DROP FUNCTION ferretdb_infra.version_guard() CASCADE",
        "DROP EVENT TRIGGER ferretdb_gin_twins",
        "CREATE TABLE ferretdb_infra.intruder (x int)",
        "ALTER ROLE ferretdb SUPERUSER",
    ):
        with pytest.raises(
            ServiceError, match=r"must be owner|permission denied|must be superuser"
        ):
            pg.query_over_tcp(database, statement)
    for password in ("", "postgres", stack.settings.postgres_password):
        with pytest.raises(ServiceError, match=r"password authentication failed|no pg_hba"):
            pg.query_over_tcp("postgres", "SELECT 1", user=SUPERUSER, password=password)


def test_a_private_ferretdb_has_a_database_of_its_own_and_killing_it_harms_nobody(
    infra: LocalSettings, stack: Stack, client: MongoClient[Doc], db_name: str, tmp_path: Path
) -> None:
    ports = {"LOCAL_MONGO_PORT": str(free_port())}
    with private_stack(tmp_path, infra.cache_dir, ["ferretdb"], ports) as private:
        own = private.settings.ferretdb_database
        assert own != infra.ferretdb_database
        assert private.settings.postgres_run_dir == infra.postgres_run_dir
        events = stack.postgres.query(own, "SELECT evtname FROM pg_event_trigger ORDER BY 1")
        assert events.split() == ["ferretdb_gin_twins", "ferretdb_version_guard"]

        mongo: MongoClient[Doc] = MongoClient(private.settings.mongo_url)
        try:
            coll = mongo[db_name]["pages"]
            _fill(coll)
            coll.create_index([("page", ASCENDING)])
            indexes = _indexes(stack, db_name, _table(stack, db_name, "pages", own), own)
            assert _gin_fields(indexes) == ["_id", "page"]

            private.kill("ferretdb")
            shared = client[db_name]["after_kill"]  # the shared FerretDB did not notice
            shared.insert_one({"_id": 1})
            assert shared.find_one({"_id": 1}) == {"_id": 1}
            private.up(["ferretdb"])
            assert coll.count_documents({}) == ROWS  # its data outlived its process
        finally:
            mongo.close()
    left = stack.postgres.query(
        "postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{own}'"
    )
    assert left.strip() == "0"
