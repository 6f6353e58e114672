"""pymongo's async client against the real MongoDB-protocol server (FerretDB)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from infra.local import LocalSettings


async def test_insert_find_index_duplicate_key(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(infra.mongo_url)
    db_name = unique("smoke").replace("-", "_")
    try:
        coll = client[db_name]["messages"]
        await coll.insert_many([{"_id": i, "cid": "c1", "n": i} for i in range(10)])
        newest = await coll.find({"cid": "c1"}).sort("n", DESCENDING).limit(3).to_list()
        assert [d["n"] for d in newest] == [9, 8, 7]

        await coll.create_index([("cid", ASCENDING), ("n", DESCENDING)], unique=True)
        with pytest.raises(DuplicateKeyError) as err:
            await coll.insert_one({"_id": 3, "cid": "c1", "n": 100})
        assert err.value.code == 11000
        assert await coll.count_documents({}) == 10
    finally:
        await client.drop_database(db_name)
        await client.close()
