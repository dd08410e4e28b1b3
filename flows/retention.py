"""Retention: plan (pure, :func:`daai_backup.policy.retention.plan`), then delete, under the
tenant's lease (checked before each delete); and a sweep over every tenant that carries on
past one tenant's failure, and then drops the restore copies that have expired."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from daai_backup.errors import DaaiBackupError, ObjectLocked
from daai_backup.mongo.copies import CopyInfo
from daai_backup.operations import BAD_FILE_ERRORS, EngineContext
from daai_backup.policy import retention as rules
from daai_backup.repository.catalog import BackupEntry, human_size, newest_first
from daai_backup.tenants import Tenant
from flows.common import engine, local_time, publish_backup_list
from flows.refusals import one_line_refusals
from tasks.capture import retain_changes
from tasks.catalog import delete_backup, folder_listing, remove_leftovers, verification_status
from tasks.common import tenant_lock
from tasks.copies import drop_expired_copies
from tasks.restore import clean_abandoned_restore
from tasks.verify import verify_backup


def confirm_newest_good(
    ctx: EngineContext,
    tenant: Tenant,
    entries: list[BackupEntry],
    good: set[str],
    bad: set[str],
) -> None:
    """Make sure the newest backup that can be good is known to be: verify (read whole)
    newest first until one passes, adding to ``good`` and ``bad`` as it goes.

    Retention deletes nothing unless a newer known-good backup remains, so this runs only
    when something would be deleted. Usually one read of the newest backup (the one just
    written) settles it. A key problem stops the search: nothing is known, nothing deleted.
    """
    logger = get_run_logger()
    for entry in newest_first(entries):
        if entry.file in good:
            return
        if entry.file in bad:
            continue
        try:
            verify_backup(ctx, tenant, entry.file)
        except BAD_FILE_ERRORS as exc:
            bad.add(entry.file)
            logger.error(
                "tenant %s: %s is BAD and never counts as good: %s", tenant.id, entry.file, exc
            )
            continue
        except DaaiBackupError as exc:
            logger.warning(
                "tenant %s: cannot verify %s (%s): nothing is deleted until a backup is known good",
                tenant.id,
                entry.file,
                exc,
            )
            return
        good.add(entry.file)
        return


def apply_retention(
    ctx: EngineContext, tenant: Tenant, *, dry_run: bool, cleaned: bool = False
) -> dict[str, Any]:
    """List, plan and (unless ``dry_run``) delete, under the tenant's lease (re-entrant: the
    backup flow calls this while it holds it).

    Only verified backups count as good (``retention.plan(known_good=...)``): a backup is
    deleted only while a newer one that passed verification remains. ``cleaned``: the caller
    removed the leftovers and any abandoned restore under this same lease already.
    """
    logger = get_run_logger()
    with tenant_lock(ctx, tenant.id, "retention", detail="dry run" if dry_run else None) as lease:
        if not dry_run and not cleaned:
            remove_leftovers(ctx, tenant)
            clean_abandoned_restore(ctx, tenant)
        # A listing that fails raises here: nothing is planned, nothing deleted.
        entries = folder_listing(ctx, tenant).entries
        active = tenant.active_frequency()
        now = datetime.now(UTC)
        status = verification_status(ctx, tenant, entries, now)
        good, bad = set(status.good), set(status.bad)
        if rules.plan(entries, active, now, known_bad=bad).delete:
            confirm_newest_good(ctx, tenant, entries, good, bad)
        decided = rules.plan(entries, active, now, known_bad=bad, known_good=good)
        deleted: list[str] = []
        failed: dict[str, str] = {}
        locked: dict[str, str] = {}
        for entry in decided.delete:
            reason = decided.reasons[entry.file]
            if dry_run:
                logger.info("tenant %s: would delete %s (%s)", tenant.id, entry.file, reason)
                continue
            lease.check()  # LeaseLost ends the run: another operation may be under way
            try:
                delete_backup(ctx, tenant, entry.file)
            except ObjectLocked as exc:  # kept until its lock ends; deleted by a later run
                locked[entry.file] = str(exc)
                logger.info("tenant %s: kept %s: %s", tenant.id, entry.file, exc)
            except DaaiBackupError as exc:
                failed[entry.file] = str(exc)
                logger.error("tenant %s: could not delete %s: %s", tenant.id, entry.file, exc)
            else:
                deleted.append(entry.file)
                logger.info("tenant %s: deleted %s (%s)", tenant.id, entry.file, reason)
        for entry in decided.keep:
            logger.info(
                "tenant %s: keep %s (%s)", tenant.id, entry.file, decided.reasons[entry.file]
            )
        remaining = folder_listing(ctx, tenant)
        # Change segments: what the kept snapshots and the recovery window need stays.
        lease.check()
        changes = retain_changes(ctx, tenant, list(decided.keep), now, dry_run)

    verb = "would delete" if dry_run else "deleted"
    rows = [
        {
            "Decision": "keep" if entry in decided.keep or entry.file in locked else verb,
            "Date / Time": local_time(ctx, tenant, entry),
            "Frequency": entry.frequency,
            "Size": human_size(entry.size_bytes),
            "File": entry.file,
            "Reason": decided.reasons[entry.file]
            + (f" — delete failed: {failed[entry.file]}" if entry.file in failed else "")
            + (f" — kept: {locked[entry.file]}" if entry.file in locked else ""),
        }
        for entry in entries
    ]
    create_table_artifact(
        rows,
        key=f"retention-{tenant.id}",
        description=f"Retention of {tenant.id} ({active} active){' — dry run' if dry_run else ''}",
    )
    publish_backup_list(
        ctx,
        tenant,
        remaining.entries,
        known_bad=bad,
        strays=[s.describe() for s in remaining.strays],
    )
    if failed:
        raise DaaiBackupError(
            f"retention of tenant {tenant.id!r}: {len(failed)} of {len(decided.delete)} deletes "
            f"failed ({', '.join(failed)}); they are retried on the next run"
        )
    return {
        "tenant": tenant.id,
        "kept": [e.file for e in decided.keep],
        "deleted": [] if dry_run else deleted,
        "would_delete": [e.file for e in decided.delete] if dry_run else [],
        "locked": locked,
        "change_segments_deleted": [] if dry_run else changes,
    }


@one_line_refusals
@flow(name="retention", flow_run_name="retention-{tenant}", persist_result=False)
def retention(tenant: str, dry_run: bool = False) -> dict[str, Any]:
    """Apply the frequency table's retention to one tenant's backups."""
    with engine() as ctx:
        return apply_retention(ctx, ctx.tenant(tenant), dry_run=dry_run)


@one_line_refusals
@flow(name="retention-sweep", persist_result=False)
def retention_sweep(dry_run: bool = False) -> dict[str, Any]:
    """Retention for every tenant, then drop the restore copies that expired (or whose load
    was killed); one tenant's failure does not stop the others."""
    logger = get_run_logger()
    with engine() as ctx:
        tenant_ids = list(ctx.registry)
    done: list[str] = []
    failed: dict[str, str] = {}
    for tenant_id in tenant_ids:
        state = retention(tenant=tenant_id, dry_run=dry_run, return_state=True)
        if state.is_completed():
            done.append(tenant_id)
        else:
            failed[tenant_id] = state.message or state.name or "failed"
            logger.error("retention of %s failed: %s", tenant_id, failed[tenant_id])
    dropped: list[CopyInfo] = []
    if not dry_run:
        with engine() as ctx:
            try:
                dropped = drop_expired_copies(ctx)
            except DaaiBackupError as exc:
                failed["restore copies"] = str(exc)
                logger.error("expired restore copies not dropped: %s", exc)
    copies = [
        {
            "Tenant": c.tenant,
            "Result": f"copy {c.database} dropped ({'expired' if c.ready else 'incomplete load'})",
        }
        for c in dropped
    ]
    create_table_artifact(
        [{"Tenant": t, "Result": "ok"} for t in done]
        + copies
        + [{"Tenant": t, "Result": f"failed: {m}"} for t, m in failed.items()],
        key="retention-sweep",
        description=f"Retention over {len(tenant_ids)} tenants",
    )
    if failed:
        raise DaaiBackupError(
            f"retention failed for {len(failed)} of {len(tenant_ids)} tenants: "
            + "; ".join(f"{t}: {m}" for t, m in failed.items())
        )
    return {
        "tenants": done,
        "failed": failed,
        "copies_dropped": [c.database for c in dropped],
    }
