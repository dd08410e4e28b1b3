"""Flow tests: one Prefect test server for the session, and tenants pointed at by env vars.

Flows read their configuration the way a worker does (``operations.load_context()`` from
``DAAI_BACKUP_*`` and ``BACKUP_ENCRYPTION_KEY``); the ``flow_env`` fixture writes a tenants
file and sets those variables with ``monkeypatch`` (never a flow parameter). Each test gets
its own tenant id, database and in-memory storage, so tests never share a lock or a backup.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowkit import FlowEnv

from daai_backup.format.keys import generate_master_key


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    """The session's one Prefect test server (see tests/prefect_harness.py), without flow
    heartbeats (their thread's join costs about 1 s per flow run)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect_harness import start as start_prefect_harness

    start_prefect_harness()
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture(scope="session", autouse=True)
def concurrency_limits(prefect_server: None) -> None:
    """Each harness starts empty: create the cluster's backup limit (tenants' leases live in
    MongoDB and need no setup)."""
    from daai_backup.settings import Settings
    from tasks.common import ensure_limits

    ensure_limits(Settings(max_concurrent_backups=4))


@pytest.fixture
def flow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mongo_uri: str) -> FlowEnv:
    # Settings read .env from the working directory: run where there is none.
    monkeypatch.chdir(tmp_path)
    storage_url = f"memory://flows-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("DAAI_BACKUP_STORAGE_URL", storage_url)
    monkeypatch.setenv("DAAI_BACKUP_MONGODB_URI", mongo_uri)
    monkeypatch.setenv("DAAI_BACKUP_TIMEZONE", "Asia/Kolkata")
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", generate_master_key())
    env = FlowEnv(tmp_path, monkeypatch, mongo_uri, storage_url)
    env._write()
    return env
