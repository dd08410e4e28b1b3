"""Tasks of a restore: check the key can read the backup, finish an interrupted one, restore."""

from __future__ import annotations

from collections.abc import Callable

from prefect import get_run_logger, task

from daai_backup import operations
from daai_backup.operations import EngineContext, RestoreOutcome
from daai_backup.tenants import Tenant
from tasks.common import DATA_TASK, report_progress, retry_if_transient

CHECK_TIMEOUT_SECONDS = 300
RESTORE_TIMEOUT_SECONDS = 12 * 3600
#: A swap by copy (servers whose rename loses options) is O(data), like a restore.
FINISH_SWAP_TIMEOUT_SECONDS = RESTORE_TIMEOUT_SECONDS


@task(
    name="check-key",
    task_run_name="check-key-{tenant.id}",
    timeout_seconds=CHECK_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def check_key_can_read(ctx: EngineContext, tenant: Tenant, filename: str) -> None:
    """Refuse early when the configured keys cannot read the backup (legacy needs none)."""
    operations.check_key_can_read(ctx, tenant, filename)
    get_run_logger().info("tenant %s: the configured keys can read %s", tenant.id, filename)


@task(
    name="finish-interrupted-restore",
    task_run_name="finish-interrupted-restore-{tenant.id}",
    timeout_seconds=FINISH_SWAP_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def finish_interrupted_restore(ctx: EngineContext, tenant: Tenant) -> bool:
    """Finish the swap of an earlier restore that stopped midway (idempotent, so retried)."""
    finished = operations.finish_interrupted_restore(ctx, tenant)
    if finished:
        get_run_logger().warning(
            "tenant %s: finished the interrupted swap of an earlier restore of database %s",
            tenant.id,
            tenant.database,
        )
    return finished


@task(
    name="restore-tenant",
    task_run_name="restore-{tenant.id}",
    timeout_seconds=RESTORE_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def restore_tenant(
    ctx: EngineContext,
    tenant: Tenant,
    filename: str,
    checkpoint: Callable[[], None] | None = None,
) -> RestoreOutcome:
    """Staged restore of one backup into the tenant's database, then the swap.

    ``checkpoint`` (the tenant lease's ``check``) runs right before the swap.
    """
    outcome = operations.restore_tenant(
        ctx, tenant, filename, progress=report_progress, checkpoint=checkpoint
    )
    get_run_logger().info(
        "tenant %s: restored %s: %d collections, %d documents, %d dropped, in %.1f s",
        tenant.id,
        filename,
        outcome.collections,
        outcome.documents,
        len(outcome.dropped),
        outcome.duration_s,
    )
    return outcome
