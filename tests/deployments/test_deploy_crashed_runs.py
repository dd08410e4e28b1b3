"""A flow run whose process is killed with SIGKILL ends Crashed (heartbeats + automation)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

import cli.main  # noqa: F401  (the CLI process sets the heartbeat variable)
from deployments.crashed_runs import (
    AUTOMATION_NAME,
    CRASH_MESSAGE,
    HEARTBEAT_SECONDS,
    HEARTBEAT_VARIABLE,
    ensure_crash_detection,
)

PROJECT = Path(__file__).resolve().parents[2]

# A process that imports the CLI (as `daai-backup` does) and runs a long flow.
CHILD = textwrap.dedent(
    """
    import cli.main  # sets the heartbeat frequency before Prefect is imported
    import sys, time
    from prefect import flow
    from prefect.runtime import flow_run

    @flow(name="backup")
    def long_backup(tenant: str) -> None:
        print(flow_run.id, flush=True)
        time.sleep(600)

    long_backup(tenant="acme-hr")
    """
)


def test_the_cli_turns_heartbeats_on_at_the_documented_interval() -> None:
    # cli.main was imported above; a developer's own setting is left alone (setdefault).
    assert os.environ.get(HEARTBEAT_VARIABLE) == str(HEARTBEAT_SECONDS)


@pytest.fixture
def short_crash_detection() -> Iterator[None]:
    """No automation before; none after: a 10 s detection left on the shared test server
    marked later tests' busy runs Crashed (a run whose next heartbeat was due in 30 s)."""
    _delete_crash_detection()
    yield
    _delete_crash_detection()


def _delete_crash_detection() -> None:
    with get_client(sync_client=True) as client:
        for automation in client.read_automations_by_name(AUTOMATION_NAME):
            client.delete_automation(automation.id)


def test_killed_run_is_marked_crashed(
    prefect_api_url: str, tmp_path: Path, short_crash_detection: None
) -> None:
    automation_id = ensure_crash_detection(within_seconds=10)
    again = ensure_crash_detection(within_seconds=10)  # replaced, not duplicated
    with get_client(sync_client=True) as client:
        assert [a.id for a in client.read_automations_by_name(AUTOMATION_NAME)] == [again]
    assert again != automation_id

    env = {k: v for k, v in os.environ.items() if k != HEARTBEAT_VARIABLE}
    env["PREFECT_API_URL"] = prefect_api_url
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(PROJECT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        run_id = UUID(child.stdout.readline().strip())
        with get_client(sync_client=True) as client:
            assert client.read_flow_run(run_id).state_name == "Running"
        time.sleep(1)  # the first heartbeat goes out as the run starts
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    deadline = time.monotonic() + 90
    state = None
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            if state is not None and state.name == "Crashed":
                break
            time.sleep(1)
    assert state is not None
    assert state.name == "Crashed", state
    assert state.message == CRASH_MESSAGE
