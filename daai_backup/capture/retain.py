"""Retention of change segments: keep what point-in-time restore needs, delete the rest.

The rule is :func:`daai_backup.policy.retention.change_cutoff` (pure); this module finds the
one fact it needs from storage, the cluster time of the newest kept snapshot at or before
the window's start (from its manifest), and applies the plan under the caller's lease.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bson import Timestamp

from daai_backup.capture.segments import apply_change_retention, gaps, list_segments
from daai_backup.errors import DaaiBackupError
from daai_backup.policy.retention import change_cutoff
from daai_backup.repository.catalog import BackupEntry, newest_first
from daai_backup.repository.manifest import unseal

if TYPE_CHECKING:
    from daai_backup.operations import EngineContext
    from daai_backup.tenants import Tenant


def base_snapshot_time(
    ctx: EngineContext, tenant: Tenant, kept: Iterable[BackupEntry], window_start: datetime
) -> tuple[int, int] | None:
    """Cluster time of the newest kept snapshot taken at or before ``window_start`` whose
    manifest records one (one manifest read, usually); None if there is none."""
    folder = ctx.folder(tenant)
    for entry in newest_first(kept):
        if entry.taken_at > window_start or not entry.encrypted:
            continue
        try:
            with folder.open_manifest(entry.file) as source:
                manifest = unseal(source, ctx.settings.keyring, tenant.id, entry.file)
        except DaaiBackupError:
            continue  # no usable manifest: an older snapshot may serve as the base
        if manifest.cluster_time is not None:
            return manifest.cluster_time
    return None


def retain_changes(
    ctx: EngineContext,
    tenant: Tenant,
    kept: Iterable[BackupEntry],
    now: datetime,
    *,
    dry_run: bool = False,
) -> list[str]:
    """Delete (unless ``dry_run``) the change segments and gap records no kept snapshot and
    no moment in the window needs; returns their names. Call it holding the tenant's lease."""
    folder = ctx.folder(tenant)
    if not list_segments(folder) and not gaps(folder):
        return []
    days = ctx.settings.change_window_days
    base = base_snapshot_time(ctx, tenant, kept, now - timedelta(days=days))
    t, i = change_cutoff(now, days, [base] if base is not None else [])
    return apply_change_retention(folder, Timestamp(t, i), dry_run=dry_run)
