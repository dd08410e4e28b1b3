"""Snapshot vs best-effort consistency, error translation and time-series collections."""

from __future__ import annotations

import datetime as dt
import io
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from archive_builder import ArchiveBuilder, metadata_string
from mongo_state import db_state, dump_bytes
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import AutoReconnect, OperationFailure, ServerSelectionTimeoutError

from daai_backup.errors import (
    ArchiveCorrupt,
    DatabaseError,
    SnapshotChanged,
    SnapshotTooOld,
    TransientDatabaseError,
)
from daai_backup.mongo import (
    CatalogChange,
    DocumentBatch,
    DumpProgress,
    NamespaceEnd,
    dump_database,
    read_archive,
    restore_database,
)
from daai_backup.mongo.translate import translated


def test_standalone_server_falls_back_to_best_effort(tmp_path: Path) -> None:
    from secantus import SecantusDBServer

    storage = tempfile.mkdtemp(dir=tmp_path)
    with SecantusDBServer(storage_path=storage, replica_set_name=None) as server:
        client: MongoClient[Any] = MongoClient(server.uri)
        client.t.a.insert_many([{"_id": i} for i in range(5)])
        sink = io.BytesIO()
        result = dump_database(client, "t", sink)
        assert result.consistency == "best-effort"
        assert result.total_documents == 5
        restore_database(client, "t2", io.BytesIO(sink.getvalue()))
        assert client.t2.a.count_documents({}) == 5
        client.close()


def test_snapshot_too_old_is_explained() -> None:
    with pytest.raises(SnapshotTooOld, match="minSnapshotHistoryWindowInSeconds"):  # noqa: SIM117
        with translated("reading t.a"):
            raise OperationFailure("Read timestamp is older than the oldest available", 239)


@pytest.mark.parametrize(
    "exc", [ServerSelectionTimeoutError("no servers\nlong topology"), AutoReconnect("reset")]
)
def test_connection_errors_are_transient(exc: Exception) -> None:
    with pytest.raises(TransientDatabaseError) as info, translated("reading t.a"):
        raise exc
    assert info.value.transient
    assert "\n" not in str(info.value)


def test_other_server_errors_are_database_errors() -> None:
    with pytest.raises(DatabaseError, match=r"reading t\.a: not authorized \(code 13\)"):  # noqa: SIM117
        with translated("reading t.a"):
            raise OperationFailure("not authorized", 13)


def test_a_document_too_large_is_a_one_line_database_error(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    with pytest.raises(DatabaseError, match=r"^writing x: document too large") as info:  # noqa: SIM117
        with translated("writing x"):
            mongo_client[mongo_db_name].big.insert_one({"blob": "x" * (17 * 1024 * 1024)})
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 400


def test_time_series_round_trip(mongo_client: MongoClient[Any], mongo_db_name: str) -> None:
    """SecantusDB lists time-series as collections with ``timeseries`` options; both survive."""
    src = f"{mongo_db_name}_src"
    db = mongo_client[src]
    db.create_collection(
        "metrics", timeseries={"timeField": "t", "metaField": "m"}, expireAfterSeconds=3600
    )
    base = dt.datetime(2024, 1, 1)
    db.metrics.insert_many(
        [{"t": base + dt.timedelta(minutes=i), "m": {"s": i % 2}, "v": i} for i in range(12)]
    )
    try:
        state = db_state(mongo_client, src)
        restore_database(mongo_client, mongo_db_name, io.BytesIO(dump_bytes(mongo_client, src)))
        assert db_state(mongo_client, mongo_db_name) == state
        assert state["metrics"]["options"]["timeseries"]["timeField"] == "t"
    finally:
        mongo_client.drop_database(src)


def test_reader_maps_time_series_buckets_as_mongodump_writes_them() -> None:
    """Real mongod: metadata names the collection, data and EOF use system.buckets.<name>."""
    options = (
        '{"timeseries":{"timeField":"t","granularity":"seconds",'
        '"bucketMaxSpanSeconds":{"$numberInt":"3600"}}}'
    )
    b = ArchiveBuilder("iot")
    b.metadata(
        "metrics",
        metadata_string("metrics", options=options, indexes="[]", kind="timeseries"),
        kind="timeseries",
    )
    b.term()
    b.segment("system.buckets.metrics", [{"_id": 1, "control": {"version": 1}}])
    b.eof("system.buckets.metrics")
    events = list(read_archive(io.BytesIO(b.build())))
    batches = [e for e in events if isinstance(e, DocumentBatch)]
    ends = [e for e in events if isinstance(e, NamespaceEnd)]
    assert [e.collection for e in batches] == ["system.buckets.metrics"]
    assert [(e.collection, e.documents) for e in ends] == [("system.buckets.metrics", 1)]


def test_restore_machinery_is_never_backed_up(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    db.real.insert_one({"x": 1})
    db["__daai_restore.deadbeef.c0"].insert_one({"x": 2})
    db["__daai_restore.deadbeef.probe-b"].insert_one({"x": 3})
    db["__daai_restore.journal"].insert_one({"_id": "restore", "state": "loading"})
    names = [m.collection for m in _metadata(dump_bytes(mongo_client, mongo_db_name))]
    assert names == ["real"]


def _metadata(archive: bytes) -> list[Any]:
    from daai_backup.mongo import ArchiveReader

    return list(ArchiveReader(io.BytesIO(archive)).collections)


def _several_collections(client: MongoClient[Any], name: str) -> None:
    """Four collections of 1,200 documents: each is read in three batches of 500."""
    db = client[name]
    for coll in ("a", "b", "c", "d"):
        db[coll].insert_many([{"_id": i, "coll": coll} for i in range(1200)])
    db.create_collection("a_view", viewOn="a", pipeline=[])


def _dump_changing(
    client: MongoClient[Any], name: str, change: Callable[[Database[Any]], None]
) -> tuple[BaseException | None, bytes]:
    """Dump ``name``, calling ``change`` once, after the first batch written."""
    sink = io.BytesIO()
    calls: list[DumpProgress] = []

    def progress(p: DumpProgress) -> None:
        calls.append(p)
        if len(calls) == 1:
            change(client[name])

    try:
        dump_database(client, name, sink, progress=progress)
    except BaseException as exc:
        return exc, sink.getvalue()
    return None, sink.getvalue()


def test_collections_changed_during_the_dump(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    _several_collections(mongo_client, mongo_db_name)

    def change(db: Database[Any]) -> None:
        db.drop_collection("b")
        db.c.rename("c_renamed")
        db.create_collection("new")

    error, partial = _dump_changing(mongo_client, mongo_db_name, change)
    assert isinstance(error, SnapshotChanged)
    assert error.transient  # the task layer retries it
    message = str(error)
    assert "\n" not in message
    assert f"collections of database {mongo_db_name!r} changed" in message
    assert "new: 'c_renamed', 'new'" in message
    assert "gone: 'b', 'c'" in message
    assert "retried" in message
    with pytest.raises(ArchiveCorrupt, match="truncated"):  # never a complete-looking archive
        list(read_archive(io.BytesIO(partial)))
    # the retry sees the new catalog and succeeds
    names = [c.name for c in dump_database(mongo_client, mongo_db_name, io.BytesIO()).collections]
    assert names == ["a", "a_view", "c_renamed", "d", "new"]


def _recreate_view(db: Database[Any]) -> None:
    db.drop_collection("a_view")
    db.create_collection("a_view", viewOn="b", pipeline=[])


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda db: db.d.create_index("coll"), "changed: 'd'"),
        (lambda db: db.d.drop(), "gone: 'd'"),
        (lambda db: db.command("collMod", "d", validator={"n": 1}), "changed: 'd'"),
        (_recreate_view, "changed: 'a_view'"),
        (lambda db: db.d.insert_many([{"_id": i} for i in range(1200, 1300)]), None),
    ],
    ids=["index", "dropped", "options", "view", "documents"],
)
def test_what_counts_as_a_change(
    mongo_client: MongoClient[Any],
    mongo_db_name: str,
    change: Callable[[Database[Any]], None],
    said: str | None,
) -> None:
    _several_collections(mongo_client, mongo_db_name)
    error, _ = _dump_changing(mongo_client, mongo_db_name, change)
    if said is None:  # documents changing is what the snapshot is for
        assert error is None
    else:
        assert isinstance(error, SnapshotChanged)
        assert said in str(error)


def test_a_restore_swapping_during_the_dump(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> None:
    _several_collections(mongo_client, mongo_db_name)
    archive = dump_bytes(mongo_client, mongo_db_name)

    def swap_crashes(db: Database[Any]) -> None:
        from daai_backup.mongo.restore import _SimulatedCrash

        with pytest.raises(_SimulatedCrash):
            restore_database(mongo_client, db.name, io.BytesIO(archive), _fail_at="swap")

    error, _ = _dump_changing(mongo_client, mongo_db_name, swap_crashes)
    assert isinstance(error, SnapshotChanged)
    assert "a restore started swapping collections in" in str(error)


_REPORT = [{"$group": {"_id": "$k", "total": {"$sum": "$v"}}}, {"$out": "daily_report"}]


@pytest.mark.parametrize("mode", ["raise", "record"])
def test_a_collection_refreshed_with_out_during_the_dump(
    mongo_uri: str, mongo_client: MongoClient[Any], mongo_db_name: str, mode: str
) -> None:
    """An app rebuilding a report with ``$out`` (a new uuid each time) while a backup runs."""
    _several_collections(mongo_client, mongo_db_name)
    mongo_client[mongo_db_name].src.insert_many([{"k": i % 7, "v": i} for i in range(70)])
    mongo_client[mongo_db_name].src.aggregate(_REPORT)
    stop, refreshed = threading.Event(), threading.Event()

    def refresher() -> None:  # the app, on its own connection
        with MongoClient(mongo_uri) as app:
            while not stop.is_set():
                app[mongo_db_name].src.aggregate(_REPORT)
                refreshed.set()
                stop.wait(0.02)

    app = threading.Thread(target=refresher, daemon=True)

    def progress(p: DumpProgress) -> None:
        if not app.is_alive() and not stop.is_set():  # first batch: the listing is taken
            app.start()
            assert refreshed.wait(10)  # at least one refresh while the dump runs
        if p.collections_done == p.collections_total - 1:  # last collection: settle
            stop.set()
            app.join(10)

    sink = io.BytesIO()
    try:
        if mode == "raise":
            with pytest.raises(SnapshotChanged, match="changed: 'daily_report'"):
                dump_database(mongo_client, mongo_db_name, sink, progress=progress)
            return
        result = dump_database(
            mongo_client, mongo_db_name, sink, progress=progress, on_catalog_change="record"
        )
    finally:
        stop.set()
        if app.is_alive():
            app.join(10)
    assert result.consistency == "best-effort"
    assert result.catalog_changes == [CatalogChange("daily_report", "changed", ("uuid",))]
    ends = [e for e in read_archive(io.BytesIO(sink.getvalue())) if isinstance(e, NamespaceEnd)]
    assert {e.collection: e.documents for e in ends}["daily_report"] == 7  # complete archive
