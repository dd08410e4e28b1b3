"""The production layout for real: a Prefect server on PostgreSQL, a process work pool, workers.

One throw-away PostgreSQL cluster (``deployments.postgres``) and one ``prefect server start``
on it (with its services: the scheduler and the automations) serve the module. The
deployments are registered the way production does (``daai-backup deploy --work-pool``:
``deploy_command``), and two ``prefect worker start --pool`` processes with a production
worker's environment run them against SecantusDB.

- A tenant's **scheduled** backup: the tenant's time zone and id are chosen so that its
  real schedule (01:<offset> local, every day) fires within a minute; Prefect's scheduler
  creates the run and a worker runs it. No run is created by hand.
- A **worker killed** (SIGKILL of the worker and of its flow-run process, as a lost
  machine) while it is writing a backup: the run ends ``Crashed`` (heartbeats + the crash
  automation), nothing partial is listed, and the tenant's next run takes a good backup
  once the dead run's lease has expired (30 s).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pool_helpers import (
    PROJECT,
    Workers,
    database_of,
    prefect_server,
    wait_for_final,
    worker_environment,
    write_tenants_file,
)

from daai_backup.policy.schedule_times import offset_minutes
from daai_backup.settings import Settings
from daai_backup.tenants import TenantRegistry
from deployments.build import load_flows
from deployments.crashed_runs import CRASH_MESSAGE, ensure_crash_detection
from deployments.deploy import deploy_command
from deployments.postgres import PostgresCluster
from deployments.seed import seed_all

#: PostgreSQL, a Prefect server and two workers of its own (two to five minutes on the shared
#: 2-core machine, most of it processes starting): make test-e2e.
#: pytest-timeout counts the module fixture's setup (the server start) in the first test's
#: 300 s: on a loaded machine the setup alone took 168 s, so the budget here is 600 s.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

POOL = "daai-backup"
SPREAD_MINUTES = 60
CONTROL_DATABASE = "daai_pgfleet_control"
CRASH_TENANT = "pg-crash"
WORKER_READ_BYTES_PER_SECOND = 2_000_000
"""The workers reach MongoDB through a throttling proxy: the crash tenant's 10 MB backup
then writes for about five seconds, so the kill lands mid-write."""
CRASH_WITHIN_SECONDS = 40
"""The crash automation's window in this test: more than one heartbeat (30 s), so a healthy
run is never taken for dead; production keeps three heartbeats (90 s)."""


@dataclass(frozen=True)
class Layout:
    api_url: str
    storage: Path
    env: dict[str, str]
    workers: Workers
    scheduled_tenant: str
    due: datetime


def zone_where_it_is_one(at: datetime) -> str:
    """A fixed-offset zone (``Etc/GMT-5`` is UTC+5) whose local hour at ``at`` is 01."""
    hours = (1 - at.hour) % 24
    if hours > 14:
        hours -= 24
    return "Etc/GMT" if hours == 0 else f"Etc/GMT{-hours:+d}"


def tenant_id_with_offset(prefix: str, minute: int) -> str:
    """A tenant id whose stable schedule offset (sha256 mod the spread) is ``minute``."""
    return next(
        f"{prefix}-{i}"
        for i in range(100_000)
        if offset_minutes(f"{prefix}-{i}", SPREAD_MINUTES) == minute
    )


def seed_large(mongo_client: Any, database: str, megabytes: int) -> None:
    """Incompressible documents, one megabyte per collection: the dump reads a collection in
    one batch (up to 16 MB), so several small ones make the archive grow on disk in steps."""
    for n in range(megabytes):
        docs = [{"_id": i, "blob": os.urandom(100_000)} for i in range(10)]
        mongo_client[database][f"attachments_{n:02d}"].insert_many(docs)


@contextmanager
def throttled(uri: str, bytes_per_second: int) -> Iterator[str]:
    """A TCP proxy to the MongoDB server of ``uri`` that sends the server's replies at most
    ``bytes_per_second`` per connection (a slow network); yields the proxy's URI."""
    upstream = urlsplit(uri)
    target = (upstream.hostname or "127.0.0.1", upstream.port or 27017)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket, rate: int | None) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
                if rate:
                    time.sleep(len(chunk) / rate)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(target)
            threading.Thread(target=pump, args=(client, server, None), daemon=True).start()
            args = (server, client, bytes_per_second)
            threading.Thread(target=pump, args=args, daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"mongodb://127.0.0.1:{port}/?directConnection=true"
    finally:
        stop.set()
        listener.close()


@pytest.fixture(scope="module")
def layout(
    tmp_path_factory: pytest.TempPathFactory, mongo_uri: str, mongo_client: Any
) -> Iterator[Layout]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    root = tmp_path_factory.mktemp("production-layout")
    with (
        PostgresCluster.start() as pg,
        prefect_server(  # 15-20 s on a quiet machine; minutes when others load its 2 cores
            root,
            settings={"PREFECT_API_DATABASE_CONNECTION_URL": pg.prefect_url},
            timeout_s=300,
        ) as api_url,
        temporary_settings({PREFECT_API_URL: api_url}),
        throttled(mongo_uri, WORKER_READ_BYTES_PER_SECOND) as slow_mongo_uri,
    ):
        load_flows()  # imported now, so the time below is not spent importing
        seed_large(mongo_client, database_of(CRASH_TENANT), megabytes=10)
        # The scheduled tenant's 01:<offset> local is the next minute at least 20 s away
        # (registering and the scheduler's 5 s loop need less); the crash tenant's is about
        # twelve hours away (never during the test).
        due = (datetime.now(UTC) + timedelta(seconds=79)).replace(second=0, microsecond=0)
        scheduled = tenant_id_with_offset("pg-sched", due.minute)
        far = zone_where_it_is_one(due + timedelta(hours=12))
        tenants_file = write_tenants_file(
            root / "tenants.yaml",
            [
                {"id": scheduled, "frequency": "24-hour", "timezone": zone_where_it_is_one(due)},
                {"id": CRASH_TENANT, "frequency": "24-hour", "timezone": far},
            ],
        )
        storage = root / "storage"
        env = worker_environment(
            api_url=api_url,
            mongo_uri=slow_mongo_uri,
            storage=storage,
            tenants_file=tenants_file,
            DAAI_BACKUP_SCHEDULE_SPREAD_MINUTES=str(SPREAD_MINUTES),
            DAAI_BACKUP_CONTROL_DATABASE=CONTROL_DATABASE,
        )
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            tenants_file=tenants_file,
            storage_url=storage.as_uri(),
            mongodb_uri=mongo_uri,
            schedule_spread_minutes=SPREAD_MINUTES,
        )
        registry = TenantRegistry.load(tenants_file)
        seed_all(mongo_uri, [registry[scheduled]])
        report, created_pool = deploy_command(work_pool=POOL, settings=settings)
        assert created_pool
        assert f"backup/backup-{scheduled}" in report.created
        ensure_crash_detection(within_seconds=CRASH_WITHIN_SECONDS)
        with get_client(sync_client=True) as client:
            # Only the tenants' backups run here: the operations' own schedules (capture
            # back to back, the fleet view, the hourly sync) would share the two cores.
            for deployment in client.read_deployments():
                if not deployment.name.startswith("backup-"):
                    client.pause_deployment(deployment.id)
        pool = Workers(POOL, env, root)
        # One run at a time per worker: the worker killed in the crash test runs nothing
        # but the crash tenant's backup, while the other one takes the scheduled run.
        pool.start("worker-a", "worker-b", limit=1)
        try:
            yield Layout(api_url, storage, env, pool, scheduled, due)
        finally:
            pool.stop()
            for tenant in (scheduled, CRASH_TENANT):
                mongo_client.drop_database(database_of(tenant))
            mongo_client.drop_database(CONTROL_DATABASE)


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie waiting to be reaped does not)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in ("Z", "X"):
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)


def listed(layout: Layout, tenant: str) -> list[dict[str, Any]]:
    """``daai-backup list --tenant T --json``, as an operator runs it."""
    env = {k: v for k, v in layout.env.items() if k != "PREFECT_API_URL"}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "daai-backup"), "list", "--tenant", tenant, "--json"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return list(data["backups"] if isinstance(data, dict) else data)


def test_a_worker_killed_mid_backup(layout: Layout, mongo_client: Any) -> None:
    from prefect.client.orchestration import get_client

    folder = layout.storage / CRASH_TENANT / "db-backups"
    leases = mongo_client[CONTROL_DATABASE]["leases"]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"backup/backup-{CRASH_TENANT}")
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"label": "manual", "actor": "ops@daai.example"}
        )
        # Mid-backup, deterministically: the run holds the tenant's lease and its archive is
        # being written (a temporary file with bytes in it).
        deadline = time.monotonic() + 90
        lease: dict[str, Any] | None = None
        partial: list[Path] = []
        while time.monotonic() < deadline:
            lease = leases.find_one({"_id": f"tenant:{CRASH_TENANT}"})
            partial = [p for p in folder.glob(".tmp-*-manual_*.gz.enc") if size(p) > 0]
            if lease and partial:
                break
            time.sleep(0.1)
        assert lease, (client.read_flow_run(run.id).state, layout.workers.logs())
        assert partial, (client.read_flow_run(run.id).state, layout.workers.logs())
        assert str(lease["owner"]["run"]).endswith(f"id {run.id}")
        flow_pid = int(lease["owner"]["pid"])
        worker = layout.workers.owning(flow_pid)
        assert worker is not None, "the flow-run process was not started by a worker"
        layout.workers.kill(worker, flow_pid)
        killed_at = datetime.now(UTC)
        assert not alive(flow_pid)
        assert client.read_flow_run(run.id).state_name == "Running"  # nobody told Prefect

    # The partial archive is on disk (part of the 10 MB) and is not a backup.
    written = size(partial[0])
    assert 0 < written < 10 * 10**6, written
    assert listed(layout, CRASH_TENANT) == []
    assert not [p for p in folder.iterdir() if not p.name.startswith(".")]

    # The tenant's next run, on the worker that is left: it waits out the dead run's lease.
    with get_client(sync_client=True) as client:
        next_run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"label": "manual", "actor": "ops@daai.example"}
        )
    states, messages = wait_for_final([run.id, next_run.id], timeout_s=120)
    assert states[run.id] == "CRASHED", messages
    assert states[next_run.id] == "COMPLETED", (messages, layout.workers.logs())
    with get_client(sync_client=True) as client:
        crashed = client.read_flow_run(run.id)
        good = client.read_flow_run(next_run.id)
    assert crashed.state is not None
    assert crashed.state.message == CRASH_MESSAGE
    backups = listed(layout, CRASH_TENANT)
    assert len(backups) == 1
    assert not list(folder.glob(".tmp-*"))  # the dead run's leftovers were removed
    assert crashed.state.timestamp is not None
    assert good.start_time is not None
    assert good.end_time is not None
    print(
        f"worker crash: Crashed {(crashed.state.timestamp - killed_at).total_seconds():.0f} s "
        f"after the kill; the next run (created at the kill) started "
        f"{(good.start_time - killed_at).total_seconds():.0f} s and completed "
        f"{(good.end_time - killed_at).total_seconds():.0f} s after it (its backup "
        f"{good.total_run_time.total_seconds():.1f} s); partial file {written:,} bytes"
    )


def test_a_scheduled_backup_runs_on_a_worker(layout: Layout) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"backup/backup-{layout.scheduled_tenant}")
        assert deployment.work_pool_name == POOL
        only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        deadline = time.monotonic() + max(0.0, (layout.due - datetime.now(UTC)).total_seconds())
        runs: list[Any] = []
        while time.monotonic() < deadline + 10:  # the scheduler creates it ahead of time
            runs = [
                r
                for r in client.read_flow_runs(deployment_filter=only)
                if r.expected_start_time == layout.due
            ]
            if runs:
                break
            time.sleep(1)
        assert len(runs) == 1, "the scheduler created no run at the tenant's scheduled time"
        run = runs[0]
    assert run.auto_scheduled  # made by Prefect's scheduler from the deployment's schedule
    assert run.parameters["label"] == "24-hour"  # the schedule's own parameters
    assert run.parameters["actor"] == "scheduler"

    timeout = (layout.due - datetime.now(UTC)).total_seconds() + 90
    states, messages = wait_for_final([run.id], timeout_s=timeout)
    assert states[run.id] == "COMPLETED", (messages, layout.workers.logs())
    with get_client(sync_client=True) as client:
        done = client.read_flow_run(run.id)
    assert done.state_name == "Completed"
    assert done.work_pool_name == POOL
    assert done.start_time is not None
    assert done.start_time >= layout.due - timedelta(seconds=6)  # not before its time
    folder = layout.storage / layout.scheduled_tenant / "db-backups"
    archives = list(folder.glob("24-hour_*.gz.enc"))
    assert len(archives) == 1, sorted(p.name for p in folder.iterdir())
    late = (done.start_time - layout.due).total_seconds()
    print(
        f"scheduled backup: started {late:+.1f} s from its scheduled time, took "
        f"{done.total_run_time.total_seconds():.1f} s"
    )
