"""Restore into a copy through the restore flow, the retention sweep and the CLI."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flowkit import OWNER, FlowEnv, artifact, files_of, seed
from typer.testing import CliRunner

import cli.main  # noqa: F401  (registers every command module)
from cli.app import app
from daai_backup import operations
from daai_backup.errors import InvalidName, PermissionDenied
from flows.restore import restore
from flows.retention import retention_sweep


@pytest.fixture
def copy_name(mongo_client: Any) -> Iterator[str]:
    name = f"copy_{uuid.uuid4().hex[:10]}"
    yield name
    mongo_client.drop_database(name)


def take(env: FlowEnv, tenant_id: str) -> str:
    ctx = env.context()
    try:
        return operations.backup_tenant(ctx, ctx.tenant(tenant_id), "manual").entry.file
    finally:
        ctx.close()


def test_restore_into_a_copy_neither_asks_nor_takes_a_safety_backup(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, copy_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=20)
    tid = flow_env.add_tenant(mongo_db_name, permissions={OWNER: ["restore"], "c@x": ["create"]})
    file = take(flow_env, tid)
    mongo_client[mongo_db_name]["people"].delete_many({"_id": {"$lt": 15}})

    # A confirmation form would wait 5 s and then fail: the run must complete without one.
    state = restore(
        tenant=tid,
        file=file,
        actor=OWNER,
        into=copy_name,
        confirm_timeout_seconds=5,
        return_state=True,
    )

    assert state.is_completed(), state.message
    result = state.result()
    assert (result["into"], result["documents"]) == (copy_name, 20)
    assert mongo_client[copy_name]["people"].count_documents({}) == 20
    assert mongo_client[mongo_db_name]["people"].count_documents({}) == 5  # live untouched
    assert files_of(flow_env, tid) == [file]  # no pre-restore safety backup
    made = artifact(f"restore-copy-{tid}")
    assert made is not None
    assert copy_name in made.data
    assert "Expires" in made.data

    refused = {
        mongo_db_name: (OWNER, InvalidName),
        f"{copy_name}_2": ("c@x", PermissionDenied),
    }
    for into, (actor, error) in refused.items():
        state = restore(tenant=tid, file=file, actor=actor, into=into, return_state=True)
        assert state.is_failed()
        assert isinstance(state.result(raise_on_failure=False), error)
        assert "\n" not in (state.message or "")
    assert mongo_client[mongo_db_name]["people"].count_documents({}) == 5


def test_the_retention_sweep_drops_expired_copies(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, copy_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=3)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    ctx = flow_env.context()
    try:
        long_ago = datetime.now(UTC) - timedelta(days=3, minutes=1)
        operations.restore_copy(ctx, ctx.tenant(tid), file, copy_name, actor=OWNER, now=long_ago)
        fresh = operations.restore_copy(
            ctx, ctx.tenant(tid), file, f"{copy_name}_fresh", actor=OWNER
        )

        state = retention_sweep(return_state=True)

        assert state.is_completed(), state.message
        assert copy_name in state.result()["copies_dropped"]
        assert [c.database for c in operations.list_copies(ctx, ctx.tenant(tid))] == [
            fresh.database
        ]
    finally:
        mongo_client.drop_database(f"{copy_name}_fresh")
        ctx.close()


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_copies_from_the_command_line(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, copy_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=4)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)

    no_confirm = _cli("restore", "--tenant", tid, "--file", file, "--actor", OWNER)
    assert no_confirm.exit_code == 1
    assert "--into NAME" in no_confirm.output

    made = _cli("restore", "--tenant", tid, "--file", file, "--into", copy_name, "--actor", OWNER)
    assert made.exit_code == 0, made.output
    assert f"into the copy {copy_name} (4 documents)" in made.output

    listed = _cli("copies", "--tenant", tid, "--json")
    assert listed.exit_code == 0, listed.output
    assert f'"database": "{copy_name}"' in listed.output
    assert f'"backup": "{file}"' in listed.output

    not_allowed = _cli("copies", "--tenant", tid, "--drop", copy_name, "--actor", "x@y")
    assert not_allowed.exit_code == 1
    assert copy_name in mongo_client.list_database_names()
    dropped = _cli("copies", "--tenant", tid, "--drop", copy_name, "--actor", OWNER)
    assert dropped.exit_code == 0, dropped.output
    assert copy_name not in mongo_client.list_database_names()
    assert "No restore copies" in _cli("copies", "--tenant", tid).output
