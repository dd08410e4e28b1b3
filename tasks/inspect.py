"""Task of a diff: compare two of a tenant's snapshots (one engine call)."""

from __future__ import annotations

from prefect import get_run_logger, task

from daai_backup.inspection import SnapshotDiff, diff_backups
from daai_backup.operations import EngineContext
from daai_backup.tenants import Tenant
from tasks.common import DATA_TASK, retry_if_transient

DIFF_TIMEOUT_SECONDS = 6 * 3600


@task(
    name="diff-snapshots",
    task_run_name="diff-{tenant.id}",
    timeout_seconds=DIFF_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def diff_snapshots(
    ctx: EngineContext, tenant: Tenant, a: str, b: str, actor: str | None, show: int
) -> SnapshotDiff:
    """What differs from backup ``a`` to ``b`` (or the live database), per collection."""
    result = diff_backups(ctx, tenant, a, b, actor=actor, show=show)
    get_run_logger().info("tenant %s: %s", tenant.id, result.summary())
    return result
