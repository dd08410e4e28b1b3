"""A restore as a maintenance window: its events read back from Prefect's API, the flag in
the control database (also after a kill -9), the webhook handshake, the lost writes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flowkit import OWNER, FlowEnv, files_of, run_logs, seed

from daai_backup import maintenance, operations
from daai_backup.errors import ConfirmationMismatch, MaintenanceNotConfirmed, StorageError
from daai_backup.storage import MemoryStorage
from flows.restore import restore

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cr3t-webhook-token-do-not-log"


def take(env: FlowEnv, tenant_id: str) -> str:
    ctx = env.context()
    try:
        return operations.backup_tenant(ctx, ctx.tenant(tenant_id), "manual").entry.file
    finally:
        ctx.close()


def events_of(tenant_id: str, prefix: str, count: int, timeout: float = 20) -> list[Any]:
    """The tenant's events named ``<prefix>...``, oldest first, once ``count`` arrived."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOrder,
        EventResourceFilter,
    )

    query = EventFilter(
        event=EventNameFilter(prefix=[prefix]),
        resource=EventResourceFilter(id=[f"daai-backup.tenant.{tenant_id}"]),
        order=EventOrder.ASC,
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            found = list(client.read_events(filter=query, limit=50).events)
            if len(found) >= count or time.monotonic() > deadline:
                return sorted(found, key=lambda e: e.occurred)
            time.sleep(0.2)


def names(events: list[Any]) -> list[str]:
    return [e.event.removeprefix("daai-backup.restore.") for e in events]


def roles(event: Any) -> dict[str, str]:
    return {r.role: r.id for r in event.related}


def status_of(tenant_id: str) -> dict[str, Any]:
    """The tenant's row of ``daai-backup status --json``."""
    from typer.testing import CliRunner

    import cli.main  # noqa: F401  (registers every command module)
    from cli.app import app

    result = CliRunner().invoke(app, ["status", "--json"], catch_exceptions=False)
    rows = json.loads(result.stdout)["tenants"]
    return next(r for r in rows if r["tenant"] == tenant_id)


def records(env: FlowEnv, tenant_id: str) -> dict[str, maintenance.MaintenanceRecord]:
    ctx = env.context()
    try:
        return maintenance.current_records(ctx.mongo_client, ctx.settings, [tenant_id])
    finally:
        ctx.close()


class Suite:
    """The suite's webhook: a real HTTP server that confirms, refuses or never answers."""

    def __init__(self) -> None:
        self.mode = "confirm"
        self.requests: list[tuple[dict[str, Any], str | None]] = []
        self.received = threading.Event()
        self.hang = threading.Event()
        suite = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                suite.requests.append((body, self.headers.get("Authorization")))
                suite.received.set()
                if suite.mode == "hang":
                    suite.hang.wait(30)
                    return
                status, answer = (
                    (200, {"maintenance": True}) if suite.mode == "confirm" else (503, {})
                )
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/maintenance"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.hang.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def suite(monkeypatch: pytest.MonkeyPatch) -> Iterator[Suite]:
    server = Suite()
    monkeypatch.setenv("DAAI_BACKUP_MAINTENANCE_WEBHOOK_URL", server.url)
    monkeypatch.setenv("DAAI_BACKUP_MAINTENANCE_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("DAAI_BACKUP_MAINTENANCE_WEBHOOK_TIMEOUT_SECONDS", "1")
    yield server
    server.close()


def test_a_completed_restore_tells_the_suite_each_step_and_counts_the_lost_writes(
    flow_env: FlowEnv,
    mongo_client: Any,
    mongo_db_name: str,
    monkeypatch: pytest.MonkeyPatch,
    suite: Suite,
) -> None:
    import flows.restore as restore_flow

    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    mongo_client[mongo_db_name]["people"].insert_one({"_id": 50})  # in the safety backup
    during: dict[str, Any] = {}
    real_safety = restore_flow.pre_restore_backup

    def safety_then_users_write(**kw: Any) -> Any:
        during["flag"] = records(flow_env, tid).get(tid)
        result = real_safety(**kw)
        # The suite's users keep writing after the safety backup: these are lost.
        mongo_client[mongo_db_name]["people"].insert_many([{"_id": 60}, {"_id": 61}])
        mongo_client[mongo_db_name]["people"].delete_one({"_id": 0})
        return result

    monkeypatch.setattr(restore_flow, "pre_restore_backup", safety_then_users_write)
    result = restore(tenant=tid, file=file, actor=OWNER, confirm_workspace_name=f"Workspace {tid}")
    assert result["lost_writes"] == 3
    flag = during["flag"]
    assert (flag.operation, flag.detail, flag.actor) == ("restore", file, OWNER)
    assert flag.expected_end is not None
    assert flag.expected_end > flag.since
    assert records(flow_env, tid) == {}  # the window is over
    # The handshake came before the safety backup, with the token, and said what and who.
    body, auth = suite.requests[0]
    assert auth == f"Bearer {TOKEN}"
    assert (body["tenant"], body["detail"], body["actor"]) == (tid, file, OWNER)

    events = events_of(tid, "daai-backup.restore.", 5)
    assert names(events) == [
        "requested",
        "maintenance-started",
        "swapping",
        "completed",
        "maintenance-ended",
    ]
    for event in events:
        assert event.resource.id == f"daai-backup.tenant.{tid}"
        assert roles(event)["backup"] == f"daai-backup.backup.{tid}.{file}"
        assert roles(event)["actor"] == f"daai-backup.actor.{OWNER}"
        assert roles(event)["flow-run"].startswith("prefect.flow-run.")
    started, swapping, completed, ended = events[1:]
    assert started.payload["handshake"] is True
    assert swapping.payload["lost_writes"] == 3
    assert completed.payload["live_database_changed"] is True
    assert completed.payload["lost_writes"] == 3
    assert completed.payload["safety_backup"] == result["safety_backup"]
    assert ended.payload["outcome"] == "completed"
    for before, after in itertools.pairwise(events):
        assert after.follows == before.id
    assert TOKEN not in json.dumps([e.model_dump(mode="json") for e in events])
    logs = run_logs(completed.payload["flow_run_id"])
    assert not [m for m in logs if TOKEN in m]
    assert [m for m in logs if "3 write(s) to the live database after the safety" in m]
    # Backups say so too: the safety backup is one.
    backup_events = events_of(tid, "daai-backup.backup.", 1)
    assert [e.event for e in backup_events] == ["daai-backup.backup.completed"]
    assert backup_events[0].payload["label"] == "pre-restore"


def test_a_refused_restore_says_so_and_opens_no_window(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=3)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    state = restore(
        tenant=tid, file=file, actor=OWNER, confirm_workspace_name="wrong", return_state=True
    )
    assert isinstance(state.result(raise_on_failure=False), ConfirmationMismatch)
    events = events_of(tid, "daai-backup.restore.", 2)
    assert names(events) == ["requested", "failed"]
    failed = events[1].payload
    assert failed["refused"] is True
    assert failed["live_database_changed"] is False
    assert failed["error"] == "ConfirmationMismatch"
    assert failed["reason"] == state.message


def test_a_failed_safety_backup_ends_the_window_with_the_live_database_unchanged(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(mongo_client, mongo_db_name, docs=3)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    real_put = MemoryStorage.put_stream

    def failing_put(self: MemoryStorage, key: str, source: Any, metadata: Any = None) -> Any:
        if "/pre-restore_" in key:
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
    events = events_of(tid, "daai-backup.restore.", 4)
    assert names(events) == ["requested", "maintenance-started", "failed", "maintenance-ended"]
    failed, ended = events[2].payload, events[3].payload
    assert (failed["refused"], failed["live_database_changed"]) == (False, False)
    assert "disk is full" in failed["reason"]
    assert (ended["outcome"], ended["live_database_changed"]) == ("failed", False)
    assert records(flow_env, tid) == {}
    backup_events = events_of(tid, "daai-backup.backup.", 1)
    assert [e.event for e in backup_events] == ["daai-backup.backup.failed"]


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_no_confirmation_from_the_suite_stops_the_restore_with_nothing_changed(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, suite: Suite, mode: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=3)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    mongo_client[mongo_db_name]["people"].insert_one({"_id": 99})
    suite.mode = mode
    state = restore(
        tenant=tid,
        file=file,
        actor=OWNER,
        confirm_workspace_name=f"Workspace {tid}",
        return_state=True,
    )
    assert isinstance(state.result(raise_on_failure=False), MaintenanceNotConfirmed)
    why = "no answer within 1 s" if mode == "hang" else "HTTP 503"
    assert why in (state.message or "")
    assert "nothing changed" in (state.message or "")
    assert TOKEN not in (state.message or "")
    assert mongo_client[mongo_db_name]["people"].count_documents({}) == 4  # untouched
    assert files_of(flow_env, tid) == [file]  # no safety backup
    assert not [n for n in mongo_client[mongo_db_name].list_collection_names() if "__daai" in n]
    assert records(flow_env, tid) == {}
    events = events_of(tid, "daai-backup.restore.", 4)
    assert names(events) == ["requested", "maintenance-started", "failed", "maintenance-ended"]
    assert events[2].payload["refused"] is True
    assert events[2].payload["error"] == "MaintenanceNotConfirmed"


def test_a_restore_into_a_copy_never_opens_a_window(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, suite: Suite
) -> None:
    seed(mongo_client, mongo_db_name, docs=3)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    into = f"{mongo_db_name}_copy"
    try:
        restore(tenant=tid, file=file, actor=OWNER, into=into)
        events = events_of(tid, "daai-backup.restore.", 2)
        assert names(events) == ["requested", "completed"]
        assert events[1].payload["live_database_changed"] is False
        assert roles(events[1])["copy"] == f"daai-backup.copy.{into}"
        assert suite.requests == []  # no handshake: the workspace stays available
    finally:
        mongo_client.drop_database(into)


def test_the_flag_of_a_killed_restore_is_ignored_once_its_lease_is_gone_and_then_removed(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, suite: Suite
) -> None:
    from prefect.settings import PREFECT_API_URL

    from flows.backup import backup

    # Files on disk: the restore runs in a process of its own.
    flow_env.monkeypatch.setenv("DAAI_BACKUP_STORAGE_URL", (flow_env.tmp / "store").as_uri())
    seed(mongo_client, mongo_db_name, docs=3)
    tid = flow_env.add_tenant(mongo_db_name)
    file = take(flow_env, tid)
    suite.mode = "hang"  # the restore waits in its window for the suite
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "DAAI_BACKUP_MAINTENANCE_WEBHOOK_TIMEOUT_SECONDS": "60",
    }
    code = (
        "from flows.restore import restore\n"
        f"restore(tenant={tid!r}, file={file!r}, actor={OWNER!r}, "
        f"confirm_workspace_name='Workspace {tid}')\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=os.getcwd(),
        env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if not suite.received.wait(60):
            child.kill()
            raise AssertionError(child.communicate()[1].decode()[-3000:])
        flag = records(flow_env, tid)[tid]
        assert (flag.operation, flag.detail) == ("restore", file)
        assert status_of(tid)["maintenance"].startswith(f"restore of {file} by {OWNER}, since")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    # Killed: the record stays until the lease lapses (30 s after its last renewal); the
    # test moves the lease's expiry to now instead of waiting.
    control = mongo_client["daai_backup_control"]
    assert records(flow_env, tid)
    control["leases"].update_one(
        {"_id": f"tenant:{tid}"}, {"$set": {"expires_at": datetime(2000, 1, 1, tzinfo=UTC)}}
    )
    assert records(flow_env, tid) == {}  # stale: no reader shows it
    assert status_of(tid)["maintenance"] is None
    assert control["maintenance"].count_documents({"_id": f"tenant:{tid}"}) == 1
    suite.hang.set()
    backup(tenant=tid, actor=OWNER)  # the tenant's next operation removes it
    assert control["maintenance"].count_documents({"_id": f"tenant:{tid}"}) == 0
