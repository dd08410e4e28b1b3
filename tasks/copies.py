"""Tasks of restore copies: refuse early, load one, drop the expired ones."""

from __future__ import annotations

from prefect import get_run_logger, task

from daai_backup import operations
from daai_backup.mongo.copies import CopyInfo
from daai_backup.operations import CopyOutcome, EngineContext
from daai_backup.repository.catalog import BackupEntry
from daai_backup.tenants import Tenant
from tasks.common import DATA_TASK, report_progress, retry_if_transient
from tasks.restore import CHECK_TIMEOUT_SECONDS, RESTORE_TIMEOUT_SECONDS


@task(
    name="preflight-copy",
    task_run_name="preflight-copy-{tenant.id}",
    timeout_seconds=CHECK_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def preflight_copy(
    ctx: EngineContext,
    tenant: Tenant,
    filename: str,
    into: str,
    actor: str | None,
    replace: bool,
) -> BackupEntry:
    """Refuse a restore into a copy that must not start (permission, name, file, key, target)."""
    entry = operations.preflight_copy(ctx, tenant, filename, into, actor=actor, replace=replace)
    get_run_logger().info(
        "tenant %s: %s can be loaded into the copy %s by %s", tenant.id, filename, into, actor
    )
    return entry


@task(
    name="restore-copy",
    task_run_name="restore-copy-{tenant.id}",
    timeout_seconds=RESTORE_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def restore_copy(
    ctx: EngineContext,
    tenant: Tenant,
    filename: str,
    into: str,
    actor: str | None,
    replace: bool,
) -> CopyOutcome:
    """Load the backup into its own database for inspection (a failed load leaves nothing)."""
    outcome = operations.restore_copy(
        ctx, tenant, filename, into, actor=actor, replace=replace, progress=report_progress
    )
    get_run_logger().info(
        "tenant %s: %s loaded into the copy %s: %d collections, %d documents, expires %s, "
        "in %.1f s",
        tenant.id,
        filename,
        into,
        outcome.collections,
        outcome.documents,
        f"{outcome.expires_at:%Y-%m-%d %H:%M} UTC",
        outcome.duration_s,
    )
    return outcome


@task(
    name="drop-expired-copies",
    timeout_seconds=CHECK_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def drop_expired_copies(ctx: EngineContext) -> list[CopyInfo]:
    """Drop every restore copy that has expired or whose load was killed."""
    dropped = operations.drop_expired_copies(ctx)
    for info in dropped:
        get_run_logger().info(
            "dropped the %s copy %s of tenant %s (%s)",
            "expired" if info.ready else "incomplete",
            info.database,
            info.tenant,
            info.file,
        )
    return dropped
