"""Every backup is one moment of the tenant's database (issue 16), on a real SecantusDB.

The workload: a writer moves value between two collections in transactions, so the
invariant ``a[i] + b[i] == 200`` holds in the live database at every cluster time. A backup
taken meanwhile must restore to a state where it holds, and must never claim a snapshot
its reads did not share.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pymongo import MongoClient
from test_operations import _ctx

from daai_backup.mongo import dump_database
from daai_backup.operations import backup_tenant, manifest_of, restore_tenant

PAIRS = 1500


def _seed(client: MongoClient[Any], name: str) -> None:
    db = client[name]
    db.a.insert_many([{"_id": i, "v": 100, "pad": "x" * 100} for i in range(PAIRS)])
    db.b.insert_many([{"_id": i, "v": 100, "pad": "y" * 100} for i in range(PAIRS)])


@contextmanager
def _transfers(uri: str, name: str) -> Iterator[list[int]]:
    """A writer moving value from a[i] to b[i] in transactions until the block ends."""
    stop = threading.Event()
    moves = [0]
    client: MongoClient[Any] = MongoClient(uri)

    def run() -> None:
        rng = random.Random(7)
        db = client[name]
        while not stop.is_set():
            i = rng.randrange(PAIRS)
            amount = rng.randint(1, 5)
            with client.start_session() as s, s.start_transaction():
                db.a.update_one({"_id": i}, {"$inc": {"v": -amount}}, session=s)
                db.b.update_one({"_id": i}, {"$inc": {"v": amount}}, session=s)
            moves[0] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        while moves[0] < 5:  # the writer is really running before the block starts
            stop.wait(0.01)
        yield moves
    finally:
        stop.set()
        thread.join()
        client.close()


def _backup_during_transfers(ctx: Any, uri: str, name: str) -> Any:
    """A manual backup of tenant acme taken while the writer runs (labelled consistent).

    With a tiny snapshot window every collection is read in a fresh snapshot, so the dump
    is never one moment as read and its kept change events are what make it whole (with
    the normal window a small dump can finish into the upload pipe before the writer's
    next commit, and is then a true snapshot)."""
    ctx.settings = ctx.settings.model_copy(update={"snapshot_window_seconds": 0.001})
    with _transfers(uri, name) as moves:

        def slow_reader(done: int, expected: int) -> None:  # writes land while it dumps
            seen, deadline = moves[0], time.monotonic() + 2
            while moves[0] == seen and time.monotonic() < deadline:
                time.sleep(0.001)

        outcome = backup_tenant(
            ctx, ctx.tenant("acme"), "manual", actor="ops", progress=slow_reader
        )
    assert outcome.consistency == "consistent"
    return outcome


def _broken_pairs(client: MongoClient[Any], name: str) -> int:
    a = {d["_id"]: d["v"] for d in client[name].a.find({}, {"v": 1})}
    b = {d["_id"]: d["v"] for d in client[name].b.find({}, {"v": 1})}
    assert len(a) == len(b) == PAIRS
    return sum(1 for i in a if a[i] + b[i] != 200)


def test_a_dump_whose_reads_answered_at_other_times_is_not_a_snapshot(
    mongo_client, mongo_uri, mongo_db_name
):
    """The detection: SecantusDB answers later batches at later cluster times under writes."""
    import io

    _seed(mongo_client, mongo_db_name)
    with _transfers(mongo_uri, mongo_db_name) as moves:

        def after_batch(_: object) -> None:  # the writer commits between batches, for sure
            seen, deadline = moves[0], time.monotonic() + 2
            while moves[0] == seen and time.monotonic() < deadline:
                time.sleep(0.001)

        result = dump_database(mongo_client, mongo_db_name, io.BytesIO(), progress=after_batch)
    assert moves[0] > 0
    assert result.torn
    assert result.consistency == "best-effort"
    assert result.cluster_time is None
    assert result.read_times is not None
    assert result.read_times[0] < result.read_times[1]


def test_a_quiet_dump_is_a_snapshot(mongo_client, mongo_db_name):
    import io

    _seed(mongo_client, mongo_db_name)
    result = dump_database(mongo_client, mongo_db_name, io.BytesIO())
    assert not result.torn
    assert result.consistency == "snapshot"
    assert result.cluster_time is not None


@pytest.mark.parametrize("window", [None, 0.001])
def test_backups_during_transfers_restore_to_one_moment(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url, window
):
    """Backups taken while the writer runs restore with every pair whole; with a tiny
    snapshot window every collection is read in a fresh snapshot, and it still holds."""
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    if window is not None:
        ctx.settings = ctx.settings.model_copy(update={"snapshot_window_seconds": window})
    tenant = ctx.tenant("acme")
    _seed(mongo_client, mongo_db_name)
    with _transfers(mongo_uri, mongo_db_name) as moves:

        def slow_reader(done: int, expected: int) -> None:  # writes land while it dumps
            seen, deadline = moves[0], time.monotonic() + 2
            while moves[0] == seen and time.monotonic() < deadline:
                time.sleep(0.001)

        outcome = backup_tenant(
            ctx, tenant, "manual", actor="ops", note="during transfers", progress=slow_reader
        )
        during = moves[0]
    assert during > 0
    manifest = manifest_of(ctx, tenant, outcome.entry.file)
    assert manifest.consistency == outcome.consistency
    assert manifest.actor == "ops"
    if window is None and outcome.consistency == "snapshot":
        # Every read answered at the snapshot's time (the dump can finish into the upload
        # pipe before the writer's next commit): a true snapshot, and labelled as one.
        assert manifest.cluster_time is not None
    else:  # a tiny window: every collection in a fresh snapshot, never one moment as read
        assert outcome.consistency == "consistent"
        assert manifest.cluster_time is None  # the archive alone is not one moment
        assert manifest.consistent_at is not None
        assert manifest.changes is not None
        assert manifest.changes.events > 0
    restore_tenant(ctx, tenant, outcome.entry.file)
    assert _broken_pairs(mongo_client, mongo_db_name) == 0
    assert sum(d["v"] for d in mongo_client[mongo_db_name].a.find()) < 100 * PAIRS


def test_a_dump_longer_than_the_snapshot_window_reads_in_fresh_snapshots(
    mongo_client, mongo_db_name
):
    """Past the window the next collection gets a new snapshot: never labelled a snapshot."""
    import io

    _seed(mongo_client, mongo_db_name)
    result = dump_database(mongo_client, mongo_db_name, io.BytesIO(), snapshot_window=0.0)
    assert result.torn
    assert result.consistency == "best-effort"
    quiet = dump_database(mongo_client, mongo_db_name, io.BytesIO(), snapshot_window=3600)
    assert quiet.consistency == "snapshot"


def test_the_changes_object_is_a_known_kind_deleted_with_its_backup(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    from daai_backup.operations import delete_backup, folder_listing

    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    ctx.settings = ctx.settings.model_copy(update={"snapshot_window_seconds": 0.0})
    tenant = ctx.tenant("acme")
    _seed(mongo_client, mongo_db_name)
    outcome = backup_tenant(ctx, tenant, "manual", actor="ops")
    assert outcome.consistency == "consistent"
    folder = ctx.folder(tenant)
    names = [i.key.rsplit("/", 1)[-1] for i in folder.storage.list("")]
    assert outcome.entry.file + ".changes" in names
    assert folder_listing(ctx, tenant).strays == []
    delete_backup(ctx, tenant, outcome.entry.file)
    names = [i.key.rsplit("/", 1)[-1] for i in folder.storage.list("")]
    assert outcome.entry.file + ".changes" not in names


def test_the_list_and_describe_say_consistency_moment_and_actor(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    from daai_backup.operations import folder_listing
    from daai_backup.repository.catalog import to_artifact_rows, to_json_records
    from daai_backup.repository.description import header_rows

    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    ctx.settings = ctx.settings.model_copy(update={"snapshot_window_seconds": 0.0})
    tenant = ctx.tenant("acme")
    _seed(mongo_client, mongo_db_name)
    outcome = backup_tenant(ctx, tenant, "manual", actor="ops@example.com")
    manifest = manifest_of(ctx, tenant, outcome.entry.file)
    assert manifest.consistent_at is not None
    entries = folder_listing(ctx, tenant).entries
    (record,) = to_json_records(entries, "UTC")
    assert record["consistency"] == "consistent"
    moment = record["consistent_at"]
    assert isinstance(moment, dict)
    assert (moment["t"], moment["i"]) == manifest.consistent_at
    assert record["actor"] == "ops@example.com"
    (row,) = to_artifact_rows(entries, "UTC")
    assert row["Consistency"].startswith("consistent at ")
    assert row["Actor"] == "ops@example.com"
    rows = dict(header_rows(manifest, "UTC"))
    assert rows["Consistent at"].startswith(f"Timestamp({manifest.consistent_at[0]}")


def test_a_copy_of_a_consistent_backup_is_one_moment_too(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    """``restore --into`` replays the backup's change events like a restore: no torn pair."""
    from daai_backup.operations import restore_copy

    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    _seed(mongo_client, mongo_db_name)
    outcome = _backup_during_transfers(ctx, mongo_uri, mongo_db_name)
    into = f"copy_{mongo_db_name}"[:60]
    try:
        copy = restore_copy(ctx, ctx.tenant("acme"), outcome.entry.file, into, actor="ops")
        assert copy.documents == 2 * PAIRS
        assert _broken_pairs(mongo_client, into) == 0
        assert sum(d["v"] for d in mongo_client[into].a.find()) < 100 * PAIRS  # moves in it
    finally:
        mongo_client.drop_database(into)


def test_a_consistent_backup_is_a_base_for_a_moment(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    """Restore to a moment starts from a ``consistent`` backup (real capture): its own change
    events up to ``consistent_at``, then the captured ones after it up to the moment."""
    from datetime import UTC, datetime

    from daai_backup.capture.runner import run_capture
    from daai_backup.operations import plan_moment, restore_to_moment, snapshots

    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    control = f"ctl_{mongo_db_name}"
    ctx.settings = ctx.settings.model_copy(update={"control_database": control})
    tenant = ctx.tenant("acme")
    _seed(mongo_client, mongo_db_name)
    db = mongo_client[mongo_db_name]
    try:
        run_capture(ctx.settings, once=True, registry_loader=lambda: ctx.registry)
        outcome = _backup_during_transfers(ctx, mongo_uri, mongo_db_name)
        manifest = manifest_of(ctx, tenant, outcome.entry.file)
        assert manifest.consistent_at is not None
        (base,) = snapshots(ctx, tenant)
        assert (base.file, (base.at.time, base.at.inc)) == (
            outcome.entry.file,
            manifest.consistent_at,
        )
        time.sleep(1.02 - (time.time() % 1))
        db.a.update_one({"_id": 0}, {"$set": {"v": 150}})
        db.b.update_one({"_id": 0}, {"$set": {"v": 50}})
        moment = datetime.now(UTC)
        time.sleep(1.02 - (time.time() % 1))
        db.a.delete_many({})  # the bad delete
        run_capture(ctx.settings, once=True, registry_loader=lambda: ctx.registry)

        at = f"{moment:%Y-%m-%d %H:%M:%S} UTC"
        plan = plan_moment(ctx, tenant, at)
        assert plan.file == outcome.entry.file
        assert (plan.snapshot.time, plan.snapshot.inc) == manifest.consistent_at
        restore_to_moment(ctx, tenant, at)
        assert _broken_pairs(mongo_client, mongo_db_name) == 0
        assert db.a.find_one({"_id": 0})["v"] == 150
        assert db.b.find_one({"_id": 0})["v"] == 50
    finally:
        mongo_client.drop_database(control)
