"""Scale-out for real: deploy to a process work pool, two workers, real backups complete.

The test server is the harness; the workers are ``prefect worker start --pool`` processes
with the settings a production worker gets from its environment (MongoDB URI, storage, the
tenants file and the key), running the real ``backup`` flow against SecantusDB.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from prefect.client.orchestration import get_client

from daai_backup.format.keys import generate_master_key
from daai_backup.settings import Settings
from daai_backup.tenants import TenantRegistry
from deployments.build import operation_specs
from deployments.seed import seed_all
from deployments.sync import ensure_process_pool, sync_deployments

PROJECT = Path(__file__).resolve().parents[2]
POOL = "daai-test-process-pool"
TENANTS = ["pool-hr", "pool-invoicing", "pool-crm", "pool-hr-two"]


@pytest.fixture
def worker_env(
    tmp_path: Path, mongo_uri: str, mongo_client: object, prefect_api_url: str
) -> Iterator[dict[str, str]]:
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(
        yaml.safe_dump(
            {
                "tenants": [
                    {
                        "id": t,
                        "workspace_name": t.title(),
                        "database": f"wp_{t.replace('-', '_')}",
                        "permissions": {"ops@daai.example": ["create", "restore"]},
                    }
                    for t in TENANTS
                ]
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DAAI_"))}
    env.update(
        {
            "PREFECT_API_URL": prefect_api_url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "DAAI_BACKUP_MONGODB_URI": mongo_uri,
            "DAAI_BACKUP_STORAGE_URL": (tmp_path / "storage").as_uri(),
            "DAAI_BACKUP_TENANTS_FILE": str(tenants_file),
            "BACKUP_ENCRYPTION_KEY": generate_master_key(),
        }
    )
    yield env
    for t in TENANTS:
        mongo_client.drop_database(f"wp_{t.replace('-', '_')}")  # type: ignore[attr-defined]


@pytest.mark.e2e
def test_two_workers_run_several_tenants(
    clean_server: str, worker_env: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()
    registry = TenantRegistry.load(Path(worker_env["DAAI_BACKUP_TENANTS_FILE"]))
    seed_all(worker_env["DAAI_BACKUP_MONGODB_URI"], registry.values())
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        tenants_file=Path(worker_env["DAAI_BACKUP_TENANTS_FILE"]),
        storage_url=worker_env["DAAI_BACKUP_STORAGE_URL"],
    )
    ensure_process_pool(POOL)
    report = sync_deployments(
        registry.values(), settings=settings, work_pool=POOL, now=datetime.now(UTC)
    )
    operations = len(operation_specs(settings, work_pool=POOL))
    assert len(report.created) == operations + len(TENANTS)  # the operations + one each

    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--name", name],
            cwd=PROJECT,
            env=worker_env,
            stdout=(tmp_path / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name in ("worker-a", "worker-b")
    ]
    try:
        run_ids: list[UUID] = []
        with get_client(sync_client=True) as client:
            for tenant in TENANTS:
                deployment = client.read_deployment_by_name(f"backup/backup-{tenant}")
                assert deployment.work_pool_name == POOL
                run = client.create_flow_run_from_deployment(
                    deployment.id,
                    parameters={"label": "manual", "actor": "ops@daai.example"},
                )
                run_ids.append(run.id)
            deadline = time.monotonic() + 150
            states: dict[UUID, str] = {}
            messages: dict[UUID, str] = {}  # why a run is not completed (first in the report)
            while time.monotonic() < deadline:
                states = {}
                for run_id in run_ids:
                    state = client.read_flow_run(run_id).state
                    states[run_id] = state.type.value if state is not None else "?"
                    if state is not None:
                        messages[run_id] = f"{state.name}: {state.message}"
                if all(s in ("COMPLETED", "FAILED", "CRASHED") for s in states.values()):
                    break
                time.sleep(1)
        logs = {p.name: p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("*.log")}
        unfinished = [m for r, m in messages.items() if states.get(r) != "COMPLETED"]
        assert set(states.values()) == {"COMPLETED"}, (unfinished, logs)
        for tenant in TENANTS:
            files = list((tmp_path / "storage" / tenant / "db-backups").glob("manual_*.gz.enc"))
            assert len(files) == 1, tenant
        took = time.monotonic() - started
        print(f"work pool: {len(TENANTS)} backups by 2 workers in {took:.1f} s")
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGINT)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
