"""The schedule-sync flow: re-apply the tenant registry to the deployments (hourly).

Layering note: ``deployments/`` sits above ``flows/`` and builds deployments from these flows,
so the sync logic is imported inside the flow body, not at module import (no cycle). See
``docs/decisions.md`` ("Schedules and deployments").
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from daai_backup.operations import load_context
from flows.refusals import one_line_refusals


@one_line_refusals
@flow(name="sync-schedules", persist_result=False)
def sync_schedules(work_pool: str | None = None) -> dict[str, Any]:
    """Create, update, pause, resume and remove deployments to match the tenant registry."""
    from deployments.sync import sync_deployments

    logger = get_run_logger()
    ctx = load_context()
    report = sync_deployments(ctx.registry.values(), settings=ctx.settings, work_pool=work_pool)
    logger.info("deployments: %s", report.summary())
    if report.changed:
        lines = ["## Schedule sync", "", report.summary(), ""]
        for kind, names in report.as_dict().items():
            if isinstance(names, list) and names:
                lines.append(f"- **{kind}**: {', '.join(names)}")
        create_markdown_artifact("\n".join(lines), key="schedule-sync")
    return report.as_dict()
