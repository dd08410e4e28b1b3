"""Task of a restore drill: read one backup whole and check it."""

from __future__ import annotations

from prefect import get_run_logger, task

from daai_backup import operations
from daai_backup.operations import EngineContext, VerifyOutcome
from daai_backup.repository.catalog import human_size
from daai_backup.tenants import Tenant
from tasks.common import DATA_TASK, retry_if_transient

VERIFY_TIMEOUT_SECONDS = 6 * 3600


@task(
    name="verify-backup",
    task_run_name="verify-{tenant.id}",
    timeout_seconds=VERIFY_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def verify_backup(ctx: EngineContext, tenant: Tenant, filename: str) -> VerifyOutcome:
    """Read one backup whole (every tag and CRC checked) and record the result beside it."""
    outcome = operations.verify_backup(ctx, tenant, filename)
    get_run_logger().info(
        "tenant %s: %s is good: %d namespaces, %d documents, %s, in %.1f s",
        tenant.id,
        filename,
        outcome.namespaces,
        outcome.documents,
        human_size(outcome.compressed_bytes),
        outcome.duration_s,
    )
    return outcome
