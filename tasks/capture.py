"""Tasks of change capture: one bounded capture run, and retention of change segments."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task

from daai_backup.capture.retain import retain_changes as engine_retain_changes
from daai_backup.capture.runner import CaptureOutcome, run_capture
from daai_backup.operations import EngineContext
from daai_backup.repository.catalog import BackupEntry
from daai_backup.tenants import Tenant
from tasks.common import DATA_TASK, retry_if_transient


@task(name="capture-changes", cache_policy=DATA_TASK["cache_policy"], persist_result=False)
def capture_changes(ctx: EngineContext, seconds: float) -> CaptureOutcome:
    """Capture the cluster's changes for ``seconds`` (flushes and saves the resume point).

    Not retried here: a failed run keeps its saved resume point and the next scheduled run
    (back to back) resumes from it, losing nothing.
    """
    return run_capture(ctx.settings, seconds=seconds)


@task(
    name="retain-changes",
    task_run_name="retain-changes-{tenant.id}",
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def retain_changes(
    ctx: EngineContext, tenant: Tenant, kept: list[BackupEntry], now: datetime, dry_run: bool
) -> list[str]:
    """Delete the change segments no kept snapshot and no moment in the window needs."""
    doomed = engine_retain_changes(ctx, tenant, kept, now, dry_run=dry_run)
    if doomed:
        get_run_logger().info(
            "tenant %s: %s %d change segment(s) older than the recovery window",
            tenant.id,
            "would delete" if dry_run else "deleted",
            len(doomed),
        )
    return doomed
