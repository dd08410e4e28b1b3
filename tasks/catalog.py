"""Tasks over a tenant's backup list: read it, describe one entry, delete one."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import get_run_logger, task

from daai_backup import operations
from daai_backup.operations import EngineContext
from daai_backup.repository.catalog import BackupEntry, human_size
from daai_backup.repository.folder import FolderListing
from daai_backup.tenants import Tenant
from tasks.common import DATA_TASK, retry_if_transient

LIST_TIMEOUT_SECONDS = 300
GOOD_FOR = timedelta(days=7)
"""A good verification older than this is repeated before retention relies on it (a file
can rot in place without changing its size); the weekly drill keeps most records fresher."""
DELETE_TIMEOUT_SECONDS = 300


@task(
    name="list-backups",
    task_run_name="list-{tenant.id}",
    timeout_seconds=LIST_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def list_backups(ctx: EngineContext, tenant: Tenant) -> list[BackupEntry]:
    """The tenant's backups, newest first."""
    entries = operations.list_backups(ctx, tenant)
    get_run_logger().info("tenant %s: %d backups listed", tenant.id, len(entries))
    return entries


@task(
    name="folder-listing",
    task_run_name="folder-listing-{tenant.id}",
    timeout_seconds=LIST_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def folder_listing(ctx: EngineContext, tenant: Tenant) -> FolderListing:
    """The tenant's backups and what else is in its folder; strays are logged as warnings."""
    listing = operations.folder_listing(ctx, tenant)
    logger = get_run_logger()
    logger.info("tenant %s: %d backups listed", tenant.id, len(listing.entries))
    for stray in listing.strays:
        logger.warning("tenant %s: db-backups/%s", tenant.id, stray.describe())
    return listing


@task(
    name="describe-backup",
    task_run_name="describe-{tenant.id}",
    timeout_seconds=LIST_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def describe_backup(ctx: EngineContext, tenant: Tenant, filename: str) -> BackupEntry:
    """The entry of ``filename`` if it is one of this tenant's backups; refuse anything else."""
    entry = operations.describe_backup(ctx, tenant, filename)
    get_run_logger().info(
        "tenant %s: %s is %s, %s",
        tenant.id,
        entry.file,
        human_size(entry.size_bytes),
        "encrypted" if entry.encrypted else "legacy plaintext",
    )
    return entry


@task(
    name="delete-backup",
    task_run_name="delete-{tenant.id}",
    timeout_seconds=DELETE_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def delete_backup(ctx: EngineContext, tenant: Tenant, filename: str) -> None:
    """Delete one of the tenant's backups (idempotent)."""
    operations.delete_backup(ctx, tenant, filename)
    get_run_logger().info("tenant %s: deleted %s", tenant.id, filename)


@task(
    name="verification-status",
    task_run_name="verification-status-{tenant.id}",
    timeout_seconds=LIST_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def verification_status(
    ctx: EngineContext, tenant: Tenant, entries: list[BackupEntry], now: datetime
) -> operations.VerificationStatus:
    """Which of the tenant's backups are known good (within a week) or bad."""
    status = operations.verification_status(ctx, tenant, entries, good_for=GOOD_FOR, now=now)
    get_run_logger().info(
        "tenant %s: %d backups known good, %d known bad",
        tenant.id,
        len(status.good),
        len(status.bad),
    )
    return status


@task(
    name="remove-leftovers",
    task_run_name="remove-leftovers-{tenant.id}",
    timeout_seconds=DELETE_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def remove_leftovers(ctx: EngineContext, tenant: Tenant) -> int:
    """Remove what killed operations left in the tenant's folder (holding its lease)."""
    freed = operations.remove_leftovers(ctx, tenant)
    if freed:
        get_run_logger().warning(
            "tenant %s: removed %s left behind by interrupted operations",
            tenant.id,
            human_size(freed),
        )
    return freed


DESCRIPTION_KEY = "contents-{tenant}"
"""Key of the markdown artifact saying what a tenant's (newest verified) backup holds."""


@task(
    name="describe-contents",
    task_run_name="describe-contents-{tenant.id}",
    timeout_seconds=LIST_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def publish_description(ctx: EngineContext, tenant: Tenant, filename: str) -> None:
    """Publish what one backup holds, from its manifest, as the tenant's contents artifact."""
    from prefect.artifacts import create_markdown_artifact

    from daai_backup.repository.description import to_markdown

    manifest = operations.manifest_of(ctx, tenant, filename)
    create_markdown_artifact(
        to_markdown(manifest, ctx.timezone(tenant), f"What {filename} holds"),
        key=DESCRIPTION_KEY.format(tenant=tenant.id),
        description=f"{tenant.id}: what {filename} holds ({manifest.documents:,} documents)",
    )
    get_run_logger().info("tenant %s: published what %s holds", tenant.id, filename)
