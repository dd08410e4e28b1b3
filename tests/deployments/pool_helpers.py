"""Helpers of the work-pool tests: a tenants file, a worker's environment, worker processes,
waiting for runs, and a ``prefect server start`` of a test's own.

Shared by ``test_deploy_work_pool.py`` (the harness's server) and
``test_deploy_production_layout.py`` (a server on PostgreSQL). Workers are real
``prefect worker start --pool`` processes, each in a session of its own, so that
``os.killpg`` stops a worker together with the flow-run processes it started (a lost worker
machine).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

from daai_backup.format.keys import generate_master_key
from deployments.crashed_runs import heartbeat_environment

PROJECT = Path(__file__).resolve().parents[2]
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def database_of(tenant: str) -> str:
    return f"wp_{tenant.replace('-', '_')}"


def write_tenants_file(path: Path, tenants: Iterable[str | Mapping[str, Any]]) -> Path:
    """A registry of ``tenants`` (ids, or dicts of extra fields with an ``id``) whose
    ``ops@daai.example`` may back up and restore."""
    entries = []
    for item in tenants:
        fields = {"id": item} if isinstance(item, str) else dict(item)
        tenant = str(fields["id"])
        entries.append(
            {
                "workspace_name": tenant.title(),
                "database": database_of(tenant),
                "permissions": {"ops@daai.example": ["create", "restore"]},
                **fields,
            }
        )
    path.write_text(yaml.safe_dump({"tenants": entries}))
    return path


def worker_environment(
    *, api_url: str, mongo_uri: str, storage: Path, tenants_file: Path, **extra: str
) -> dict[str, str]:
    """What a production worker gets from its environment (docs/operations.md): the API, the
    tenants' cluster, the storage, the registry, the key, heartbeats on; nothing from the
    test process's own Prefect or daai-backup settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DAAI_"))}
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "DAAI_BACKUP_MONGODB_URI": mongo_uri,
            "DAAI_BACKUP_STORAGE_URL": storage.as_uri(),
            "DAAI_BACKUP_TENANTS_FILE": str(tenants_file),
            "BACKUP_ENCRYPTION_KEY": generate_master_key(),
            **heartbeat_environment(),
            **extra,
        }
    )
    return env


class Workers:
    """``prefect worker start --pool`` processes, by name; logs in ``log_dir``."""

    def __init__(self, pool: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.pool = pool
        self.env = dict(env)
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *names: str, limit: int | None = None) -> None:
        """Start workers ``names``; ``limit``: flow runs each runs at once (``--limit``)."""
        for name in names:
            command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", self.pool]
            if limit is not None:
                command += ["--limit", str(limit)]
            self.processes[name] = subprocess.Popen(
                [*command, "--name", name],
                cwd=PROJECT,
                env=self.env,
                stdout=(self.log_dir / f"{name}.log").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def owning(self, pid: int) -> str | None:
        """The worker that started process ``pid`` (its parent, or a parent's parent)."""
        by_pid = {p.pid: n for n, p in self.processes.items()}
        while pid > 1:
            if pid in by_pid:
                return by_pid[pid]
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return None
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent's pid
        return None

    def kill(self, name: str, *flow_pids: int) -> None:
        """SIGKILL the worker and its flow-run processes ``flow_pids``, each in a session of
        its own (Prefect's process worker isolates them): a machine lost."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        for pid in flow_pids:
            with contextlib.suppress(ProcessLookupError):  # gone with the worker
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        process.wait()

    def logs(self) -> dict[str, str]:
        return {p.name: p.read_text(errors="replace")[-3000:] for p in self.log_dir.glob("*.log")}

    def stop(self) -> None:
        for process in self.processes.values():
            os.killpg(process.pid, signal.SIGINT)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


@contextmanager
def workers(pool: str, env: Mapping[str, str], log_dir: Path, *names: str) -> Iterator[Workers]:
    group = Workers(pool, env, log_dir)
    try:
        group.start(*names)
        yield group
    finally:
        group.stop()


def wait_for_final(
    run_ids: Iterable[UUID], *, timeout_s: float
) -> tuple[dict[UUID, str], dict[UUID, str]]:
    """Poll until every run is final or ``timeout_s`` passes: state types and messages."""
    from prefect.client.orchestration import get_client

    ids = list(run_ids)
    states: dict[UUID, str] = {}
    messages: dict[UUID, str] = {}
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            for run_id in ids:
                state = client.read_flow_run(run_id).state
                states[run_id] = state.type.value if state is not None else "?"
                if state is not None:
                    messages[run_id] = f"{state.name}: {state.message}"
            if all(s in FINAL for s in states.values()) or time.monotonic() > deadline:
                return states, messages
            time.sleep(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def prefect_server(
    home: Path, *, settings: Mapping[str, str] | None = None, timeout_s: float = 120
) -> Iterator[str]:
    """``prefect server start`` (with its services: scheduler, triggers) on a free port, its
    own ``PREFECT_HOME`` and ``settings`` (e.g. the database URL); yields the API URL."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        **(settings or {}),
    }
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    tail = (home / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"the Prefect server did not start: {tail}") from None
                time.sleep(0.5)
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
