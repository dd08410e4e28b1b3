"""The restore flow's ``at``: a moment restored through the whole flow (plan, confirmation,
stage, replay, safety backup, swap) with the real change capture."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from flowkit import OWNER, FlowEnv, files_of, seed

from daai_backup import operations
from flows.restore import restore


def _next_second() -> None:
    time.sleep(1.02 - (time.time() % 1))


def test_restore_flow_to_a_moment(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end with the real capture: capture runs, a backup, changes, a bad bulk delete,
    capture runs again, then the restore flow brings back the second before the delete."""
    from daai_backup.capture.runner import run_capture
    from daai_backup.settings import load_settings

    control = f"ctl_{mongo_db_name}"  # a resume point of this test's own
    monkeypatch.setenv("DAAI_BACKUP_CONTROL_DATABASE", control)
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name, workspace_name="Acme Books", timezone="UTC")
    people = mongo_client[mongo_db_name]["people"]
    settings = load_settings()
    run_capture(settings, once=True)  # capture starts here
    ctx = flow_env.context()
    backup = operations.backup_tenant(ctx, ctx.tenant(tid), "manual").entry.file
    ctx.close()
    _next_second()
    people.delete_one({"_id": 0})
    people.update_one({"_id": 1}, {"$push": {"tags": "x"}})
    moment = datetime.now(UTC)
    _next_second()
    people.delete_many({})  # the bad bulk delete
    run_capture(settings, once=True)  # ...and what happened since is stored

    result = restore(
        tenant=tid,
        at=f"{moment:%Y-%m-%d %H:%M:%S}",
        actor=OWNER,
        confirm_workspace_name="Acme Books",
    )
    assert result["file"] == backup
    assert result["replayed_events"] == 2
    assert sorted(d["_id"] for d in people.find()) == [1, 2, 3, 4]
    assert people.find_one({"_id": 1})["tags"] == ["x"]
    assert result["safety_backup"] in files_of(flow_env, tid)

    # The list (CLI and artifact) says which moments can be restored, in the tenant's zone.
    from flows.common import backup_list_artifact

    ctx = flow_env.context()
    who = ctx.tenant(tid)
    said = operations.point_in_time(ctx, who)
    assert said is not None
    assert said.startswith("recoverable: any second from ")
    assert f"{moment:%Y-%m-%d %H:%M:%S}" < said.split(" to ")[-1]  # the moment is inside
    _, rows, description = backup_list_artifact(ctx, who, operations.list_backups(ctx, who))
    assert f"Point in time: {said}." in description

    # Who restored what is kept with the safety backup: its actor, its note, in the list
    # artifact and in describe; and in the run's result.
    assert result["actor"] == OWNER
    (row,) = [r for r in rows if r["File"] == result["safety_backup"]]
    assert row["Actor"] == OWNER
    assert row["Note"] == f"before restoring {backup} to {moment:%Y-%m-%d %H:%M:%S} UTC"
    from daai_backup.repository.description import header_rows

    described = dict(header_rows(operations.manifest_of(ctx, who, result["safety_backup"]), "UTC"))
    assert described["Actor"] == OWNER
    assert backup in described["Note"]
    ctx.close()
    mongo_client.drop_database(control)
