"""Task of a key rotation: re-encrypt one tenant's files made under previous keys."""

from __future__ import annotations

from prefect import get_run_logger, task

from daai_backup import operations
from daai_backup.operations import EngineContext
from daai_backup.rekey import RekeyOutcome
from daai_backup.tenants import Tenant
from tasks.common import DATA_TASK, retry_if_transient

REKEY_TIMEOUT_SECONDS = 12 * 3600


@task(
    name="rekey-tenant",
    task_run_name="rekey-{tenant.id}",
    timeout_seconds=REKEY_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def rekey_tenant(ctx: EngineContext, tenant: Tenant) -> RekeyOutcome:
    """Re-encrypt the tenant's old-key files (a retry resumes: done files are skipped)."""
    logger = get_run_logger()

    def progress(done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            logger.info("tenant %s: %d of %d files checked", tenant.id, done, total)

    outcome = operations.rekey_tenant(ctx, tenant, progress=progress)
    logger.info("%s", outcome.summary())
    return outcome
