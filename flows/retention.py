"""Retention: plan (pure, :func:`daai_backup.retention.plan`), then delete, under the tenant's
lease (checked before each delete); and a sweep over every tenant that carries on past one
tenant's failure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from daai_backup import retention as rules
from daai_backup.catalog import human_size
from daai_backup.errors import DaaiBackupError
from daai_backup.operations import EngineContext
from daai_backup.tenants import Tenant
from flows.common import engine, local_time, publish_backup_list
from tasks.catalog import delete_backup, list_backups
from tasks.common import tenant_lock


def apply_retention(ctx: EngineContext, tenant: Tenant, *, dry_run: bool) -> dict[str, Any]:
    """List, plan and (unless ``dry_run``) delete; the caller's flow run holds nothing yet."""
    logger = get_run_logger()
    with tenant_lock(ctx, tenant.id, "retention", detail="dry run" if dry_run else None) as lease:
        # A listing that fails raises here: nothing is planned, nothing deleted.
        entries = list_backups(ctx, tenant)
        active = tenant.active_frequency()
        decided = rules.plan(entries, active, datetime.now(UTC))
        deleted: list[str] = []
        failed: dict[str, str] = {}
        for entry in decided.delete:
            reason = decided.reasons[entry.file]
            if dry_run:
                logger.info("tenant %s: would delete %s (%s)", tenant.id, entry.file, reason)
                continue
            lease.check()  # LeaseLost ends the run: another operation may be under way
            try:
                delete_backup(ctx, tenant, entry.file)
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
        remaining = entries if dry_run else list_backups(ctx, tenant)

    verb = "would delete" if dry_run else "deleted"
    rows = [
        {
            "Decision": "keep" if entry in decided.keep else verb,
            "Date / Time": local_time(ctx, tenant, entry),
            "Frequency": entry.frequency,
            "Size": human_size(entry.size_bytes),
            "File": entry.file,
            "Reason": decided.reasons[entry.file]
            + (f" — delete failed: {failed[entry.file]}" if entry.file in failed else ""),
        }
        for entry in entries
    ]
    create_table_artifact(
        rows,
        key=f"retention-{tenant.id}",
        description=f"Retention of {tenant.id} ({active} active){' — dry run' if dry_run else ''}",
    )
    publish_backup_list(ctx, tenant, remaining)
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
    }


@flow(name="retention", flow_run_name="retention-{tenant}", persist_result=False)
def retention(tenant: str, dry_run: bool = False) -> dict[str, Any]:
    """Apply the frequency table's retention to one tenant's backups."""
    with engine() as ctx:
        return apply_retention(ctx, ctx.tenant(tenant), dry_run=dry_run)


@flow(name="retention-sweep", persist_result=False)
def retention_sweep(dry_run: bool = False) -> dict[str, Any]:
    """Retention for every tenant; one tenant's failure does not stop the others."""
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
    create_table_artifact(
        [{"Tenant": t, "Result": "ok"} for t in done]
        + [{"Tenant": t, "Result": f"failed: {m}"} for t, m in failed.items()],
        key="retention-sweep",
        description=f"Retention over {len(tenant_ids)} tenants",
    )
    if failed:
        raise DaaiBackupError(
            f"retention failed for {len(failed)} of {len(tenant_ids)} tenants: "
            + "; ".join(f"{t}: {m}" for t, m in failed.items())
        )
    return {"tenants": done, "failed": failed}
