"""Index builds beside the next collection's load (issue 13): faster, and as safe as before."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from archive_builder import ArchiveBuilder, metadata_string
from mongo_state import db_state, dump_bytes
from pymongo import MongoClient

from daai_backup.errors import DatabaseError
from daai_backup.mongo import RestoreProgress, restore_database

PREFIX = "__daai_restore."
UNIQUE_NAME = (
    '[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},'
    '{"v":{"$numberInt":"2"},"key":{"name":{"$numberInt":"1"}},"name":"name_1",'
    '"unique":true}]'
)


def _staged_index_names(client: MongoClient[Any], name: str) -> set[str]:
    db = client[name]
    return {
        str(index["name"])
        for coll in db.list_collection_names()
        if coll.startswith(PREFIX) and not coll.endswith("journal")
        for index in db[coll].list_indexes()
    }


def test_a_collections_indexes_are_built_while_the_next_one_loads(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    db.a_first.insert_many([{"k": i} for i in range(50)])
    db.a_first.create_index("k", name="k_first")
    db.b_second.insert_many([{"j": i} for i in range(50)])
    db.b_second.create_index("j", name="j_second")
    archive = dump_bytes(mongo_client, mongo_db_name)
    snapshot = db_state(mongo_client, mongo_db_name)
    db.a_first.drop()
    seen: list[set[str]] = []

    def watch(p: RestoreProgress) -> None:
        if p.phase == "load" and p.collection == "b_second" and not seen:
            # The first collection's build was handed over when its last document went in;
            # it runs beside this load (a build after the whole load would never show up).
            deadline = time.monotonic() + 10
            names = _staged_index_names(mongo_client, mongo_db_name)
            while "k_first" not in names and time.monotonic() < deadline:
                time.sleep(0.05)
                names = _staged_index_names(mongo_client, mongo_db_name)
            seen.append(names)

    restore_database(
        mongo_client, mongo_db_name, io.BytesIO(archive), progress=watch, batch_documents=10
    )
    assert seen
    assert "k_first" in seen[0]
    assert "j_second" not in seen[0]  # its own build waits for its last document
    assert db_state(mongo_client, mongo_db_name) == snapshot


def test_a_failed_build_beside_a_load_leaves_live_untouched_and_nothing_staged(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    db.keep.insert_many([{"_id": i} for i in range(5)])
    live = db_state(mongo_client, mongo_db_name)
    b = ArchiveBuilder(mongo_db_name)
    b.metadata("users", metadata_string("users", indexes=UNIQUE_NAME))
    b.metadata("later", metadata_string("later")).term()
    b.segment("users", [{"_id": 1, "name": "same"}, {"_id": 2, "name": "same"}]).eof("users")
    for start in range(0, 200, 20):
        b.segment("later", [{"_id": i} for i in range(start, start + 20)])
    b.eof("later")
    with pytest.raises(DatabaseError, match=r"(?i)duplicate key"):
        restore_database(mongo_client, mongo_db_name, io.BytesIO(b.build()), batch_documents=20)
    assert db_state(mongo_client, mongo_db_name) == live
    assert not [c for c in db.list_collection_names() if c.startswith(PREFIX)]
