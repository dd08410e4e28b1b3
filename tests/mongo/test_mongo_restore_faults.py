"""Bad input and faults: the live database is unchanged, or a re-run finishes the restore."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from archive_builder import ArchiveBuilder, metadata_string
from mongo_state import db_state, dump_bytes
from pymongo import MongoClient

from daai_backup.errors import ArchiveCorrupt, DatabaseError, TransientDatabaseError
from daai_backup.mongo import (
    RestoreProgress,
    clean_abandoned_restore,
    discard_staged,
    dump_database,
    finish_interrupted_restore,
    interrupted_restore,
    restore_database,
    stage_restore,
    swap_staged,
)
from daai_backup.mongo.restore import _SimulatedCrash

PREFIX = "__daai_restore."


def _user_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith(PREFIX)}


@pytest.fixture
def scenario(
    mongo_client: MongoClient[Any], mongo_db_name: str
) -> tuple[str, bytes, dict[str, Any], dict[str, Any]]:
    """(db, snapshot archive, snapshot state, live state that differs from it)."""
    db = mongo_client[mongo_db_name]
    db.create_collection("checked", validator={"n": {"$type": "int"}})
    db.checked.insert_many([{"n": n} for n in range(20)])
    db.users.insert_many([{"_id": i, "name": f"u{i}"} for i in range(30)])
    db.users.create_index("name", unique=True)
    db.create_collection("named", viewOn="users", pipeline=[{"$project": {"name": 1}}])
    db.gone_later.insert_one({"x": 1})
    archive = dump_bytes(mongo_client, mongo_db_name)
    snapshot = db_state(mongo_client, mongo_db_name)
    db.users.update_many({"_id": {"$lt": 10}}, {"$set": {"changed": True}})
    db.users.delete_many({"_id": {"$gte": 25}})
    db.checked.drop()
    db.gone_later.drop()
    db.extra.insert_many([{"e": i} for i in range(3)])
    live = db_state(mongo_client, mongo_db_name)
    assert live != snapshot
    return mongo_db_name, archive, snapshot, live


def test_corrupt_archive_leaves_live_unchanged(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, _, live = scenario
    data = bytearray(archive)
    data[data.index(b"u27") + 1] ^= 0x20  # a document of the last data namespace
    with pytest.raises(ArchiveCorrupt, match="CRC mismatch"):
        restore_database(mongo_client, name, io.BytesIO(bytes(data)))
    assert db_state(mongo_client, name) == live


def test_truncated_archive_leaves_live_unchanged(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, _, live = scenario
    with pytest.raises(ArchiveCorrupt, match="truncated"):
        restore_database(mongo_client, name, io.BytesIO(archive[: len(archive) - 50]))
    assert db_state(mongo_client, name) == live


def test_collection_name_the_server_refuses(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, _, _, live = scenario
    b = ArchiveBuilder(name).metadata("ok", metadata_string("ok"))
    b.metadata("bad$name", metadata_string("bad$name")).term()
    b.segment("ok", [{"_id": 1}]).eof("ok").segment("bad$name", [{"_id": 1}]).eof("bad$name")
    with pytest.raises(DatabaseError, match=r"bad\$name"):
        restore_database(mongo_client, name, io.BytesIO(b.build()))
    assert db_state(mongo_client, name) == live


def test_reserved_collection_name_is_refused(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, _, _, live = scenario
    b = ArchiveBuilder(name).metadata("system.views", metadata_string("system.views")).term()
    b.segment("system.views", []).eof("system.views")
    with pytest.raises(DatabaseError, match="reserved"):
        restore_database(mongo_client, name, io.BytesIO(b.build()))
    assert db_state(mongo_client, name) == live


def test_duplicate_id_in_archive(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, _, _, live = scenario
    b = ArchiveBuilder(name).metadata("users", metadata_string("users")).term()
    b.segment("users", [{"_id": 1, "a": 1}, {"_id": 2}, {"_id": 1, "a": 2}]).eof("users")
    with pytest.raises(DatabaseError, match="duplicate key"):
        restore_database(mongo_client, name, io.BytesIO(b.build()))
    assert db_state(mongo_client, name) == live


def test_unique_index_violation_in_archive(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, _, _, live = scenario
    indexes = (
        '[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},'
        '{"v":{"$numberInt":"2"},"key":{"name":{"$numberInt":"1"}},"name":"name_1",'
        '"unique":true}]'
    )
    b = ArchiveBuilder(name).metadata("users", metadata_string("users", indexes=indexes)).term()
    b.segment("users", [{"_id": 1, "name": "same"}, {"_id": 2, "name": "same"}]).eof("users")
    with pytest.raises(DatabaseError, match=r"(?i)duplicate key"):
        restore_database(mongo_client, name, io.BytesIO(b.build()))
    assert db_state(mongo_client, name) == live


@pytest.mark.parametrize("step", ["load", "indexes", "verify"])
def test_crash_before_swap_then_rerun(
    mongo_client: MongoClient[Any],
    scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]],
    step: str,
) -> None:
    name, archive, snapshot, live = scenario
    with pytest.raises(_SimulatedCrash):
        restore_database(mongo_client, name, io.BytesIO(archive), _fail_at=step)
    after_crash = db_state(mongo_client, name)
    assert _user_state(after_crash) == live  # nothing live touched
    assert any(k.startswith(PREFIX) for k in after_crash)  # the crash left staging behind
    result = restore_database(mongo_client, name, io.BytesIO(archive))
    assert not result.resumed_interrupted_swap
    assert db_state(mongo_client, name) == snapshot


def test_crash_during_swap_is_finished_by_rerun(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, snapshot, live = scenario
    with pytest.raises(_SimulatedCrash):
        restore_database(mongo_client, name, io.BytesIO(archive), _fail_at="swap")
    half = _user_state(db_state(mongo_client, name))
    assert half not in (live, snapshot)  # really interrupted halfway
    result = restore_database(mongo_client, name, io.BytesIO(archive))
    assert result.resumed_interrupted_swap
    assert db_state(mongo_client, name) == snapshot


def test_torn_state_is_never_backed_up_and_can_be_finished(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, snapshot, _ = scenario
    with pytest.raises(_SimulatedCrash):
        restore_database(mongo_client, name, io.BytesIO(archive), _fail_at="swap")
    torn = db_state(mongo_client, name)
    assert interrupted_restore(mongo_client, name)
    sink = io.BytesIO()
    with pytest.raises(DatabaseError, match="interrupted while swapping") as refused:
        dump_database(mongo_client, name, sink)
    assert "run the same restore again to finish it, then back up" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert sink.getvalue() == b""  # refused before writing anything
    assert db_state(mongo_client, name) == torn  # and changed nothing

    assert finish_interrupted_restore(mongo_client, name)
    assert db_state(mongo_client, name) == snapshot
    assert not interrupted_restore(mongo_client, name)
    assert not finish_interrupted_restore(mongo_client, name)  # idempotent
    again = dump_bytes(mongo_client, name)  # the dump works again, and holds the snapshot
    restore_database(mongo_client, name, io.BytesIO(again))
    assert db_state(mongo_client, name) == snapshot


def test_finishing_when_nothing_is_pending_changes_nothing(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, _, live = scenario
    assert not interrupted_restore(mongo_client, name)
    assert not finish_interrupted_restore(mongo_client, name)
    assert db_state(mongo_client, name) == live
    with pytest.raises(_SimulatedCrash):  # a crashed load: staging left, live untouched
        restore_database(mongo_client, name, io.BytesIO(archive), _fail_at="load")
    left = db_state(mongo_client, name)
    assert not interrupted_restore(mongo_client, name)
    assert not finish_interrupted_restore(mongo_client, name)
    assert db_state(mongo_client, name) == left


def _journal(client: MongoClient[Any], name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = client[name][f"{PREFIX}journal"].find_one({"_id": "restore"})
    return found


def test_crash_after_staging_leaves_live_untouched_and_backups_working(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, snapshot, live = scenario
    with pytest.raises(_SimulatedCrash):
        restore_database(mongo_client, name, io.BytesIO(archive), _fail_at="staged")
    after_crash = db_state(mongo_client, name)
    assert _user_state(after_crash) == live  # nothing live touched
    journal = _journal(mongo_client, name)
    assert journal is not None
    assert journal["state"] == "staged"
    run = journal["run"]
    assert {k for k in after_crash if k.startswith(PREFIX)} == {
        f"{PREFIX}journal",
        f"{PREFIX}{run}.c0",
        f"{PREFIX}{run}.c1",
        f"{PREFIX}{run}.c2",
    }
    # a staged restore is not a torn database: nothing to finish, backups still work
    assert not interrupted_restore(mongo_client, name)
    assert not finish_interrupted_restore(mongo_client, name)
    assert db_state(mongo_client, name) == after_crash
    backup = dump_bytes(mongo_client, name)
    result = restore_database(mongo_client, name, io.BytesIO(archive))  # drops the leftovers
    assert not result.resumed_interrupted_swap
    assert db_state(mongo_client, name) == snapshot
    restore_database(mongo_client, name, io.BytesIO(backup))
    assert db_state(mongo_client, name) == live  # the backup held the live state, no staging


def test_safety_backup_between_stage_and_swap(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, snapshot, live = scenario
    staged = stage_restore(mongo_client, name, io.BytesIO(archive))
    assert _user_state(db_state(mongo_client, name)) == live
    assert sorted(c.name for c in staged.collections) == ["checked", "gone_later", "users"]
    assert staged.views == ["named"]
    # the live database moves on while the safety backup is taken
    db = mongo_client[name]
    db.late.insert_one({"x": 1})
    db.users.insert_one({"_id": 100, "name": "late"})
    latest = _user_state(db_state(mongo_client, name))
    safety = dump_bytes(mongo_client, name)

    result = swap_staged(mongo_client, name, staged)
    assert result.dropped == ["extra", "late"]  # extras as they are at swap time
    assert db_state(mongo_client, name) == snapshot
    assert result.collections == staged.collections
    assert result.total_documents == staged.total_documents
    assert result.started_at == staged.started_at <= result.finished_at
    restore_database(mongo_client, name, io.BytesIO(safety))
    assert db_state(mongo_client, name) == latest  # the safety backup holds the latest state


def test_swap_by_run_id(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, snapshot, _ = scenario
    staged = stage_restore(mongo_client, name, io.BytesIO(archive))
    result = swap_staged(mongo_client, name, staged.run)  # e.g. from another process
    assert db_state(mongo_client, name) == snapshot
    assert result.collections == staged.collections
    assert result.views == staged.views
    assert result.total_documents == staged.total_documents
    assert result.dropped == ["extra"]
    assert abs((result.started_at - staged.started_at).total_seconds()) < 0.001


def test_swap_refuses_a_run_that_is_not_the_staged_one(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, snapshot, live = scenario
    first = stage_restore(mongo_client, name, io.BytesIO(archive))
    second = stage_restore(mongo_client, name, io.BytesIO(archive))  # replaces the first
    with pytest.raises(DatabaseError, match=rf"run {first.run} .* is gone") as refused:
        swap_staged(mongo_client, name, first)
    assert f"holds run {second.run}" in str(refused.value)
    assert "\n" not in str(refused.value)
    with pytest.raises(DatabaseError, match="belongs to database"):
        swap_staged(mongo_client, name + "_other", second)
    assert _user_state(db_state(mongo_client, name)) == live

    swap_staged(mongo_client, name, second)
    assert db_state(mongo_client, name) == snapshot
    with pytest.raises(DatabaseError, match=r"is gone \(the journal holds no restore\)"):
        swap_staged(mongo_client, name, second)  # swapped already: nothing is staged
    assert db_state(mongo_client, name) == snapshot


def test_swap_refuses_when_a_staged_collection_is_gone(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, _, live = scenario
    staged = stage_restore(mongo_client, name, io.BytesIO(archive))
    mongo_client[name].drop_collection(f"{PREFIX}{staged.run}.c1")
    with pytest.raises(DatabaseError, match="lost the staged copy of 'gone_later'"):
        swap_staged(mongo_client, name, staged)
    assert _user_state(db_state(mongo_client, name)) == live


def test_crash_mid_swap_after_separate_staging(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, snapshot, live = scenario
    staged = stage_restore(mongo_client, name, io.BytesIO(archive))
    with pytest.raises(_SimulatedCrash):
        swap_staged(mongo_client, name, staged, _fail_at="swap")
    assert _user_state(db_state(mongo_client, name)) not in (live, snapshot)
    assert interrupted_restore(mongo_client, name)
    with pytest.raises(DatabaseError, match="interrupted while swapping"):
        dump_database(mongo_client, name, io.BytesIO())
    assert finish_interrupted_restore(mongo_client, name)
    assert db_state(mongo_client, name) == snapshot


def test_swapping_the_same_run_again_finishes_an_interrupted_swap(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    """A task retry after a failure mid-swap: the same call finishes it."""
    name, archive, snapshot, live = scenario
    staged = stage_restore(mongo_client, name, io.BytesIO(archive))
    with pytest.raises(_SimulatedCrash):
        swap_staged(mongo_client, name, staged, _fail_at="swap")
    assert _user_state(db_state(mongo_client, name)) not in (live, snapshot)
    result = swap_staged(mongo_client, name, staged)
    assert db_state(mongo_client, name) == snapshot
    assert result.dropped == ["extra"]
    assert not interrupted_restore(mongo_client, name)


_KILL_SCRIPT = textwrap.dedent(
    """
    import io, os, sys, time
    from pymongo import MongoClient
    from daai_backup.mongo import restore_database

    def stall(p):
        if p.phase == "load":
            print("LOADING", flush=True)
            time.sleep(60)

    data = open(sys.argv[3], "rb").read()
    restore_database(MongoClient(sys.argv[1]), sys.argv[2], io.BytesIO(data), progress=stall,
                     batch_documents=5)
    """
)


def test_process_killed_while_loading_then_rerun(
    mongo_uri: str,
    mongo_client: MongoClient[Any],
    scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]],
    tmp_path: Path,
) -> None:
    name, archive, snapshot, live = scenario
    path = tmp_path / "archive.bin"
    path.write_bytes(archive)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, mongo_uri, name, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "LOADING"
    finally:
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait()
    assert _user_state(db_state(mongo_client, name)) == live
    restore_database(mongo_client, name, io.BytesIO(archive))
    assert db_state(mongo_client, name) == snapshot


def test_server_going_away_mid_restore(tmp_path: Path) -> None:
    from secantus import SecantusDBServer

    storage = tempfile.mkdtemp(dir=tmp_path)
    server = SecantusDBServer(storage_path=storage)
    server.start()
    try:
        client: MongoClient[Any] = MongoClient(server.uri, serverSelectionTimeoutMS=1500)
        db = client.tenant
        db.keep.insert_many([{"_id": i} for i in range(10)])
        archive = dump_bytes(client, "tenant")
        snapshot = db_state(client, "tenant")
        db.keep.delete_many({"_id": {"$gte": 5}})
        live = db_state(client, "tenant")

        def stop_server(p: RestoreProgress) -> None:
            if p.phase == "load":
                server.stop()

        with pytest.raises(TransientDatabaseError, match="unreachable"):
            restore_database(client, "tenant", io.BytesIO(archive), progress=stop_server)
        client.close()
    finally:
        server.stop()
    server = SecantusDBServer(storage_path=storage)
    server.start()
    try:
        client = MongoClient(server.uri)
        assert _user_state(db_state(client, "tenant")) == live
        restore_database(client, "tenant", io.BytesIO(archive))
        assert db_state(client, "tenant") == snapshot
        client.close()
    finally:
        server.stop()
    assert os.path.isdir(storage)


def test_discarding_a_staged_restore_leaves_nothing_and_touches_nothing_live(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, _, live = scenario
    first = stage_restore(mongo_client, name, io.BytesIO(archive))
    assert any(k.startswith(PREFIX) for k in db_state(mongo_client, name))
    assert discard_staged(mongo_client, name, "deadbeef") is False  # not the staged run
    assert discard_staged(mongo_client, name, first.run) is True
    assert db_state(mongo_client, name) == live  # no staging, no journal, live untouched
    assert discard_staged(mongo_client, name, first.run) is False  # idempotent


@pytest.mark.parametrize("step", ["load", "indexes", "staged"])
def test_cleaning_an_abandoned_restore_drops_its_staging(
    mongo_client: MongoClient[Any],
    scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]],
    step: str,
) -> None:
    name, archive, _, live = scenario
    with pytest.raises(_SimulatedCrash):  # a killed restore: nothing cleans up after it
        restore_database(mongo_client, name, io.BytesIO(archive), _fail_at=step)
    journal = _journal(mongo_client, name)
    assert journal is not None
    state = journal["state"]
    assert state == ("staged" if step == "staged" else "loading")
    done = clean_abandoned_restore(mongo_client, name)
    assert done == (
        f"restore run {journal['run']} of database {name!r} was abandoned while {state}: "
        "dropped its 3 staging collection(s) and its journal; live data untouched"
    )
    assert db_state(mongo_client, name) == live  # no staging, no journal, live untouched
    assert clean_abandoned_restore(mongo_client, name) is None


def test_cleaning_an_interrupted_swap_finishes_it(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name, archive, snapshot, _ = scenario
    with pytest.raises(_SimulatedCrash):
        restore_database(mongo_client, name, io.BytesIO(archive), _fail_at="swap")
    done = clean_abandoned_restore(mongo_client, name)
    assert done is not None
    assert "interrupted while swapping: finished its swap" in done
    assert db_state(mongo_client, name) == snapshot
    assert clean_abandoned_restore(mongo_client, name) is None


def test_cleaning_with_nothing_abandoned(
    mongo_client: MongoClient[Any], scenario: tuple[str, bytes, dict[str, Any], dict[str, Any]]
) -> None:
    name = scenario[0]
    mongo_client[name]["__daai_restore.orders"].insert_one({"_id": 1})  # a user's, not ours
    live = db_state(mongo_client, name)
    assert clean_abandoned_restore(mongo_client, name) is None
    assert db_state(mongo_client, name) == live
    mongo_client[name]["__daai_restore.0badc0de.probe-b"].insert_one({"_id": 1})  # ours
    assert clean_abandoned_restore(mongo_client, name) == (
        f"dropped 1 leftover collection(s) of an earlier restore of database {name!r}; "
        "live data untouched"
    )
    assert db_state(mongo_client, name) == live
