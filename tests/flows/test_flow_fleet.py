"""The fleet flow on a crafted fleet: real backups (SecantusDB, memory storage), a real failed
backup run in Prefect's history, the ``fleet`` artifact, the backup lists of tenants without
backups, ``daai-backup status``, and the webhook posted once per tenant state change."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from flowkit import FlowEnv, artifact, seed
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from typer.testing import CliRunner

import cli.main  # noqa: F401  (registers every command module)
from cli.app import app
from daai_backup import fleet as rules
from daai_backup.operations import backup_tenant, next_backup
from flows.backup import backup
from flows.fleet import fleet


@pytest.fixture
def databases(mongo_client: Any) -> Iterator[list[str]]:
    """Database names for this test's tenants, dropped afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        mongo_client.drop_database(name)


def _tenant(env: FlowEnv, databases: list[str], mongo_client: Any, **fields: Any) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    databases.append(name)
    seed(mongo_client, name, docs=5, blob=16)
    return env.add_tenant(name, **fields)


def _backup_at(env: FlowEnv, tenant_id: str, when: datetime | None = None) -> str:
    ctx = env.context()
    try:
        return backup_tenant(ctx, ctx.tenant(tenant_id), "24-hour", now=when).entry.file
    finally:
        ctx.close()


def _failed_run(tenant_id: str) -> None:
    """A real failed backup run of the tenant: Backup Now without an actor is refused."""
    state = backup(tenant=tenant_id, label="manual", return_state=True)
    assert state.is_failed()


def _versions(key: str) -> int:
    with get_client(sync_client=True) as client:
        return len(
            client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        )


def _fleet_rows() -> dict[str, dict[str, str]]:
    table = artifact("fleet")
    assert table is not None
    data = json.loads(table.data) if isinstance(table.data, str) else table.data
    return {row["Tenant"]: row for row in data}


def test_fleet_states_artifacts_and_status(
    flow_env: FlowEnv, mongo_client: Any, databases: list[str]
) -> None:
    daily = {"frequency": "24-hour"}
    ok = _tenant(flow_env, databases, mongo_client, **daily)
    late = _tenant(flow_env, databases, mongo_client, **daily, timezone="Europe/Berlin")
    failing = _tenant(flow_env, databases, mongo_client, **daily)
    paused = _tenant(flow_env, databases, mongo_client, subscription="suspended")
    new = _tenant(flow_env, databases, mongo_client)
    _backup_at(flow_env, ok)
    _backup_at(flow_env, failing)
    _backup_at(flow_env, late, datetime.now(UTC) - timedelta(days=3))
    _failed_run(failing)

    result = fleet()
    assert result["states"] == {
        ok: rules.OK,
        late: rules.OVERDUE,
        failing: rules.FAILING,
        paused: rules.SUSPENDED,
        new: rules.WAITING,
    }
    rows = _fleet_rows()
    assert {t: r["State"] for t, r in rows.items() if t in result["states"]} == result["states"]
    assert "Failed" in rows[failing]["Last run"]
    assert "failed at" in rows[failing]["Detail"]
    assert rows[failing]["Detail"].endswith("(--actor on the command line)")  # the bare line
    assert rows[late]["Next run"].endswith(("CET", "CEST"))
    assert rows[paused]["Next run"] == "paused (suspended)"
    summary = artifact("fleet").description
    assert "1 failing" in summary
    assert f"**{late}** overdue" in summary

    # Tenants without backups have a backup list before their first backup, naming the run.
    ctx = flow_env.context()
    at = next_backup(ctx, ctx.tenant(new))
    ctx.close()
    empty = artifact(f"backups-{new}")
    assert empty is not None
    assert json.loads(empty.data) == []
    assert "no backups yet" in empty.description
    assert f"Next scheduled backup: {at:%Y-%m-%d %H:%M %Z}" in empty.description
    assert "paused (subscription suspended)" in artifact(f"backups-{paused}").description
    assert "Newest good:" in artifact(f"backups-{ok}").description
    # A second run publishes nothing new: no version per tenant every 15 minutes.
    versions = {t: _versions(f"backups-{t}") for t in (ok, new, paused)}
    again = fleet()
    assert again["changed"] == {}
    assert {t: _versions(f"backups-{t}") for t in versions} == versions

    # `daai-backup status` with the Prefect server: one record per tenant, failing known.
    shown = CliRunner().invoke(app, ["status", "--json"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.stdout)
    assert {r["tenant"]: r["state"] for r in status["tenants"]} == result["states"]
    assert status["notes"] == []

    # The key goes missing: every active tenant says so at once, before any run fails.
    flow_env.remove_key()
    no_key = fleet()
    assert no_key["states"] == {
        ok: rules.NO_KEY,
        late: rules.NO_KEY,
        failing: rules.NO_KEY,
        paused: rules.SUSPENDED,
        new: rules.NO_KEY,
    }
    assert set(no_key["changed"]) == {ok, late, failing, new}


@pytest.fixture
def listener() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    received: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.put(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


@pytest.fixture
def notification(listener: tuple[str, queue.Queue[dict[str, Any]]]) -> Iterator[Any]:
    from deployments.notify import (
        AUTOMATION_NAME,
        TENANT_AUTOMATION_NAME,
        create_failure_notification,
    )

    create_failure_notification(listener[0])
    yield listener[1]
    with get_client(sync_client=True) as client:
        for name in (AUTOMATION_NAME, TENANT_AUTOMATION_NAME):
            for automation in client.read_automations_by_name(name):
                client.delete_automation(automation.id)


def _fleet_posts(received: queue.Queue[dict[str, Any]], count: int, quiet: float) -> list[Any]:
    """Wait for ``count`` posts of the fleet flow, then ``quiet`` seconds for any extra."""
    posts: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(posts) < count and time.monotonic() < deadline:
        try:
            post = received.get(timeout=0.5)
        except queue.Empty:
            continue
        if post["flow"] == "fleet":
            posts.append(post)
    end = time.monotonic() + quiet
    while time.monotonic() < end:
        try:
            post = received.get(timeout=0.2)
        except queue.Empty:
            continue
        if post["flow"] == "fleet":
            posts.append(post)
    return posts


def test_overdue_and_failing_are_posted_once_per_state_change(
    flow_env: FlowEnv, mongo_client: Any, databases: list[str], notification: Any
) -> None:
    received = notification
    daily = {"frequency": "24-hour"}
    ok = _tenant(flow_env, databases, mongo_client, **daily)
    late = _tenant(flow_env, databases, mongo_client, **daily)
    failing = _tenant(flow_env, databases, mongo_client, **daily)
    _backup_at(flow_env, ok)
    _backup_at(flow_env, failing)
    _backup_at(flow_env, late, datetime.now(UTC) - timedelta(days=2))
    _failed_run(failing)

    first = fleet()
    assert first["changed"] == {ok: rules.OK, late: rules.OVERDUE, failing: rules.FAILING}
    posts = _fleet_posts(received, 2, quiet=1)
    assert {p["tenant"]: p["state"] for p in posts} == {late: "overdue", failing: "failing"}
    assert len(posts) == 2
    [late_post] = [p for p in posts if p["tenant"] == late]
    assert late_post["product"] == "daai-backup"
    assert late_post["label"] == "24-hour"
    assert "no good backup for 2 d" in late_post["message"]

    # Still overdue and failing 15 minutes later: nothing is posted again.
    assert fleet()["changed"] == {}
    assert _fleet_posts(received, 0, quiet=3) == []

    # A change is posted once: the healthy tenant's backup run fails.
    _failed_run(ok)
    assert fleet()["changed"] == {ok: rules.FAILING}
    posts = _fleet_posts(received, 1, quiet=2)
    assert [(p["tenant"], p["state"]) for p in posts] == [(ok, "failing")]


def test_lost_change_history_is_posted_and_a_fresh_backup_is_asked_for(
    flow_env: FlowEnv,
    mongo_client: Any,
    databases: list[str],
    notification: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The capture flow's gap path: a resume the server refuses posts ``capture-gap`` for
    the tenant through the notification automation, and the flow asks for a fresh backup."""
    from daai_backup.capture import state
    from daai_backup.settings import load_settings
    from flows.capture import capture

    control = f"ctl_{uuid.uuid4().hex[:8]}"  # a resume point of this test's own
    monkeypatch.setenv("DAAI_BACKUP_CONTROL_DATABASE", control)
    tid = _tenant(flow_env, databases, mongo_client, frequency="24-hour")
    try:
        capture(minutes=0.01)  # a one-second run: the stream starts, the position is saved
        settings = load_settings()
        point = state.load(mongo_client, settings)
        assert point is not None
        point.resume_token = {"_data": "00" * 20}  # history the server no longer has
        state.save(mongo_client, settings, point)

        result = capture(minutes=0.01)

        assert tid in result["history_lost"]
        assert tid in result["fresh_backups"]  # asked for (no deployment in this harness)
        posts: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while not posts and time.monotonic() < deadline:
            try:
                post = notification.get(timeout=0.5)
            except queue.Empty:
                continue
            if post.get("tenant") == tid and post.get("state") == "capture-gap":
                posts.append(post)
        assert posts, "no capture-gap post"
        assert "change history lost" in posts[0]["message"]
    finally:
        mongo_client.drop_database(control)
