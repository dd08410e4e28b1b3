"""Task of the timeline flow: a tenant's activity from its change segments (one engine call)."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task

from daai_backup.inspection.timeline import Timeline, tenant_timeline
from daai_backup.operations import EngineContext
from daai_backup.tenants import Tenant
from tasks.common import DATA_TASK, retry_if_transient

TIMELINE_TIMEOUT_SECONDS = 2 * 3600


@task(
    name="change-timeline",
    task_run_name="timeline-{tenant.id}",
    timeout_seconds=TIMELINE_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def change_timeline(
    ctx: EngineContext,
    tenant: Tenant,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Timeline:
    """The tenant's changes per minute and collection, and its bursts."""
    result = tenant_timeline(ctx, tenant, actor=actor, since=since, until=until)
    get_run_logger().info(
        "tenant %s: %d changes, %d burst(s) from %s to %s",
        tenant.id,
        result.events,
        len(result.bursts),
        result.start.isoformat(),
        result.end.isoformat(),
    )
    return result
