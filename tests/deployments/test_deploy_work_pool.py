"""Scale-out for real: deploy to a process work pool, two workers, real backups complete.

The test server is the harness; the workers are ``prefect worker start --pool`` processes
with the settings a production worker gets from its environment (MongoDB URI, storage, the
tenants file and the key), running the real ``backup`` flow against SecantusDB. The same
helpers (``pool_helpers``) run the production layout on PostgreSQL
(``test_deploy_production_layout.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
from pool_helpers import database_of, wait_for_final, worker_environment, workers
from pool_helpers import write_tenants_file as write_tenants
from prefect.client.orchestration import get_client

from daai_backup.settings import Settings
from daai_backup.tenants import TenantRegistry
from deployments.build import operation_specs
from deployments.seed import seed_all
from deployments.sync import ensure_process_pool, sync_deployments

POOL = "daai-test-process-pool"
TENANTS = ["pool-hr", "pool-invoicing", "pool-crm", "pool-hr-two"]


@pytest.fixture
def worker_env(
    tmp_path: Path, mongo_uri: str, mongo_client: object, prefect_api_url: str
) -> Iterator[dict[str, str]]:
    yield worker_environment(
        api_url=prefect_api_url,
        mongo_uri=mongo_uri,
        storage=tmp_path / "storage",
        tenants_file=write_tenants(tmp_path / "tenants.yaml", TENANTS),
    )
    for t in TENANTS:
        mongo_client.drop_database(database_of(t))  # type: ignore[attr-defined]


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

    with workers(POOL, worker_env, tmp_path, "worker-a", "worker-b") as pool:
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
        states, messages = wait_for_final(run_ids, timeout_s=150)
        unfinished = [m for r, m in messages.items() if states.get(r) != "COMPLETED"]
        assert set(states.values()) == {"COMPLETED"}, (unfinished, pool.logs())
    for tenant in TENANTS:
        files = list((tmp_path / "storage" / tenant / "db-backups").glob("manual_*.gz.enc"))
        assert len(files) == 1, tenant
    took = time.monotonic() - started
    print(f"work pool: {len(TENANTS)} backups by 2 workers in {took:.1f} s")
