"""Collection names: every name MongoDB accepts is backed up and restored; others are refused.

Also ``system.js`` (stored JavaScript), the one ``system.*`` collection that is user data.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from archive_builder import ArchiveBuilder, metadata_string
from bson import Code
from mongo_state import db_state, dump_bytes
from pymongo import MongoClient

from daai_backup.errors import DatabaseError
from daai_backup.mongo import ArchiveReader, dump_database, restore_database
from daai_backup.mongo.namespaces import (
    MAX_NAMESPACE_BYTES,
    check_collection_name,
    is_backed_up,
    is_ours,
)
from daai_backup.mongo.restore import _SimulatedCrash

PREFIX = "__daai_restore."


def _longest_name(database: str) -> str:
    """A legal name whose namespace ``<database>.<name>`` is exactly 255 bytes (with 2-byte
    characters, so bytes and characters differ)."""
    room = MAX_NAMESPACE_BYTES - len(f"{database}.".encode())
    name = "é" * 10 + "n" * (room - 20)
    assert len(f"{database}.{name}".encode()) == MAX_NAMESPACE_BYTES
    return name


def _names_in(archive: bytes) -> list[str]:
    return [m.collection for m in ArchiveReader(io.BytesIO(archive)).collections]


def test_a_255_byte_namespace_round_trips(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    long_name = _longest_name(mongo_db_name)
    db[long_name].insert_many([{"_id": i, "v": f"long {i}"} for i in range(25)])
    db[long_name].create_index("v", unique=True)
    db.plain.insert_many([{"_id": i} for i in range(5)])
    archive = dump_bytes(mongo_client, mongo_db_name)
    snapshot = db_state(mongo_client, mongo_db_name)
    assert long_name in _names_in(archive)
    db[long_name].delete_many({"_id": {"$gte": 10}})
    db[long_name].insert_one({"_id": 99, "v": "not in the snapshot"})
    db.plain.drop()

    result = restore_database(mongo_client, mongo_db_name, io.BytesIO(archive))
    assert db_state(mongo_client, mongo_db_name) == snapshot
    assert {c.name: c.documents for c in result.collections}[long_name] == 25
    assert not [n for n in db.list_collection_names() if n.startswith(PREFIX)]


def test_a_name_too_long_for_the_target_database_is_refused_first(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    db.live.insert_one({"_id": 1})
    live = db_state(mongo_client, mongo_db_name)
    # fits a shorter source database, not this one: refused before anything is staged
    name = _longest_name(mongo_db_name) + "x"
    b = ArchiveBuilder("src").metadata(name, metadata_string(name)).term()
    b.segment(name, [{"_id": 1}]).eof(name)
    with pytest.raises(DatabaseError, match=r"is too long for database .* 256 bytes") as refused:
        restore_database(mongo_client, mongo_db_name, io.BytesIO(b.build()))
    assert "\n" not in str(refused.value)
    assert db_state(mongo_client, mongo_db_name) == live


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("", "invalid"),
        ("a\x00b", "invalid"),
        ("a$b", "invalid"),
        (".hidden", "invalid"),
        ("__daai_restore.x", "reserved"),
        ("__daai_restore.journal", "reserved"),
        ("system.views", "reserved"),
        ("system.profile", "reserved"),
        ("system.buckets.metrics", "reserved"),
        ("n" * 250, "too long"),
    ],
)
def test_the_shared_name_check_refuses(name: str, refused: str) -> None:
    with pytest.raises(DatabaseError, match=refused) as info:
        check_collection_name("tenant", name)
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("name", ["system.js", "a..b", "x.", "é", "n" * 248, "system_js"])
def test_the_shared_name_check_accepts(name: str) -> None:
    check_collection_name("tenant", name)


def test_time_series_names_leave_room_for_their_buckets() -> None:
    name = "m" * (MAX_NAMESPACE_BYTES - len("tenant.system.buckets."))
    check_collection_name("tenant", name, timeseries=True)
    with pytest.raises(DatabaseError, match=r"too long .*time-series buckets"):
        check_collection_name("tenant", name + "m", timeseries=True)


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("__daai_restore.journal", True),
        ("__daai_restore.0badc0de.c0", True),
        ("__daai_restore.0badc0de.c17", True),
        ("__daai_restore.0badc0de.probe-a", True),
        ("__daai_restore.0badc0de.probe-b", True),
        ("__daai_restore.orders", False),
        ("__daai_restore.journal2", False),
        ("__daai_restore.0badc0de.c", False),
        ("__daai_restore.0badc0de.c01", False),
        ("__daai_restore.0BADC0DE.c0", False),
        ("__daai_restore.0badc0de.c0.x", False),
        ("__daai_restore.0badc0d.c0", False),
        ("__daai_restore.0badc0de.probe-c", False),
        ("x__daai_restore.journal", False),
    ],
)
def test_only_the_restores_own_names_are_ours(name: str, ours: bool) -> None:
    assert is_ours(name) is ours


def test_a_user_collection_with_the_reserved_prefix_is_refused_by_the_dump(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    db.users.insert_one({"_id": 1})
    db["__daai_restore.orders"].insert_one({"_id": 1, "total": 5})
    sink = io.BytesIO()
    with pytest.raises(DatabaseError, match=r"'__daai_restore\.orders'.*rename") as refused:
        dump_database(mongo_client, mongo_db_name, sink)
    assert "\n" not in str(refused.value)
    assert sink.getvalue() == b""  # refused before writing anything


def test_a_restore_never_drops_a_user_collection_with_the_reserved_prefix(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    db.users.insert_many([{"_id": i} for i in range(3)])
    archive = dump_bytes(mongo_client, mongo_db_name)
    snapshot = db_state(mongo_client, mongo_db_name)
    db.users.drop()
    db["__daai_restore.orders"].insert_one({"_id": 1, "total": 5})
    db["__daai_restore.0badc0de.c"].insert_one({"_id": 2})
    theirs = {k: v for k, v in db_state(mongo_client, mongo_db_name).items() if k != "users"}
    with pytest.raises(_SimulatedCrash):  # leaves staging and a journal to clean up
        restore_database(mongo_client, mongo_db_name, io.BytesIO(archive), _fail_at="load")
    assert any(is_ours(n) for n in db.list_collection_names())

    restore_database(mongo_client, mongo_db_name, io.BytesIO(archive))  # drops leftovers
    assert db_state(mongo_client, mongo_db_name) == snapshot | theirs


def test_what_a_backup_holds() -> None:
    assert is_backed_up("users")
    assert is_backed_up("system.js")
    assert not is_backed_up("system.views")
    assert not is_backed_up("system.buckets.metrics")
    assert not is_backed_up("__daai_restore.journal")


@pytest.mark.parametrize("name", ["system.views", "system.profile", "__daai_restore.1234.c0"])
def test_a_restore_refuses_reserved_names_in_an_archive(
    mongo_client: MongoClient[Any], mongo_db_name: str, name: str
) -> None:
    db = mongo_client[mongo_db_name]
    db.live.insert_one({"_id": 1})
    live = db_state(mongo_client, mongo_db_name)
    b = ArchiveBuilder(mongo_db_name).metadata(name, metadata_string(name)).term()
    b.segment(name, []).eof(name)
    with pytest.raises(DatabaseError, match="reserved"):
        restore_database(mongo_client, mongo_db_name, io.BytesIO(b.build()))
    assert db_state(mongo_client, mongo_db_name) == live


def _stored_functions(client: MongoClient[Any], name: str) -> None:
    js = client[name]["system.js"]
    js.insert_one({"_id": "add", "value": Code("function (a, b) { return a + b; }")})
    js.insert_one({"_id": "half", "value": Code("function (x) { return x / 2; }")})


def test_system_js_round_trips(mongo_client: MongoClient[Any], mongo_db_name: str) -> None:
    db = mongo_client[mongo_db_name]
    _stored_functions(mongo_client, mongo_db_name)
    db.users.insert_many([{"_id": i} for i in range(3)])
    db.create_collection("system.profile")  # a server namespace: never backed up
    archive = dump_bytes(mongo_client, mongo_db_name)
    snapshot = db_state(mongo_client, mongo_db_name)
    assert _names_in(archive) == ["system.js", "users"]  # as mongodump writes it

    db["system.js"].delete_one({"_id": "half"})
    db["system.js"].insert_one({"_id": "later", "value": Code("function () {}")})
    db.users.drop()
    restore_database(mongo_client, mongo_db_name, io.BytesIO(archive))
    assert db_state(mongo_client, mongo_db_name) == snapshot

    db["system.js"].drop()  # into a database without system.js at all
    restore_database(mongo_client, mongo_db_name, io.BytesIO(archive))
    assert db_state(mongo_client, mongo_db_name) == snapshot


def test_a_snapshot_without_system_js_drops_the_live_one(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    db.users.insert_many([{"_id": i} for i in range(3)])
    db.create_collection("system.profile")
    archive = dump_bytes(mongo_client, mongo_db_name)
    snapshot = db_state(mongo_client, mongo_db_name)
    assert "system.js" not in snapshot

    _stored_functions(mongo_client, mongo_db_name)
    result = restore_database(mongo_client, mongo_db_name, io.BytesIO(archive))
    assert result.dropped == ["system.js"]
    assert db_state(mongo_client, mongo_db_name) == snapshot  # system.profile left alone
