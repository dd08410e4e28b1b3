"""Task of a key rotation: re-encrypt one tenant's files made under previous keys."""

from __future__ import annotations

import time
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import update_progress_artifact

from daai_backup import operations
from daai_backup.operations import EngineContext
from daai_backup.rekey import RekeyOutcome
from daai_backup.tenants import Tenant
from tasks.common import DATA_TASK, retry_if_transient

REKEY_TIMEOUT_SECONDS = 12 * 3600
PROGRESS_EVERY_SECONDS = 2.0


@task(
    name="rekey-tenant",
    task_run_name="rekey-{tenant.id}",
    timeout_seconds=REKEY_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def rekey_tenant(
    ctx: EngineContext,
    tenant: Tenant,
    progress_artifact: UUID | None = None,
    share: tuple[float, float] = (0.0, 100.0),
) -> RekeyOutcome:
    """Re-encrypt the tenant's old-key files (a retry resumes: done files are skipped).

    ``progress_artifact`` moves from ``share[0]`` to ``share[1]`` percent over the tenant's
    files (the flow gives each tenant its slice of the run).
    """
    logger = get_run_logger()
    last = [0.0]
    start, end = share

    def progress(done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            logger.info("tenant %s: %d of %d files checked", tenant.id, done, total)
        now = time.monotonic()
        if progress_artifact is None or total <= 0 or now - last[0] < PROGRESS_EVERY_SECONDS:
            return
        last[0] = now
        update_progress_artifact(progress_artifact, progress=start + (end - start) * done / total)

    outcome = operations.rekey_tenant(ctx, tenant, progress=progress)
    if progress_artifact is not None:
        update_progress_artifact(progress_artifact, progress=end)
    logger.info("%s", outcome.summary())
    return outcome
