"""Create the global concurrency limit the flows take (idempotent; flows also create it on
demand, so this is a setup convenience for a fresh server). Tenants need none: their
one-operation-at-a-time lease lives in MongoDB (:mod:`daai_backup.lease`)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.common import engine
from flows.refusals import one_line_refusals
from tasks.common import CLUSTER_LIMIT, ensure_limits


@one_line_refusals
@flow(name="ensure-concurrency-limits", persist_result=False)
def ensure_concurrency_limits() -> list[str]:
    """The cluster's backup limit."""
    with engine() as ctx:
        ensure_limits(ctx.settings)
        limit = ctx.settings.max_concurrent_backups
    get_run_logger().info("%s = %d", CLUSTER_LIMIT, limit)
    return [CLUSTER_LIMIT]
