"""Helpers for the flow tests (a module of its own: ``conftest`` is ambiguous on sys.path)."""

from __future__ import annotations

import contextvars
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

OWNER = "owner@example.com"


@dataclass
class FlowEnv:
    """The configuration one test's flows read from the environment."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    mongo_uri: str
    storage_url: str
    tenants: list[dict[str, Any]] = field(default_factory=list)

    def add_tenant(self, database: str, **fields: Any) -> str:
        """Register a tenant (unique id) with ``database``; returns its id."""
        tenant_id = fields.pop("id", None) or f"t-{uuid.uuid4().hex[:10]}"
        entry: dict[str, Any] = {
            "id": tenant_id,
            "workspace_name": f"Workspace {tenant_id}",
            "database": database,
            "permissions": {"owner@example.com": ["create", "restore"]},
            **fields,
        }
        self.tenants = [t for t in self.tenants if t["id"] != tenant_id] + [entry]
        self._write()
        return tenant_id

    def update_tenant(self, tenant_id: str, **fields: Any) -> None:
        for t in self.tenants:
            if t["id"] == tenant_id:
                t.update(fields)
        self._write()

    def _write(self) -> None:
        path = self.tmp / "tenants.yaml"
        path.write_text(yaml.safe_dump({"tenants": self.tenants}), encoding="utf-8")
        self.monkeypatch.setenv("DAAI_BACKUP_TENANTS_FILE", str(path))

    def remove_key(self) -> None:
        self.monkeypatch.delenv("BACKUP_ENCRYPTION_KEY", raising=False)

    def context(self) -> Any:
        from daai_backup.operations import load_context

        return load_context()


class HeldLease:
    """A tenant's lease held by a thread of its own, as an operation outside Prefect would
    (a CLI run with its own temporary Prefect server, a script): a fresh context and its own
    client, so no flow run sees it as its own."""

    def __init__(self, mongo_uri: str, tenant_id: str, operation: str, **kw: Any) -> None:
        from pymongo import MongoClient

        from daai_backup.lease import tenant_lease

        self._held = threading.Event()
        self._release = threading.Event()

        def hold() -> None:
            client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
            try:
                with tenant_lease(client, "daai_backup_control", tenant_id, operation, **kw):
                    self._held.set()
                    self._release.wait(120)
            finally:
                client.close()

        self.thread = threading.Thread(target=hold, daemon=True)
        self.thread.start()
        assert self._held.wait(10), "could not take the lease"

    def release(self) -> None:
        self._release.set()
        self.thread.join(10)


class Background:
    """A flow run in a thread (with the test's Prefect settings), and its final state."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.state: Any = None
        self.error: BaseException | None = None
        context = contextvars.copy_context()

        def run() -> None:
            try:
                self.state = context.run(fn)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 60) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "flow run did not finish"
        if self.error is not None:
            raise self.error
        return self.state


def wait_for_paused(flow_run_name: str, timeout: float = 60, after: int = 0) -> Any:
    """The flow run called ``flow_run_name`` once it is paused (for the ``after+1``-th time)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name]))
            )
            for run in runs:
                pauses = run.state.state_details.pause_key if run.state else None
                if run.state and run.state.is_paused() and int(pauses or 0) > after:
                    return run
            time.sleep(0.2)
    raise AssertionError(f"{flow_run_name} did not pause within {timeout} s")


def run_log_line(flow_run_id: Any, containing: str, timeout: float = 20) -> str:
    """The first log line of the flow run containing ``containing`` (logs reach the API in
    batches, so this polls)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            for log in logs:
                if containing in log.message:
                    return log.message
            time.sleep(0.5)
    raise AssertionError(f"no log line of flow run {flow_run_id} contains {containing!r}")


def run_logs(flow_run_id: Any, timeout: float = 20) -> list[str]:
    """Every log message of the flow run, of its task runs and of its subflows (and theirs),
    read back through Prefect's API once the run's last line ("Finished in state") is in."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
        LogFilterTaskRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # this process's queued lines go to the API now
    flow_run_id = uuid.UUID(str(flow_run_id))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        runs = [flow_run_id]
        parents = [flow_run_id]
        while parents:  # subflows, at any depth
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=parents)
                )
            )
            parents = [child.id for child in children if child.id not in runs]
            runs += parents
        while True:
            tasks = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=runs))
            )
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=runs))
            ) + client.read_logs(
                log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[t.id for t in tasks]))
            )
            messages = [log.message for log in logs]
            finished = [
                log
                for log in logs
                if log.flow_run_id == flow_run_id
                and log.task_run_id is None
                and log.message.startswith("Finished in state")
            ]
            if finished or time.monotonic() > deadline:
                assert finished, f"flow run {flow_run_id} has no final log line: {messages}"
                return messages
            time.sleep(0.5)


def seed(mongo_client: Any, database: str, docs: int = 50, blob: int = 64) -> None:
    """``docs`` documents with ``blob`` random (incompressible) bytes each."""
    mongo_client[database]["people"].insert_many(
        [{"_id": i, "name": f"p{i}", "blob": os.urandom(blob)} for i in range(docs)]
    )


def files_of(env: FlowEnv, tenant_id: str) -> list[str]:
    """The tenant's backup files, newest first, as the engine lists them."""
    ctx = env.context()
    return [e.file for e in ctx.folder(ctx.tenant(tenant_id)).entries()]


def artifact(key: str) -> Any:
    """The latest artifact with ``key``, or None."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
    )

    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key]))
        )
    return found[0] if found else None
