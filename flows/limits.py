"""Create the global concurrency limits the flows take (idempotent; flows also create their
own on demand, so this is a setup convenience for a fresh server)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.common import engine
from tasks.common import CLUSTER_LIMIT, ensure_limits


@flow(name="ensure-concurrency-limits", persist_result=False)
def ensure_concurrency_limits() -> list[str]:
    """The cluster's backup limit and one lock per registered tenant."""
    with engine() as ctx:
        tenant_ids = list(ctx.registry)
        ensure_limits(ctx.settings, tenant_ids)
        limit = ctx.settings.max_concurrent_backups
    get_run_logger().info(
        "%s = %d; tenant locks for %d tenants", CLUSTER_LIMIT, limit, len(tenant_ids)
    )
    return [CLUSTER_LIMIT, *(f"tenant:{t}" for t in tenant_ids)]
