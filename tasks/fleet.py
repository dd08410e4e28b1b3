"""Task of the fleet view: read every tenant's listing, records, usage and lease at once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from prefect import get_run_logger, task

from daai_backup import operations
from daai_backup.fleet import FleetView, LastRun, counts
from daai_backup.operations import EngineContext
from tasks.common import DATA_TASK, retry_if_transient

FLEET_TIMEOUT_SECONDS = 600


@task(
    name="fleet-view",
    timeout_seconds=FLEET_TIMEOUT_SECONDS,
    retry_condition_fn=retry_if_transient,
    **DATA_TASK,
)
def fleet_view(
    ctx: EngineContext,
    now: datetime,
    last_runs: Mapping[str, LastRun | None] | None,
    registered_at: Mapping[str, datetime] | None,
) -> FleetView:
    """One row per tenant (one task for the whole fleet: a task run per tenant every 15
    minutes would fill Prefect's database with bookkeeping)."""
    view = operations.fleet_view(ctx, now=now, last_runs=last_runs, registered_at=registered_at)
    get_run_logger().info(
        "fleet: %s", ", ".join(f"{n} {state}" for state, n in counts(view.table).items())
    )
    return view
