"""Restore to a moment: a snapshot staged, the change stream's own events replayed up to the
moment, swapped in; the result equals the live state recorded at that moment, exactly.

The events come from a real change stream on SecantusDB opened before the workload
(``change_workload.record``); nothing here builds an event by hand except the duplicate and
foreign-database cases.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from bson.timestamp import Timestamp
from change_workload import Recorded, exact_state, record
from pymongo import MongoClient
from pymongo.client_session import ClientSession

from daai_backup.errors import DatabaseError, RestoreVerificationFailed
from daai_backup.mongo import stage_restore, swap_staged
from daai_backup.mongo.journal import read_journal
from daai_backup.mongo.replay import replay_staged, update_for


def _setup(db: Any) -> None:
    db.create_collection("people", validator={"name": {"$exists": True}})
    db.people.create_index("name", name="name_1")
    db.people.insert_many(
        [
            {"_id": 1, "name": "ann", "skills": ["a", "b", "c", "d"], "addr": {"city": "x"}},
            {"_id": 2, "name": "bob", "tags": [1, 2, 3, 2], "o": {"0": "zero"}},
            {"_id": 3, "name": "cy", "n": {"d.t": 1, "k": 2}},
        ]
    )
    db.orders.insert_many([{"_id": i, "qty": i} for i in range(5)])
    db.old.insert_one({"_id": "gone"})
    db.create_collection("ordered_view", viewOn="orders", pipeline=[{"$sort": {"qty": -1}}])


def _crud(db: Any, s: ClientSession) -> None:
    p = db.people
    p.update_one({"_id": 1}, {"$set": {"skills.1": "B", "addr.zip": "123"}}, session=s)
    p.update_one({"_id": 1}, {"$unset": {"addr.city": ""}, "$push": {"skills": "e"}}, session=s)
    p.update_one({"_id": 2}, {"$pull": {"tags": 2}}, session=s)
    p.update_one({"_id": 2}, {"$set": {"o.0": "ZERO", "o.1": "one"}}, session=s)
    p.update_one({"_id": 1}, [{"$set": {"skills": {"$slice": ["$skills", 2]}}}], session=s)
    p.update_one(
        {"_id": 3},
        [{"$set": {"n": {"$setField": {"field": "d.t", "input": "$n", "value": 9}}}}],
        session=s,
    )
    p.update_one({"_id": 3}, {"$set": {"z": 1, "b": {"deep": [1, {"x": 2}]}}}, session=s)
    p.update_one({"_id": 3}, {"$set": {"b.deep.1.x": 3}}, session=s)
    p.replace_one({"_id": 2}, {"name": "bob2", "v": 2}, session=s)
    p.insert_one({"_id": 4, "name": "dee"}, session=s)
    p.delete_one({"_id": 1}, session=s)
    db.orders.delete_many({"qty": {"$gte": 3}}, session=s)
    db.orders.insert_one({"_id": 10, "qty": 10}, session=s)


def _ddl(db: Any, s: ClientSession) -> None:
    db.command("create", "events", capped=True, size=4096, session=s)
    db.events.insert_one({"_id": 1, "e": "created"}, session=s)
    # SecantusDB's createIndexes events carry only key and name (mongod's carry the whole
    # spec), so an index with options would not come back exactly from this server's events.
    db.orders.create_index([("qty", -1)], name="qty_desc", session=s)
    db.people.drop_index("name_1", session=s)
    db.command("collMod", "people", validator={"name": {"$type": "string"}}, session=s)
    db.client.admin.command(
        "renameCollection", f"{db.name}.orders", to=f"{db.name}.orders2", session=s
    )
    db.drop_collection("old", session=s)
    db.fresh.insert_one({"_id": 1, "implicit": True}, session=s)
    db.create_collection("v2", viewOn="orders2", pipeline=[{"$match": {"qty": 10}}], session=s)


def _transaction(db: Any, s: ClientSession) -> None:
    with s.start_transaction():
        db.people.insert_one({"_id": 5, "name": "tx"}, session=s)
        db.orders2.update_one({"_id": 10}, {"$inc": {"qty": 1}}, session=s)
        db.fresh.delete_one({"_id": 1}, session=s)


def _after(db: Any, s: ClientSession) -> None:
    db.people.update_one({"_id": 5}, {"$set": {"after": True}}, session=s)
    db.drop_collection("ordered_view", session=s)


@pytest.fixture(scope="module")
def recorded(mongo_client: MongoClient[Any]) -> Any:
    rec = record(
        mongo_client,
        [("crud", _crud), ("ddl", _ddl), ("transaction", _transaction), ("after", _after)],
        _setup,
    )
    yield rec
    mongo_client.drop_database(rec.database)


def _restore_to(
    client: MongoClient[Any], rec: Recorded, until: Timestamp, events: Any = None
) -> Any:
    staged = stage_restore(client, rec.database, io.BytesIO(rec.archive))
    result = replay_staged(
        client,
        rec.database,
        staged.run,
        rec.events if events is None else events,
        after=rec.snapshot,
        until=until,
    )
    swap_staged(client, rec.database, staged.run)
    return result


@pytest.mark.parametrize("label", ["snapshot", "crud", "ddl", "transaction", "after"])
def test_restore_to_each_moment_equals_the_live_state_then(
    mongo_client: MongoClient[Any], recorded: Recorded, label: str
) -> None:
    moment = next(m for m in recorded.moments if m.label == label)
    _restore_to(mongo_client, recorded, moment.at)
    assert exact_state(mongo_client, recorded.database) == moment.state


def test_a_transaction_is_replayed_whole_or_not_at_all(
    mongo_client: MongoClient[Any], recorded: Recorded
) -> None:
    tx = [e for e in recorded.events if e.get("txnNumber") is not None]
    assert len(tx) == 3
    assert len({e["clusterTime"] for e in tx}) == 1
    commit = tx[0]["clusterTime"]
    before = next(m for m in recorded.moments if m.label == "ddl")
    after = next(m for m in recorded.moments if m.label == "transaction")
    _restore_to(mongo_client, recorded, Timestamp(commit.time, commit.inc - 1))
    assert exact_state(mongo_client, recorded.database) == before.state
    _restore_to(mongo_client, recorded, commit)
    assert exact_state(mongo_client, recorded.database) == after.state


def test_duplicated_events_have_no_effect(
    mongo_client: MongoClient[Any], recorded: Recorded
) -> None:
    events = recorded.events
    tx = next(i for i, e in enumerate(events) if e.get("txnNumber") is not None)
    # A reader that restarted twice: from the start, and inside the transaction (a resume
    # at its cluster time delivers all of it again, the part already delivered too).
    doubled = events[: len(events) // 2] + events[: tx + 2] + events[tx:]
    last = recorded.moments[-1]
    result = _restore_to(mongo_client, recorded, last.at, doubled)
    assert exact_state(mongo_client, recorded.database) == last.state
    assert result.skipped >= len(events) // 2 + 2


def test_events_that_do_not_fit_the_snapshot_are_refused(
    mongo_client: MongoClient[Any], recorded: Recorded
) -> None:
    # Replaying from an older point than the snapshot: inserts of documents it already holds.
    staged = stage_restore(mongo_client, recorded.database, io.BytesIO(recorded.archive))
    setup_events = [e for e in recorded.events if e["clusterTime"] <= recorded.snapshot]
    assert setup_events
    with pytest.raises(RestoreVerificationFailed, match="disagree"):
        replay_staged(
            mongo_client,
            recorded.database,
            staged.run,
            setup_events,
            after=Timestamp(0, 0),
            until=recorded.snapshot,
        )
    assert read_journal(mongo_client.get_database(recorded.database)) is None  # dropped


def test_another_databases_event_is_refused(
    mongo_client: MongoClient[Any], recorded: Recorded
) -> None:
    staged = stage_restore(mongo_client, recorded.database, io.BytesIO(recorded.archive))
    foreign = dict(recorded.events[-1])
    foreign["ns"] = {"db": "someone_else", "coll": "people"}
    with pytest.raises(DatabaseError, match="another database"):
        replay_staged(
            mongo_client,
            recorded.database,
            staged.run,
            [foreign],
            after=Timestamp(0, 0),
            until=Timestamp(2**32 - 1, 0),
        )


def test_updates_translate_odd_field_names_into_pipeline_stages() -> None:
    plain = update_for(
        {
            "updatedFields": {"a.1": 2},
            "removedFields": ["b"],
            "truncatedArrays": [{"field": "a", "newSize": 3}],
        }
    )
    assert plain == [
        {"$push": {"a": {"$each": [], "$slice": 3}}},
        {"$set": {"a.1": 2}, "$unset": {"b": ""}},
    ]
    odd = update_for({"updatedFields": {"n.d.t": 1}, "disambiguatedPaths": {"n.d.t": ["n", "d.t"]}})
    assert isinstance(odd[0], list)
    assert "$replaceWith" in odd[0][0]


def test_disambiguated_paths_are_applied_literally_on_the_server(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    # The shape mongod gives a change inside a field named with a dot (SecantusDB reports
    # such changes as the whole parent, so this one is written as mongod would send it).
    coll = mongo_client[mongo_db_name]["odd"]
    coll.insert_one({"_id": 1, "n": {"d.t": 1, "k": 2}, "arr": [{"a.b": 1}, 5], "$x": {"y": 1}})
    description = {
        "updatedFields": {"n.d.t": 5, "arr.0.a.b": 7, "$x.y": 2},
        "removedFields": ["n.k"],
        "truncatedArrays": [{"field": "arr", "newSize": 1}],
        "disambiguatedPaths": {
            "n.d.t": ["n", "d.t"],
            "arr.0.a.b": ["arr", 0, "a.b"],
            "$x.y": ["$x", "y"],
        },
    }
    for update in update_for(description):
        assert coll.update_one({"_id": 1}, update).matched_count == 1
    assert coll.find_one({"_id": 1}) == {
        "_id": 1,
        "n": {"d.t": 5},
        "arr": [{"a.b": 7}],
        "$x": {"y": 2},
    }
