"""``daai-backup deploy``: register every deployment, to a work pool or for ``serve``."""

from __future__ import annotations

from datetime import UTC, datetime

from daai_backup.operations import load_context
from daai_backup.settings import Settings
from deployments.crashed_runs import ensure_crash_detection
from deployments.sync import SyncReport, ensure_process_pool, sync_deployments


def deploy_command(
    work_pool: str | None = None,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> tuple[SyncReport, bool]:
    """Sync deployments with the registry; returns the report and whether a pool was created.

    With ``work_pool`` the pool (type ``process``) is created if missing and every deployment
    is pointed at it; workers started with ``prefect worker start --pool NAME`` then run them.
    Also keeps the automation that marks runs whose process died as Crashed
    (:mod:`deployments.crashed_runs`). Raises the engine's errors (``TenantsFileInvalid``
    for a refused registry, e.g. ``daily`` on a production tenant) before anything is
    written.
    """
    ctx = load_context(settings)
    created_pool = ensure_process_pool(work_pool) if work_pool else False
    report = sync_deployments(
        ctx.registry.values(),
        settings=ctx.settings,
        work_pool=work_pool,
        now=now or datetime.now(UTC),
    )
    ensure_crash_detection()
    return report, created_pool
