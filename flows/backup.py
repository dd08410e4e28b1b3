"""The backup flow, and the pre-restore safety backup the restore flow runs as a subflow.

Recipe: refuse early (suspended -> Skipped; no key -> Failed plus a banner artifact; no
permission or no room -> Failed, nothing written) -> tenant lease -> one cluster slot ->
snapshot, compress, encrypt, check the lease, store -> retention -> publish the list.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect import State, flow, get_run_logger
from prefect.artifacts import create_progress_artifact
from prefect.states import Completed

from daai_backup import policy
from daai_backup.errors import DaaiBackupError, InvalidName, KeyMissing, SubscriptionSuspended
from daai_backup.operations import EngineContext
from daai_backup.repository.catalog import human_size
from daai_backup.tenants import Tenant
from flows.common import (
    clear_key_missing,
    engine,
    publish_backup_list,
    publish_key_missing,
    tag_this_run,
)
from flows.maintenance import BACKUP_PREFIX, TenantEvents
from flows.refusals import one_line_refusals
from flows.retention import apply_retention
from tasks.backup import backup_tenant, preflight_backup
from tasks.catalog import folder_listing, remove_leftovers
from tasks.common import cluster_slot, tenant_lock
from tasks.restore import clean_abandoned_restore


def take_backup(
    ctx: EngineContext,
    tenant: Tenant,
    label: str,
    *,
    actor: str | None,
    note: str | None,
) -> dict[str, Any]:
    """Preflight, then the backup under the tenant lease and a cluster slot.

    Raises ``SubscriptionSuspended`` for the caller to turn into Skipped (or a refusal).
    Emits ``daai-backup.backup.completed`` or ``.failed`` (not for a skipped backup).
    """
    events = TenantEvents(BACKUP_PREFIX, tenant, actor=actor)
    try:
        result = _take_backup(ctx, tenant, label, actor=actor, note=note)
    except SubscriptionSuspended as exc:
        if label == policy.PRE_RESTORE:
            events.failed(exc, live_changed=False, refused=True, label=label)
        raise  # otherwise skipped, not failed: no event
    except BaseException as exc:
        refused = isinstance(exc, DaaiBackupError)
        events.failed(exc, live_changed=False, refused=refused, label=label)
        raise
    events.file = result["file"]
    events.completed(
        label=label,
        size_bytes=result["size_bytes"],
        documents=result["documents"],
        consistency=result["consistency"],
    )
    return result


def _take_backup(
    ctx: EngineContext,
    tenant: Tenant,
    label: str,
    *,
    actor: str | None,
    note: str | None,
) -> dict[str, Any]:
    logger = get_run_logger()
    try:
        expected = preflight_backup(ctx, tenant, label, actor, note)
    except KeyMissing as exc:
        publish_key_missing(tenant, str(exc))
        raise
    with tenant_lock(ctx, tenant.id, "backup", detail=f"{label} backup"):
        # What killed runs left (temporary files, incomplete uploads) goes first: holding
        # the lease, nothing else can be writing to the tenant's folder.
        remove_leftovers(ctx, tenant)
        if label != policy.PRE_RESTORE:
            # A safety backup runs inside a restore whose staged copy is not abandoned.
            clean_abandoned_restore(ctx, tenant)
        with cluster_slot(ctx.settings):
            progress = cast(
                UUID,
                create_progress_artifact(
                    0.0, description=f"{label} backup of {tenant.id}: bytes written"
                ),
            )
            outcome = backup_tenant(ctx, tenant, label, note, expected, progress, actor)
        clear_key_missing(tenant)
        published = False
        if label != policy.PRE_RESTORE:
            # Not for a safety backup: retention could delete the very file being restored.
            # A plain call in this run, not a subflow: a flow run of its own cost about a
            # second per backup (its creation, states, parameters, heartbeat thread), at
            # every scheduled backup of every tenant; its tasks, logs and table artifact
            # (retention-<tenant>) are this run's now.
            try:
                apply_retention(ctx, tenant, dry_run=False, cleaned=True)
            except Exception as exc:  # the backup did succeed: logged, the next run retries
                logger.error("tenant %s: retention after the backup failed: %s", tenant.id, exc)
            else:
                published = True  # it published the list after its deletes
        if not published:
            listing = folder_listing(ctx, tenant)
            strays = [s.describe() for s in listing.strays]
            publish_backup_list(ctx, tenant, listing.entries, strays=strays)
    return {
        "tenant": tenant.id,
        "file": outcome.entry.file,
        "size_bytes": outcome.entry.size_bytes,
        "size": human_size(outcome.entry.size_bytes),
        "documents": outcome.documents,
        "consistency": outcome.consistency,
    }


@one_line_refusals
@flow(name="backup", flow_run_name="backup-{tenant}-{label}", persist_result=False)
def backup(
    tenant: str,
    label: str = policy.MANUAL,
    actor: str | None = None,
    note: str | None = None,
) -> dict[str, Any] | State[Any]:
    """Back up one tenant: ``manual`` (Backup Now; the actor needs ``create``) or a schedule.

    Args:
        tenant: The tenant's id, e.g. acme-hr.
        label: manual for Backup Now; scheduled runs pass their frequency (15-day, ...).
        actor: Who asks for the backup (your name or email); Backup Now needs one with the
            create permission. Scheduled runs pass "scheduler".
        note: A short note shown in the backup list (at most 200 characters, one line).
    """
    logger = get_run_logger()
    # The fleet view finds the tenant's newest run by its tenant tag; the label tag says
    # what this run was (a deployment's tags reach every run made from it, so not there).
    tag_this_run(f"tenant:{tenant}", f"label:{label}")
    with engine() as ctx:
        who = ctx.tenant(tenant)
        if label == policy.PRE_RESTORE:
            raise InvalidName(
                "pre-restore backups are taken by the restore flow; use 'manual' or a schedule"
            )
        if label == policy.IMPORTED:
            raise InvalidName(
                "imported backups come from `daai-backup import`; use 'manual' or a schedule"
            )
        try:
            return take_backup(ctx, who, label, actor=actor, note=note)
        except SubscriptionSuspended as exc:
            logger.info("tenant %s: skipped: %s", tenant, exc)
            return Completed(name="Skipped", message=str(exc))


@one_line_refusals
@flow(name="pre-restore-backup", flow_run_name="pre-restore-{tenant}", persist_result=False)
def pre_restore_backup(tenant: str, actor: str | None, restoring: str) -> dict[str, Any]:
    """The safety backup before a restore; the actor needs ``restore`` (not ``create``).

    Runs inside the restore's tenant lease (re-entrant within one flow-run context, so this
    subflow does not wait on its parent). A suspended subscription fails it: a restore never
    runs without a safety backup.
    """
    with engine() as ctx:
        who = ctx.tenant(tenant)
        who.require(actor, "restore")
        return take_backup(
            ctx, who, policy.PRE_RESTORE, actor=actor, note=f"before restoring {restoring}"
        )
