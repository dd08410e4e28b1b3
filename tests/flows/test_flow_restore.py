"""The restore flow: refusals, confirmation by run input, pause timeout, the safety backup."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flowkit import (
    OWNER,
    Background,
    FlowEnv,
    HeldLease,
    artifact,
    files_of,
    run_log_line,
    run_logs,
    seed,
    wait_for_paused,
)

from daai_backup import operations
from daai_backup.errors import (
    ConfirmationMismatch,
    InvalidName,
    ObjectNotFound,
    PermissionDenied,
    StorageError,
)
from daai_backup.repository.names import BackupName
from daai_backup.storage import MemoryStorage
from flows.restore import restore


def take(env: FlowEnv, tenant_id: str, label: str = "manual") -> str:
    """A backup made straight through the engine (faster than a flow run)."""
    ctx = env.context()
    try:
        return operations.backup_tenant(ctx, ctx.tenant(tenant_id), label).entry.file
    finally:
        ctx.close()


def ids(mongo_client: Any, database: str) -> list[int]:
    return sorted(d["_id"] for d in mongo_client[database]["people"].find({}, {"_id": 1}))


def error_of(state: Any) -> BaseException:
    exc = state.result(raise_on_failure=False)
    assert isinstance(exc, BaseException), state
    return exc


def test_restore_refuses_paths_other_tenants_files_and_actors_without_restore(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    other_db = mongo_db_name + "_b"
    seed(mongo_client, mongo_db_name, docs=3)
    seed(mongo_client, other_db, docs=3)
    mine = flow_env.add_tenant(mongo_db_name, permissions={OWNER: ["restore"], "c@x": ["create"]})
    theirs = flow_env.add_tenant(other_db)
    try:
        my_file = take(flow_env, mine)
        their_file = take(flow_env, theirs)
        refused = {
            their_file: ObjectNotFound,
            f"../{theirs}/db-backups/{their_file}": InvalidName,
            "/etc/passwd": InvalidName,
            "manual_20260101T000000Z_deadbeef.gz.enc": ObjectNotFound,
        }
        for file, error in refused.items():
            state = restore(tenant=mine, file=file, actor=OWNER, return_state=True)
            assert isinstance(error_of(state), error), (file, state)
        for actor in ("c@x", None):
            state = restore(tenant=mine, file=my_file, actor=actor, return_state=True)
            assert isinstance(error_of(state), PermissionDenied)
        assert files_of(flow_env, mine) == [my_file]  # no safety backup was taken
    finally:
        mongo_client.drop_database(other_db)


def test_restore_asks_for_the_workspace_name_and_asks_again_after_a_wrong_one(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    from prefect.flow_runs import resume_flow_run
    from prefect.input.actions import read_flow_run_input
    from prefect.input.run_input import keyset_from_paused_state

    seed(mongo_client, mongo_db_name, docs=20)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    people = mongo_client[mongo_db_name]["people"]
    people.delete_many({"_id": {"$lt": 5}})
    people.insert_one({"_id": 1000, "name": "after the backup"})

    run = Background(lambda: restore(tenant=tid, file=file, actor=OWNER, return_state=True))
    paused = wait_for_paused(f"restore-{tid}")
    description: str = read_flow_run_input(  # type: ignore[assignment]
        keyset_from_paused_state(paused.state)["description"], flow_run_id=paused.id
    )
    assert file in description
    assert "will be lost" in description
    assert "encrypted" in description
    assert "IST" in description  # the tenant's time zone (Asia/Kolkata)

    assert "did not match" not in description

    resume_flow_run(paused.id, run_input={"workspace_name": "workspace typo"})
    again = wait_for_paused(f"restore-{tid}", after=int(paused.state.state_details.pause_key))
    assert ids(mongo_client, mongo_db_name)[-1] == 1000  # nothing changed yet
    # The form reopens saying that the attempt did not match, and what to type.
    reopened: str = read_flow_run_input(  # type: ignore[assignment]
        keyset_from_paused_state(again.state)["description"], flow_run_id=again.id
    )
    notice = reopened.split("\n")[0]
    assert "attempt 1 of 3 did not match" in notice
    assert f'type the workspace name exactly as shown: "Workspace {tid}"' in notice
    assert "2 attempts left" in notice
    assert file in reopened  # the preview is still there
    resume_flow_run(again.id, run_input={"workspace_name": f"Workspace {tid}"})
    state = run.join(120)

    assert state.is_completed(), state
    assert ids(mongo_client, mongo_db_name) == list(range(20))
    files = files_of(flow_env, tid)
    safety = [f for f in files if f.startswith("pre-restore_")]
    assert len(safety) == 1
    result = state.result()
    assert result["safety_backup"] == safety[0]
    report = artifact(f"restore-{tid}")
    assert report is not None
    assert safety[0] in str(report.data)


def test_restore_without_a_file_offers_the_tenants_backups_in_a_form(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    from prefect.flow_runs import resume_flow_run
    from prefect.input.actions import read_flow_run_input
    from prefect.input.run_input import keyset_from_paused_state

    seed(mongo_client, mongo_db_name, docs=20)
    tid = flow_env.add_tenant(mongo_db_name)
    ctx = flow_env.context()
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    older = operations.backup_tenant(ctx, ctx.tenant(tid), "manual", now=an_hour_ago).entry.file
    ctx.close()
    mongo_client[mongo_db_name]["people"].insert_one({"_id": 500})
    newer = take(flow_env, tid)
    mongo_client[mongo_db_name]["people"].insert_one({"_id": 501})

    run = Background(lambda: restore(tenant=tid, actor=OWNER, return_state=True))
    paused = wait_for_paused(f"restore-{tid}")
    keyset = keyset_from_paused_state(paused.state)
    schema: dict[str, Any] = read_flow_run_input(  # type: ignore[assignment]
        keyset["schema"], flow_run_id=paused.id
    )
    choices = schema["properties"]["backup"]["enum"]
    assert [c.rsplit(" · ", 1)[1] for c in choices] == [newer, older]  # newest first
    assert all("IST" in c and "🔒 encrypted" in c and " kB" in c for c in choices)

    with pytest.raises(RuntimeError, match="is not one of"):  # the server refuses it ...
        resume_flow_run(paused.id, run_input={"backup": "../other-tenant/x.gz.enc"})
    assert ids(mongo_client, mongo_db_name)[-1] == 501  # ... and nothing happened

    resume_flow_run(paused.id, run_input={"backup": choices[1]})  # the older one
    confirm = wait_for_paused(f"restore-{tid}", after=int(paused.state.state_details.pause_key))
    description: str = read_flow_run_input(  # type: ignore[assignment]
        keyset_from_paused_state(confirm.state)["description"], flow_run_id=confirm.id
    )
    assert older in description  # the familiar confirmation: file, time, encrypted
    resume_flow_run(confirm.id, run_input={"workspace_name": f"Workspace {tid}"})
    state = run.join(120)
    assert state.is_completed(), state
    assert state.result()["file"] == older
    assert ids(mongo_client, mongo_db_name) == list(range(20))


def test_pause_timeout_fails_and_changes_nothing(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    mongo_client[mongo_db_name]["people"].insert_one({"_id": 99})
    state = restore(
        tenant=tid, file=file, actor=OWNER, confirm_timeout_seconds=2, return_state=True
    )
    assert state.is_failed()
    # The server fails a run whose pause timed out with its own message, whatever final
    # state the run proposes; the run's log says why, in one line.
    assert "never resumed" in (state.message or "")
    logs = run_logs(state.state_details.flow_run_id)
    assert not [m for m in logs if "Traceback" in m], logs
    assert [m for m in logs if m.startswith("ConfirmationTimeout: ") and "within 2 s" in m]
    assert ids(mongo_client, mongo_db_name) == [0, 1, 2, 3, 4, 99]
    assert files_of(flow_env, tid) == [file]


def test_confirmation_given_as_parameter_must_match_exactly(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    mongo_client[mongo_db_name]["people"].insert_one({"_id": 99})
    for wrong in (f"workspace {tid}", f"Workspace {tid} ", ""):
        state = restore(
            tenant=tid, file=file, actor=OWNER, confirm_workspace_name=wrong, return_state=True
        )
        assert isinstance(error_of(state), ConfirmationMismatch)
    assert ids(mongo_client, mongo_db_name) == [0, 1, 2, 3, 4, 99]
    state = restore(
        tenant=tid,
        file=file,
        actor=OWNER,
        confirm_workspace_name=f"Workspace {tid}",
        return_state=True,
    )
    assert state.is_completed(), state
    assert ids(mongo_client, mongo_db_name) == [0, 1, 2, 3, 4]


def test_a_failing_safety_backup_stops_the_restore_and_drops_the_staged_copy(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(mongo_client, mongo_db_name, docs=20)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    mongo_client[mongo_db_name]["people"].insert_one({"_id": 9999})

    real_put = MemoryStorage.put_stream

    def failing_put(self: MemoryStorage, key: str, source: Any, metadata: Any = None) -> Any:
        if "/pre-restore_" in key:  # injected fault: the safety backup cannot be stored
            raise StorageError(f"cannot write {key!r}: the disk is full")
        return real_put(self, key, source, metadata)

    monkeypatch.setattr(MemoryStorage, "put_stream", failing_put)
    state = restore(
        tenant=tid,
        file=file,
        actor=OWNER,
        confirm_workspace_name=f"Workspace {tid}",
        return_state=True,
    )
    assert state.is_failed()
    assert "disk is full" in (state.message or "")
    # The safety backup (a subflow) failed; the restore sees its original error.
    assert isinstance(error_of(state), StorageError)
    assert not [m for m in run_logs(state.state_details.flow_run_id) if "Traceback" in m]
    assert ids(mongo_client, mongo_db_name)[-1] == 9999  # the live data is untouched
    assert not [n for n in mongo_client[mongo_db_name].list_collection_names() if "__daai" in n]
    assert files_of(flow_env, tid) == [file]


def test_a_corrupt_backup_is_refused_before_any_safety_backup(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=20)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    ctx = flow_env.context()
    try:
        folder = ctx.folder(ctx.tenant(tid))
        with folder.open(file) as src:
            data = bytearray(src.read())
        data[len(data) // 2] ^= 0x01  # one bit flipped in the middle of the archive
        folder.write(BackupName.parse(file), io.BytesIO(bytes(data)))
    finally:
        ctx.close()
    mongo_client[mongo_db_name]["people"].insert_one({"_id": 9999})
    state = restore(
        tenant=tid,
        file=file,
        actor=OWNER,
        confirm_workspace_name=f"Workspace {tid}",
        return_state=True,
    )
    assert state.is_failed()
    assert "damaged or was altered" in (state.message or "")
    assert ids(mongo_client, mongo_db_name)[-1] == 9999
    assert files_of(flow_env, tid) == [file]  # no safety backup was spent on it


def test_an_emergency_restore_is_not_blocked_by_the_quota(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=150, blob=10_000)  # ~1.5 MB, incompressible
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    mongo_client[mongo_db_name]["people"].insert_one({"_id": 9999})
    flow_env.update_tenant(tid, storage_quota_mb=2)  # 1.5 MB used + 1.5 MB more > 2 MB
    state = restore(
        tenant=tid,
        file=file,
        actor=OWNER,
        confirm_workspace_name=f"Workspace {tid}",
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert 9999 not in ids(mongo_client, mongo_db_name)
    safety = [f for f in files_of(flow_env, tid) if f.startswith("pre-restore_")]
    assert len(safety) == 1  # taken, over the quota, and reported by `usage`


def contents(mongo_client: Any, database: str) -> dict[str, list[Any]]:
    """Every user collection's documents, by name (the restore's own collections left out)."""
    db = mongo_client[database]
    return {
        name: list(db[name].find({}, sort=[("_id", 1)]))
        for name in sorted(db.list_collection_names())
        if not name.startswith("__daai_restore.")
    }


def test_a_restore_torn_mid_swap_is_finished_before_the_safety_backup(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    from daai_backup.mongo import dump_database, interrupted_restore, restore_database
    from daai_backup.mongo.restore import _SimulatedCrash

    db = mongo_client[mongo_db_name]
    seed(mongo_client, mongo_db_name, docs=10)
    db["orders"].insert_many([{"_id": i, "v": "a"} for i in range(5)])
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    backed_up = contents(mongo_client, mongo_db_name)

    # The earlier restore: snapshot `earlier`, crashed after swapping one collection in.
    db["orders"].update_many({}, {"$set": {"v": "earlier"}})
    db["people"].delete_many({"_id": {"$gte": 6}})
    earlier_archive = io.BytesIO()
    dump_database(mongo_client, mongo_db_name, earlier_archive)
    earlier = contents(mongo_client, mongo_db_name)
    db["orders"].update_many({}, {"$set": {"v": "live"}})
    db["people"].insert_one({"_id": 500, "name": "live"})
    live = contents(mongo_client, mongo_db_name)
    earlier_archive.seek(0)
    with pytest.raises(_SimulatedCrash):
        restore_database(mongo_client, mongo_db_name, earlier_archive, _fail_at="swap")
    torn = contents(mongo_client, mongo_db_name)
    assert interrupted_restore(mongo_client, mongo_db_name)
    assert torn not in (earlier, live)  # really torn

    state = restore(
        tenant=tid,
        file=file,
        actor=OWNER,
        confirm_workspace_name=f"Workspace {tid}",
        return_state=True,
    )
    assert state.is_completed(), state
    assert contents(mongo_client, mongo_db_name) == backed_up
    assert not interrupted_restore(mongo_client, mongo_db_name)

    safety = [f for f in files_of(flow_env, tid) if f.startswith("pre-restore_")]
    assert len(safety) == 1
    ctx = flow_env.context()
    try:
        operations.restore_tenant(ctx, ctx.tenant(tid), safety[0])
    finally:
        ctx.close()
    assert contents(mongo_client, mongo_db_name) == earlier  # the earlier restore, whole


def test_restore_waits_while_an_operation_outside_prefect_holds_the_tenant_lease(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    import time

    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    mongo_client[mongo_db_name]["people"].insert_one({"_id": 99})
    holder = HeldLease(flow_env.mongo_uri, tid, "backup", detail="manual backup", owner_run="s")
    try:
        run = Background(
            lambda: restore(
                tenant=tid,
                file=file,
                actor=OWNER,
                confirm_workspace_name=f"Workspace {tid}",
                return_state=True,
            )
        )
        time.sleep(3)
        assert run.thread.is_alive()
        assert files_of(flow_env, tid) == [file]  # no safety backup yet
        assert ids(mongo_client, mongo_db_name) == [0, 1, 2, 3, 4, 99]
    finally:
        holder.release()
    state = run.join(60)
    assert state.is_completed(), state
    assert ids(mongo_client, mongo_db_name) == [0, 1, 2, 3, 4]
    # The safety backup (a subflow) ran inside the restore's lease without waiting on it.
    assert len([f for f in files_of(flow_env, tid) if f.startswith("pre-restore_")]) == 1
    line = run_log_line(state.state_details.flow_run_id, "waiting for the backup of")
    assert f"waiting for the backup of {tid} (manual backup; started " in line
