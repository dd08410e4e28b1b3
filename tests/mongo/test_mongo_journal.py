"""The restore journal: one document per collection and view, so no plan outgrows 16 MB."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mongo_state import db_state, dump_bytes
from pymongo import MongoClient

from daai_backup.errors import DatabaseError
from daai_backup.mongo import (
    finish_interrupted_restore,
    interrupted_restore,
    restore_database,
    stage_restore,
    swap_staged,
)
from daai_backup.mongo.restore import _SimulatedCrash

JOURNAL = "__daai_restore.journal"
#: A validator of about 3 MB (BSON and Extended JSON alike: it is mostly strings). Six of
#: them are over 16 MB together, each one far below. (Commands of 5.5 MB each once left the
#: test server silent mid-suite; smaller ones keep the test about the journal.)
_CODES = [f"{i:06d}" + "x" * 1000 for i in range(3000)]
_VALIDATOR = {"$jsonSchema": {"bsonType": "object", "properties": {"code": {"enum": _CODES}}}}


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MongoClient[Any]]:
    """A server of this test's own. Megabyte-sized options written while another test's
    session pins an old snapshot can stall the shared test server's storage engine (seen:
    a ``create`` never answered mid-suite); a fresh one has nothing pinned."""
    from secantus import SecantusDBServer

    with SecantusDBServer(storage_path=str(tmp_path / "db")) as server:
        client: MongoClient[Any] = MongoClient(server.uri)
        yield client
        client.close()


def test_a_plan_larger_than_one_document_is_staged_swapped_and_finished(
    own_server: MongoClient[Any],
) -> None:
    mongo_client, mongo_db_name = own_server, "journal_plan"
    db = mongo_client[mongo_db_name]
    for n in range(6):
        db.create_collection(f"form_{n}", validator=_VALIDATOR)
        db[f"form_{n}"].insert_one({"_id": n, "code": _CODES[n]})
    db.create_collection("form_view", viewOn="form_0", pipeline=[{"$match": {"code": _CODES[0]}}])
    archive = dump_bytes(mongo_client, mongo_db_name)
    snapshot = db_state(mongo_client, mongo_db_name)
    db.form_0.insert_one({"_id": 99, "code": _CODES[7]})  # changes the restore undoes
    db.drop_collection("form_3")
    db.extra.insert_one({"x": 1})

    staged = stage_restore(mongo_client, mongo_db_name, io.BytesIO(archive))
    journal = list(db[JOURNAL].find({}, {"kind": 1, "target": 1, "name": 1, "state": 1}))
    state = [d for d in journal if d["_id"] == "restore"]
    assert [d["state"] for d in state] == ["staged"]
    assert sorted(d["target"] for d in journal if d.get("kind") == "collection") == [
        f"form_{n}" for n in range(6)
    ]
    assert [d["name"] for d in journal if d.get("kind") == "view"] == ["form_view"]

    with pytest.raises(_SimulatedCrash):  # the swap reads the plan back, and so does the finish
        swap_staged(mongo_client, mongo_db_name, staged, _fail_at="swap")
    assert interrupted_restore(mongo_client, mongo_db_name)
    assert finish_interrupted_restore(mongo_client, mongo_db_name)
    assert db_state(mongo_client, mongo_db_name) == snapshot

    db.drop_collection("form_1")
    result = restore_database(mongo_client, mongo_db_name, io.BytesIO(archive))  # in one call
    assert sorted(c.name for c in result.collections) == [f"form_{n}" for n in range(6)]
    assert db_state(mongo_client, mongo_db_name) == snapshot


def test_the_state_document_stays_small(mongo_client: MongoClient[Any], mongo_db_name: str) -> None:
    """Thousands of collections make many small documents, never one large one."""
    db = mongo_client[mongo_db_name]
    for n in range(40):
        db[f"c{n:02d}_" + "n" * 150].insert_one({"_id": n})
    archive = dump_bytes(mongo_client, mongo_db_name)
    staged = stage_restore(mongo_client, mongo_db_name, io.BytesIO(archive))
    raw = db.get_collection(JOURNAL).find_one({"_id": "restore"})
    assert raw is not None
    assert raw["run"] == staged.run
    assert len(repr(raw)) < 1000  # does not grow with the number of collections
    assert db[JOURNAL].count_documents({"run": staged.run, "kind": "collection"}) == 40
    swap_staged(mongo_client, mongo_db_name, staged.run)
    assert JOURNAL not in db.list_collection_names()


def test_an_interrupted_swap_journalled_by_an_earlier_version_is_finished(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    """Layout 1 (one document, Extended JSON text) may be left mid-swap by an upgrade."""
    db = mongo_client[mongo_db_name]
    db.users.insert_one({"_id": 1, "old": True})
    db.extra.insert_one({"x": 1})
    db["__daai_restore.0badc0de.c0"].insert_many([{"_id": 1, "n": 1}, {"_id": 2, "n": 2}])
    db[JOURNAL].insert_one(
        {
            "_id": "restore",
            "state": "swapping",
            "run": "0badc0de",
            "renames": [
                {
                    "staging": "__daai_restore.0badc0de.c0",
                    "target": "users",
                    "method": "copy",
                    "options": '{"validator":{"n":{"$type":"int"}}}',
                    "indexes": '[{"v":{"$numberInt":"2"},"key":{"n":{"$numberInt":"1"}},'
                    '"name":"n_1"}]',
                }
            ],
            "views": [{"name": "v", "options": '{"viewOn":"users","pipeline":[]}'}],
            "snapshot": ["users", "v"],
            "drop": ["extra"],
        }
    )
    assert interrupted_restore(mongo_client, mongo_db_name)
    assert finish_interrupted_restore(mongo_client, mongo_db_name)
    state = db_state(mongo_client, mongo_db_name)
    assert sorted(state) == ["users", "v"]
    assert state["users"]["options"] == {"validator": {"n": {"$type": "int"}}}
    assert [i["name"] for i in state["users"]["indexes"]] == ["_id_", "n_1"]
    assert list(db.users.find()) == [{"_id": 1, "n": 1}, {"_id": 2, "n": 2}]
    assert state["v"]["options"] == {"viewOn": "users", "pipeline": []}


def test_a_plan_with_documents_missing_is_not_carried_out(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    db.a.insert_one({"_id": 1})
    db.b.insert_one({"_id": 2})
    archive = dump_bytes(mongo_client, mongo_db_name)
    staged = stage_restore(mongo_client, mongo_db_name, io.BytesIO(archive))
    db[JOURNAL].delete_one({"run": staged.run, "kind": "collection", "target": "b"})
    before = db_state(mongo_client, mongo_db_name)
    with pytest.raises(DatabaseError, match=r"journal .* is incomplete: it counts 2 collections"):
        swap_staged(mongo_client, mongo_db_name, staged)
    assert db_state(mongo_client, mongo_db_name) == before
