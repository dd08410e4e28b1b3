"""Tasks of a backup: refuse early, then take it."""

from __future__ import annotations

import time
from typing import Literal
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import update_progress_artifact

from daai_backup import operations
from daai_backup.operations import BackupOutcome, EngineContext
from daai_backup.repository.catalog import human_size
from daai_backup.tenants import Tenant
from tasks.common import DATA_TASK, RETRIES, report_progress, retry_if_transient

BACKUP_TIMEOUT_SECONDS = 12 * 3600
PREFLIGHT_TIMEOUT_SECONDS = 300
PROGRESS_EVERY_SECONDS = 2.0


@task(
    name="preflight-backup",
    task_run_name="preflight-{tenant.id}-{label}",
    timeout_seconds=PREFLIGHT_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def preflight_backup(
    ctx: EngineContext, tenant: Tenant, label: str, actor: str | None, note: str | None
) -> int:
    """Refuse a backup that must not run (suspended, key, permission, quota); expected bytes."""
    expected = operations.preflight_backup(ctx, tenant, label, actor=actor, note=note)
    get_run_logger().info(
        "tenant %s: %s backup may run, about %s expected", tenant.id, label, human_size(expected)
    )
    return expected


def catalog_change_mode() -> Literal["raise", "record"]:
    """ "raise" on every attempt but the task's last, which takes a best-effort backup.

    A collection created, dropped or altered during a backup (an ``$out`` refresh gives a new
    uuid) makes the attempt fail as transient, and a retry usually gets a clean snapshot. An
    app that changes its catalog all the time would fail every attempt; the last one records
    the changes instead, so such a tenant gets a best-effort backup, never none.
    """
    from prefect.runtime import task_run

    return "record" if task_run.run_count > RETRIES else "raise"


@task(
    name="backup-tenant",
    task_run_name="backup-{tenant.id}-{label}",
    timeout_seconds=BACKUP_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def backup_tenant(
    ctx: EngineContext,
    tenant: Tenant,
    label: str,
    note: str | None,
    expected_bytes: int,
    progress_artifact: UUID | None = None,
    actor: str | None = None,
) -> BackupOutcome:
    """Take one full backup of the tenant's database and its manifest (under its lease)."""
    logger = get_run_logger()
    last = [0.0]

    def progress(done: int, expected: int) -> None:
        report_progress(done, expected)
        now = time.monotonic()
        if progress_artifact is None or now - last[0] < PROGRESS_EVERY_SECONDS or expected <= 0:
            return
        last[0] = now
        update_progress_artifact(progress_artifact, progress=min(99.0, 100.0 * done / expected))

    outcome = operations.backup_tenant(
        ctx,
        tenant,
        label,
        actor=actor,
        note=note,
        progress=progress,
        expected_bytes=expected_bytes,
        on_catalog_change=catalog_change_mode(),
    )
    if progress_artifact is not None:
        update_progress_artifact(progress_artifact, progress=100.0)
    logger.info(
        "tenant %s: wrote %s (%s, %d documents, %s of data, %s) in %.1f s",
        tenant.id,
        outcome.entry.file,
        human_size(outcome.entry.size_bytes),
        outcome.documents,
        human_size(outcome.data_bytes),
        outcome.consistency,
        outcome.duration_s,
    )
    return outcome
