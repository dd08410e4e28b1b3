"""The CLI commands that run flows: what they print and their exit status."""

from __future__ import annotations

from typing import Any

from flowkit import OWNER, FlowEnv, files_of, seed
from typer.testing import CliRunner

import cli.main  # noqa: F401  (registers every command module)
from cli.app import app


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _last_line(result: Any) -> str:
    """The command's own closing line.

    Prefect's run logs go to the same streams; in-process test runs can also show logging's
    complaints about streams an earlier CliRunner closed. The command's line is the last one
    that is neither.
    """
    ours = [
        line
        for line in str(result.output).splitlines()
        if line.startswith(("error:", "restored ", "kept ", "ok ")) or line.endswith(".gz.enc")
    ]
    return ours[-1] if ours else ""


def test_backup_verify_prune_restore_from_the_command_line(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=20)
    tid = flow_env.add_tenant(mongo_db_name, workspace_name="Acme Books")

    made = _cli("backup", "--tenant", tid, "--actor", OWNER, "--note", "month end")
    assert made.exit_code == 0, made.output
    file = made.stdout.strip().splitlines()[-1]
    assert files_of(flow_env, tid) == [file]

    checked = _cli("verify", "--tenant", tid)
    assert checked.exit_code == 0, checked.output
    assert f"ok   {file}" in checked.output
    one = _cli("verify", file, "--tenant", tid)  # the name as `list` prints it
    assert one.exit_code == 0, one.output
    assert f"ok   {file}" in one.output
    two = _cli("verify", file, "--tenant", tid, "--file", "manual_20990101T000000Z_aaaaaa17.gz.enc")
    assert two.exit_code == 1
    assert _last_line(two).startswith("error: two backups given")

    pruned = _cli("prune", "--tenant", tid, "--dry-run")
    assert pruned.exit_code == 0, pruned.output
    assert "kept 1, would delete 0" in pruned.output

    mongo_client[mongo_db_name]["people"].delete_many({})
    wrong = _cli(
        "restore", "--tenant", tid, "--file", file, "--actor", OWNER, "--confirm", "acme books"
    )
    assert wrong.exit_code == 1
    assert _last_line(wrong).startswith("error:")
    assert "does not match the workspace name" in _last_line(wrong)
    assert mongo_client[mongo_db_name]["people"].count_documents({}) == 0

    done = _cli(
        "restore", "--tenant", tid, "--file", file, "--actor", OWNER, "--confirm", "Acme Books"
    )
    assert done.exit_code == 0, done.output
    assert mongo_client[mongo_db_name]["people"].count_documents({}) == 20
    assert "to go back, restore the safety backup pre-restore_" in _last_line(done)


def test_refusals_are_one_line_with_exit_1(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name)

    nobody = _cli("backup", "--tenant", tid, "--actor", "stranger@example.com")
    assert nobody.exit_code == 1
    assert _last_line(nobody).startswith("error: 'stranger@example.com' may not take a backup")

    unknown = _cli("backup", "--tenant", "ghost", "--actor", OWNER)
    assert unknown.exit_code == 1
    assert _last_line(unknown).startswith("error: unknown tenant 'ghost'")

    flow_env.update_tenant(tid, subscription="suspended")
    skipped = _cli("backup", "--tenant", tid, "--actor", OWNER)
    assert skipped.exit_code == 1
    assert _last_line(skipped).startswith("error: backup skipped:")
    assert "suspended" in _last_line(skipped)
    assert files_of(flow_env, tid) == []

    bad = _cli("verify", "--tenant", tid, "--file", "../../etc/passwd")
    assert bad.exit_code == 1
    assert _last_line(bad).startswith("error:")


def test_runs_started_from_the_cli_belong_to_the_tenants_deployment(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    """Where an operator looks: the tenant's deployment page and its tenant tag."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    from deployments.build import load_flows, tenant_spec, to_runner

    seed(mongo_client, mongo_db_name, docs=10)
    tid = flow_env.add_tenant(mongo_db_name)
    ctx = flow_env.context()
    from datetime import UTC, datetime

    spec = tenant_spec(ctx.tenant(tid), settings=ctx.settings, now=datetime.now(UTC))
    deployment_id = to_runner(spec, load_flows()).apply()
    try:
        made = _cli("backup", "--tenant", tid, "--actor", OWNER)
        assert made.exit_code == 0, made.output
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[spec.name]))
            )
        [run] = [r for r in runs if r.deployment_id == deployment_id]
        assert run.state is not None
        assert run.state.is_completed()
        assert run.parameters["actor"] == OWNER
        assert run.parameters["label"] == "manual"
        assert {f"tenant:{tid}", "label:manual"} <= set(run.tags)
        assert run.name == f"backup-{tid}-manual"  # the flow's own run name, not a random one
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)


def test_a_backup_waiting_for_a_restore_says_so(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    """Say when waiting: the command prints what it waits for and for how long, not a
    silent minute."""
    import threading
    import time

    from flowkit import HeldLease

    seed(mongo_client, mongo_db_name, docs=3)
    tid = flow_env.add_tenant(mongo_db_name)
    from tasks.common import wait_listener

    holder = HeldLease(flow_env.mongo_uri, tid, "restore", detail="manual_x.gz.enc")
    waiting = threading.Event()

    def release_soon() -> None:  # once the backup waits (starting Prefect takes a while)
        waiting.wait(60)
        time.sleep(1.5)
        holder.release()

    releaser = threading.Thread(target=release_soon, daemon=True)
    releaser.start()
    try:
        with wait_listener(lambda holder, waited: waiting.set()):
            made = _cli("backup", "--tenant", tid, "--actor", OWNER)
    finally:
        waiting.set()
        releaser.join(10)
    assert made.exit_code == 0, made.output
    said = [line for line in made.output.splitlines() if line.startswith("waiting for ")]
    assert said, made.output
    assert said[0] == f"waiting for the restore of {tid} to finish (0 s)"
    assert files_of(flow_env, tid) == [made.stdout.strip().splitlines()[-1]]
