"""Dump a rich database and restore it: every document, option and index comes back."""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
from collections.abc import Iterator
from typing import Any

import bson
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from mongo_state import db_state, dump_bytes
from pymongo import ASCENDING, DESCENDING, MongoClient

from daai_backup.mongo import ArchiveReader, DumpProgress, dump_database, restore_database
from daai_backup.mongo.archive_format import MAGIC_BYTES


def _every_type(i: int) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "i": i,
        "int64": Int64(2**40 + i),
        "double": 1.5 * i,
        "dec": Decimal128("1234.5678"),
        "s": f"text {i} ✓",
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, 678000),
        "bin": Binary(b"\x00\x01\xff" * 3),
        "uuid": Binary.from_uuid(uuid.UUID(int=i)),
        "re": Regex("^a.*b$", "i"),
        "nested": {"arr": [1, [2, [3, {"deep": True}]], {"x": None}], "b": False},
        "ts": Timestamp(1700000000, i + 1),
        "none": None,
        "code": Code("function(){return 1}"),
        "min": MinKey(),
        "max": MaxKey(),
        "z_order": {"b": 1, "a": 2},
    }


def _seed(client: MongoClient[Any], name: str) -> None:
    db = client[name]
    db.create_collection("capped", capped=True, size=64 * 1024, max=50)
    db.capped.insert_many([{"n": n} for n in range(40)])
    db.create_collection(
        "validated",
        validator={"$jsonSchema": {"bsonType": "object", "required": ["email"]}},
        validationLevel="strict",
        validationAction="error",
    )
    db.validated.insert_many([{"email": f"u{n}@x.io"} for n in range(5)])
    # an old document that today's validator would refuse: restore must still bring it back
    db.validated.insert_one({"legacy": True}, bypass_document_validation=True)
    db.create_collection("collated", collation={"locale": "en", "strength": 2})
    db.collated.insert_many([{"name": n} for n in ("a", "B", "c")])
    db.create_collection("empty")
    db.types.insert_many([_every_type(i) for i in range(30)])
    db.types.create_index([("s", ASCENDING)], unique=True)
    db.types.create_index([("i", ASCENDING), ("when", DESCENDING)], name="compound")
    db.types.create_index("double", partialFilterExpression={"double": {"$gt": 10}})
    db.types.create_index("when", expireAfterSeconds=10**9)
    db.big.insert_one({"_id": 1, "blob": Binary(b"\x07" * (15 * 1024 * 1024))})
    db.big.insert_one({"_id": 2, "small": True})
    db.create_collection("active", viewOn="types", pipeline=[{"$match": {"b": {"$ne": True}}}])


@pytest.fixture(scope="module")
def seeded(mongo_client: MongoClient[Any]) -> Iterator[tuple[str, dict[str, Any], bytes]]:
    name = f"src_{uuid.uuid4().hex[:10]}"
    _seed(mongo_client, name)
    state = db_state(mongo_client, name)
    archive = dump_bytes(mongo_client, name)
    yield name, state, archive
    mongo_client.drop_database(name)


def test_dump_reports_snapshot_and_counts(
    mongo_client: MongoClient[Any], seeded: tuple[str, dict[str, Any], bytes]
) -> None:
    name, state, _ = seeded
    seen: list[DumpProgress] = []
    sink = io.BytesIO()
    result = dump_database(mongo_client, name, sink, progress=seen.append)
    assert result.consistency == "snapshot"
    assert re.fullmatch(r"\d+\.\d+\.\d+", result.server_version)
    by_name = {c.name: c for c in result.collections}
    assert set(by_name) == set(state)
    assert by_name["capped"].documents == 40
    assert by_name["empty"].documents == 0
    assert by_name["active"].type == "view"
    assert result.total_documents == sum(len(s.get("documents", [])) for s in state.values())
    assert seen
    assert seen[-1].total_documents == result.total_documents
    assert sink.getvalue().startswith(MAGIC_BYTES)
    assert result.started_at <= result.finished_at


def test_dump_metadata_matches_the_reference(seeded: tuple[str, dict[str, Any], bytes]) -> None:
    name, _, archive = seeded
    reader = ArchiveReader(io.BytesIO(archive))
    header_doc = bson.decode(archive[4 : 4 + int.from_bytes(archive[4:8], "little")])
    assert list(header_doc) == [
        "concurrent_collections",
        "version",
        "server_version",
        "tool_version",
    ]
    assert reader.header.version == "0.1"
    metas = {m.collection: m for m in reader.collections}
    capped = metas["capped"].metadata_json()
    assert capped.startswith('{"options":{"capped":true,')
    tail = r'"uuid":"[0-9a-f]{32}","collectionName":"capped","type":"collection"}$'
    assert re.search(tail, capped)
    id_index = '{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}'
    assert f'"indexes":[{id_index}]' in capped
    assert metas["empty"].metadata_json().startswith('{"indexes":')  # empty options left out
    view = metas["active"]
    assert view.type == "view"
    assert view.indexes == []
    assert view.options["viewOn"] == "types"
    assert all(m.db == name for m in reader.collections)
    ends = {e.collection: e for e in reader if type(e).__name__ == "NamespaceEnd"}
    assert set(ends) == set(metas)  # empty collections and views get EOF blocks too


def test_round_trip_into_a_fresh_database(
    mongo_client: MongoClient[Any],
    seeded: tuple[str, dict[str, Any], bytes],
    mongo_db_name: str,
) -> None:
    _, state, archive = seeded
    result = restore_database(mongo_client, mongo_db_name, io.BytesIO(archive))
    assert db_state(mongo_client, mongo_db_name) == state
    assert result.views == ["active"]
    assert {c.name: c.documents for c in result.collections}["capped"] == 40
    # the restored validator still holds for new writes
    with pytest.raises(Exception, match=r"[Vv]alidation"):
        mongo_client[mongo_db_name].validated.insert_one({"no_email": 1})


def test_restore_over_a_changed_database(
    mongo_client: MongoClient[Any],
    seeded: tuple[str, dict[str, Any], bytes],
    mongo_db_name: str,
) -> None:
    _, state, archive = seeded
    db = mongo_client[mongo_db_name]
    restore_database(mongo_client, mongo_db_name, io.BytesIO(archive))
    db.types.update_many({}, {"$set": {"double": -1.0, "new": 1}})
    db.types.delete_many({"i": {"$lt": 10}})
    db.capped.drop()
    db.extra.insert_one({"x": 1})
    db.create_collection("extra_view", viewOn="extra", pipeline=[])
    db.active.drop()
    db.create_collection("active", capped=False)  # a collection where the view was
    result = restore_database(mongo_client, mongo_db_name, io.BytesIO(archive))
    assert sorted(result.dropped) == ["extra", "extra_view"]
    assert db_state(mongo_client, mongo_db_name) == state
