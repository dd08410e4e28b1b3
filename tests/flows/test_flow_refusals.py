"""Expected refusals end a run Failed in one line, with no traceback in its log; unexpected
errors keep theirs (``flows/refusals.py``). Logs are read back through Prefect's API."""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from flowkit import OWNER, FlowEnv, files_of, run_logs, seed
from prefect import Flow, flow, task

from daai_backup import operations
from daai_backup.errors import (
    ConfirmationMismatch,
    DaaiBackupError,
    InvalidName,
    KeyMissing,
    PermissionDenied,
    QuotaExceeded,
    TransientStorageError,
)
from flows.backup import backup
from flows.refusals import RUN_LOGGERS, RefusalTracebackFilter, one_line_refusals
from flows.restore import restore
from tasks.common import retry_if_transient

FLOW_MODULES = ("backup", "limits", "restore", "retention", "sync", "verify")


def take(env: FlowEnv, tenant_id: str) -> str:
    """A backup made straight through the engine (faster than a flow run)."""
    ctx = env.context()
    try:
        return operations.backup_tenant(ctx, ctx.tenant(tenant_id), "manual").entry.file
    finally:
        ctx.close()


def assert_refused(state: Any, error_type: type[DaaiBackupError]) -> DaaiBackupError:
    """Failed, the message exactly the error's one line, and no traceback in any run log."""
    assert state.is_failed(), state
    error = state.result(raise_on_failure=False)
    assert isinstance(error, error_type), (error, state)
    assert state.message == str(error)
    assert "\n" not in str(error)
    logs = run_logs(state.state_details.flow_run_id)
    assert not [m for m in logs if "Traceback" in m], logs
    assert f"{type(error).__name__}: {error}" in logs  # logged once, at ERROR, in one line
    return error


def test_refused_restores_and_backups_are_one_line(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(
        mongo_db_name,
        workspace_name="Acme Books",
        permissions={OWNER: ["create", "restore"], "clerk@x": ["create"], "auditor@x": []},
    )
    file = take(flow_env, tid)

    def restore_as(actor: str | None, file: str = file, confirm: str = "Acme Books") -> Any:
        return restore(
            tenant=tid, file=file, actor=actor, confirm_workspace_name=confirm, return_state=True
        )

    wrong = assert_refused(restore_as(OWNER, confirm="acme books"), ConfirmationMismatch)
    # It says what to type: the workspace name as the confirmation shows it.
    assert "'acme books' does not match the workspace name" in str(wrong)
    assert 'type the workspace name exactly as shown: "Acme Books"' in str(wrong)
    assert_refused(restore_as("clerk@x"), PermissionDenied)  # create, not restore
    assert_refused(restore_as(OWNER, file="../x"), InvalidName)  # traversal
    assert_refused(backup(tenant=tid, actor=None, return_state=True), PermissionDenied)
    assert_refused(backup(tenant=tid, actor="auditor@x", return_state=True), PermissionDenied)
    assert files_of(flow_env, tid) == [file]  # nothing written, nothing restored

    # Called directly (as a subflow is), the flow raises the refusal itself.
    with pytest.raises(PermissionDenied):
        backup(tenant=tid, actor="auditor@x")


def test_a_missing_key_and_a_full_quota_are_one_line(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=300, blob=10_000)  # ~3 MB, incompressible
    tid = flow_env.add_tenant(mongo_db_name, storage_quota_mb=1)
    assert_refused(backup(tenant=tid, actor=OWNER, return_state=True), QuotaExceeded)
    flow_env.remove_key()
    assert_refused(backup(tenant=tid, actor=OWNER, return_state=True), KeyMissing)
    assert files_of(flow_env, tid) == []


def test_an_unexpected_error_keeps_its_traceback(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name)

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("injected fault: a bug, not a refusal")

    monkeypatch.setattr(operations, "preflight_backup", broken)
    state = backup(tenant=tid, actor=OWNER, return_state=True)
    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), RuntimeError)
    logs = run_logs(state.state_details.flow_run_id)
    tracebacks = [m for m in logs if "Traceback" in m]
    assert tracebacks, logs
    assert "RuntimeError: injected fault" in tracebacks[0]
    assert "in broken" in tracebacks[0]  # the frame that raised it


def test_a_task_that_fails_for_good_logs_its_refusal_without_a_traceback(
    flow_env: FlowEnv,
) -> None:
    """The task engine logs a task whose retries are exhausted with ``exc_info``."""
    calls: list[int] = []

    @task(retries=1, retry_delay_seconds=0, retry_condition_fn=retry_if_transient)
    def unreachable() -> None:
        calls.append(1)
        raise TransientStorageError("storage did not answer: try again later")

    @one_line_refusals
    @flow(name="refusal-from-a-task")
    def uses_storage() -> None:
        unreachable()

    state = uses_storage(return_state=True)
    assert len(calls) == 2  # retried once: transient
    assert_refused(state, TransientStorageError)
    logs = run_logs(state.state_details.flow_run_id)
    assert [m for m in logs if "Retries are exhausted" in m]


def test_every_flow_ends_refusals_in_one_line() -> None:
    flows = [
        obj
        for name in FLOW_MODULES
        for obj in vars(importlib.import_module(f"flows.{name}")).values()
        if isinstance(obj, Flow)
    ]
    assert {f.name for f in flows} >= {"backup", "pre-restore-backup", "restore", "verify"}
    for f in flows:
        assert getattr(f.fn, "one_line_refusals", False), f.name
        assert f.version is not None
    # ... and what Prefect derives from a flow's function is still its own module's
    assert backup.version != restore.version
    for name in RUN_LOGGERS:
        filters = logging.getLogger(name).filters
        assert len([f for f in filters if isinstance(f, RefusalTracebackFilter)]) == 1


def test_a_refused_deployment_run_logs_no_traceback(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    """The UI's and the backend's runs: a deployment's run executed the way a worker does
    (``python -m prefect.engine``), whose engine re-reports the flow's exception."""
    from prefect.client.orchestration import get_client
    from prefect.deployments.runner import EntrypointType
    from prefect.settings import PREFECT_API_URL

    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name, permissions={"viewer@x": ["restore"]})
    deployment = backup.to_deployment(
        name=f"refusal-{tid}", entrypoint_type=EntrypointType.MODULE_PATH
    )
    deployment_id = deployment.apply()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"tenant": tid, "actor": "viewer@x"}
        )
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT__FLOW_RUN_ID": str(run.id),
    }
    done = subprocess.run(
        [sys.executable, "-m", "prefect.engine"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state is not None
    assert state.is_failed()
    assert state.message is not None
    assert state.message.startswith("'viewer@x' may not take a backup")
    logs = run_logs(run.id)
    assert not [m for m in logs if "Traceback" in m], logs
    # The engine's re-report of a refusal that already ended the run is not logged.
    assert not [m for m in logs if "unexpected exception" in m], logs


def test_a_refused_served_run_logs_no_traceback(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    """``make up``'s runs: ``serve`` runs each in a subprocess from a pickled copy of the
    flow (``run_flow_in_subprocess``)."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow_in_subprocess

    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name, permissions={"viewer@x": ["restore"]})
    parameters = {"tenant": tid, "actor": "viewer@x"}
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(backup, parameters=parameters)
    process = run_flow_in_subprocess(backup, flow_run=run, parameters=parameters)
    process.join(120)
    assert process.exitcode == 0
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state is not None
    assert state.is_failed()
    assert (state.message or "").startswith("'viewer@x' may not take a backup")
    logs = run_logs(run.id)
    assert not [m for m in logs if "Traceback" in m], logs
    assert [m for m in logs if m.startswith("PermissionDenied: 'viewer@x' may not")], logs


def _check_filter_on(logger_name: str, error: BaseException) -> logging.LogRecord:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        try:
            raise error
        except BaseException:
            logger.error("failed", exc_info=True, extra={"send_to_api": False})
    finally:
        logger.removeHandler(handler)
    (record,) = seen
    return record


@pytest.mark.parametrize("logger_name", RUN_LOGGERS)
def test_the_filter_drops_only_a_refusals_traceback(logger_name: str) -> None:
    assert _check_filter_on(logger_name, QuotaExceeded("no room")).exc_info is None
    assert _check_filter_on(logger_name, RuntimeError("bug")).exc_info is not None
