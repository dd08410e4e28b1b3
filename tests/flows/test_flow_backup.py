"""The backup flow: every refusal branch, the happy path, its artifacts, and the tenant lease."""

from __future__ import annotations

import os
import time
from typing import Any

from flowkit import OWNER, Background, FlowEnv, HeldLease, artifact, files_of, run_log_line, seed

from daai_backup.errors import PermissionDenied
from flows.backup import backup
from tasks.common import progress_listener


def test_manual_backup_writes_one_file_and_publishes_the_list(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name)
    tid = flow_env.add_tenant(mongo_db_name)
    seen: list[int] = []
    with progress_listener(lambda done, expected: seen.append(done)):
        result = backup(tenant=tid, actor=OWNER, note="before the migration")
    assert isinstance(result, dict)
    assert seen  # a CLI's progress bar is fed with byte counts
    assert max(seen) <= result["size_bytes"]
    assert result["documents"] == 50
    assert result["size_bytes"] > 0
    assert files_of(flow_env, tid) == [result["file"]]
    assert result["file"].startswith("manual_")
    table = artifact(f"backups-{tid}")
    assert table is not None
    assert result["file"] in str(table.data)
    # The key's own page in the UI renders the newest description: the list is in it.
    assert f"| {result['file']} | before the migration |" in (table.description or "")
    key = os.environ["BACKUP_ENCRYPTION_KEY"]
    assert key not in str(result)
    assert key not in str(table.data)


def test_unknown_tenant_fails_with_a_clear_message(flow_env: FlowEnv) -> None:
    state = backup(tenant="no-such-tenant", actor=OWNER, return_state=True)
    assert state.is_failed()
    assert "unknown tenant 'no-such-tenant'" in (state.message or "")


def test_suspended_subscription_is_skipped_and_writes_nothing(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name, subscription="suspended")
    state = backup(tenant=tid, label="15-day", return_state=True)
    assert state.is_completed()
    assert state.name == "Skipped"
    assert "suspended" in (state.message or "")
    assert files_of(flow_env, tid) == []


def test_missing_key_fails_at_once_with_a_banner(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name)
    flow_env.remove_key()
    state = backup(tenant=tid, actor=OWNER, return_state=True)
    assert state.is_failed()
    assert "BACKUP_ENCRYPTION_KEY" in (state.message or "")
    banner = artifact(f"backup-key-missing-{tid}")
    assert banner is not None
    assert "BACKUP_ENCRYPTION_KEY" in str(banner.data)
    # the banner's words agree with the product: restores need the key (safety backup)
    assert "Restores wait for the key too" in str(banner.data)
    assert "can still be restored" not in str(banner.data)
    assert files_of(flow_env, tid) == []


def test_the_key_missing_banner_is_replaced_once_backups_succeed(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, monkeypatch: Any
) -> None:
    import os

    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name)
    key = os.environ["BACKUP_ENCRYPTION_KEY"]
    flow_env.remove_key()
    assert backup(tenant=tid, actor=OWNER, return_state=True).is_failed()
    assert str(artifact(f"backup-key-missing-{tid}").data).startswith("## ⚠️")
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", key)
    assert backup(tenant=tid, actor=OWNER, return_state=True).is_completed()
    banner = artifact(f"backup-key-missing-{tid}")
    assert str(banner.data).startswith("## ✅")


def test_manual_backup_needs_create_permission(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(
        mongo_db_name, permissions={"viewer@example.com": ["restore"], OWNER: ["create"]}
    )
    for actor in ("viewer@example.com", None):
        state = backup(tenant=tid, actor=actor, return_state=True)
        assert state.is_failed()
        assert isinstance(state.result(raise_on_failure=False), PermissionDenied)
    assert files_of(flow_env, tid) == []


def test_quota_refuses_with_figures_and_writes_nothing(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=300, blob=10_000)  # ~3 MB of incompressible data
    tid = flow_env.add_tenant(mongo_db_name, storage_quota_mb=1)
    state = backup(tenant=tid, actor=OWNER, return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert "quota" in message
    assert "MB" in message
    assert files_of(flow_env, tid) == []


def test_backup_waits_while_an_operation_outside_prefect_holds_the_tenant_lease(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name)
    holder = HeldLease(
        flow_env.mongo_uri, tid, "restore", detail="manual_x.gz.enc", owner_run="cli restore"
    )
    try:
        run = Background(lambda: backup(tenant=tid, actor=OWNER, return_state=True))
        time.sleep(4)
        assert run.thread.is_alive()
        assert files_of(flow_env, tid) == []
        released = time.time()
    finally:
        holder.release()
    state = run.join(60)
    assert state.is_completed()
    (entry,) = flow_env.context().folder(flow_env.context().tenant(tid)).entries()
    assert entry.taken_at.timestamp() >= released - 1
    line = run_log_line(state.state_details.flow_run_id, "waiting for the restore of")
    assert line.startswith(f"tenant {tid}: waiting for the restore of {tid} (manual_x.gz.enc; ")
    assert f"pid {os.getpid()}, run cli restore) to finish: " in line
    assert run_log_line(state.state_details.flow_run_id, "took the lease after waiting")


def test_the_next_backup_drops_what_a_killed_restore_staged(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    """A restore killed after staging (e.g. during its safety backup) left a full staged copy
    inside the live database; the tenant's next backup removes it and leaves live data alone."""
    from daai_backup import operations

    seed(mongo_client, mongo_db_name, docs=7)
    tid = flow_env.add_tenant(mongo_db_name)
    first = backup(tenant=tid, actor=OWNER)
    assert isinstance(first, dict)
    mongo_client[mongo_db_name].extra.insert_one({"x": 1})
    ctx = flow_env.context()
    operations.stage_restore(ctx, ctx.tenant(tid), first["file"])  # ...then killed
    staged = [n for n in mongo_client[mongo_db_name].list_collection_names() if "__daai" in n]
    assert staged

    second = backup(tenant=tid, actor=OWNER)
    assert isinstance(second, dict)
    names = mongo_client[mongo_db_name].list_collection_names()
    assert not [n for n in names if n.startswith("__daai_restore")]
    assert mongo_client[mongo_db_name].extra.count_documents({}) == 1  # live data untouched


def test_only_the_last_attempt_takes_a_best_effort_backup(flow_env: FlowEnv) -> None:
    """``catalog_change_mode`` as Prefect's retries see it: "raise" until no retry is left."""
    from prefect import flow, task

    from tasks.backup import catalog_change_mode
    from tasks.common import RETRIES

    seen: list[str] = []

    @task(retries=RETRIES, retry_delay_seconds=0)
    def attempt() -> None:
        seen.append(catalog_change_mode())
        if len(seen) <= RETRIES:
            raise RuntimeError("catalog changed")

    @flow
    def run() -> None:
        attempt()

    run()
    assert seen == ["raise"] * RETRIES + ["record"]
