"""The capture flow: a bounded run of change capture, scheduled back to back.

Recipe: capture the cluster's changes for ``minutes`` (segments stored, resume point saved at
every flush and at the end) -> for each tenant whose change history was lost: emit a
``daai-backup.tenant.capture-gap`` event (the notification automation posts it to the ops
webhook) and start its backup deployment now with its scheduled label (a fresh snapshot is
the new base for point-in-time restore) -> a table artifact ``capture`` of what was stored.

Why bounded runs rather than one endless run: a run's logs, state and result stay readable,
a worker restart or a deploy costs at most one run, and Prefect's scheduler restarts capture
by itself after any crash (see ``docs/decisions.md``, "Continuous change capture"). The
deployment's concurrency limit of 1 (``CANCEL_NEW``) keeps two runs from ever overlapping.
"""

from __future__ import annotations

from typing import Any, Final

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from daai_backup.capture.runner import CaptureOutcome
from flows.common import engine
from flows.refusals import one_line_refusals
from tasks.capture import capture_changes

GAP_EVENT: Final = "daai-backup.tenant.capture-gap"
LAG_EVENT: Final = "daai-backup.tenant.capture-lag"
RUN_MINUTES: Final = 10.0
"""One run's length; the deployment's schedule fires every RUN_MINUTES minutes."""
MARGIN_SECONDS: Final = 20.0
"""A run stops this much before the next one is due (flush, save, start-up of the next)."""


def emit_gap(tenant: str, workspace: str, frequency: str, reason: str) -> None:
    """The event the notification automation posts (same payload shape as the fleet's)."""
    from prefect.events import emit_event
    from prefect.runtime import flow_run

    emit_event(
        event=GAP_EVENT,
        resource={
            "prefect.resource.id": f"daai-backup.tenant.{tenant}",
            "prefect.resource.name": tenant,
            "daai-backup.state": "capture-gap",
        },
        payload={
            "tenant": tenant,
            "workspace": workspace,
            "state": "capture-gap",
            "detail": f"change history lost ({reason}); a fresh backup was started",
            "frequency": frequency,
            "flow_run": flow_run.get_name(),
            "flow_run_id": flow_run.get_id(),
            "url": flow_run.get_flow_run_ui_url(),
        },
    )


def start_fresh_backup(tenant: str, label: str) -> str | None:
    """Start the tenant's backup deployment now (not waiting); the run's name, or None."""
    from prefect.deployments import run_deployment

    from deployments.build import BACKUP, backup_deployment_name

    try:
        run = run_deployment(
            f"{BACKUP}/{backup_deployment_name(tenant)}",
            parameters={"tenant": tenant, "label": label, "actor": "capture"},
            timeout=0,
            tags=[f"tenant:{tenant}", "reason:capture-gap"],
        )
    except Exception as exc:  # no deployment (a CLI-only setup): the event still posts
        get_run_logger().error("tenant %s: fresh backup not started: %s", tenant, exc)
        return None
    name = getattr(run, "name", None)
    return str(name) if name is not None else None


def _rows(outcome: CaptureOutcome) -> list[dict[str, Any]]:
    return [
        {
            "Tenant": tenant,
            "Events stored": outcome.per_tenant.get(tenant, 0),
            "Lag (s)": f"{outcome.lag_s.get(tenant, 0.0):.1f}",
            "History": f"LOST: {outcome.history_lost[tenant]}"
            if tenant in outcome.history_lost
            else "complete",
        }
        for tenant in sorted(set(outcome.tenants) | set(outcome.history_lost))
    ]


@one_line_refusals
@flow(name="capture", persist_result=False)
def capture(minutes: float = RUN_MINUTES) -> dict[str, Any]:
    """Capture every tenant's changes for ``minutes`` (then flush and stop)."""
    logger = get_run_logger()
    seconds = max(1.0, minutes * 60 - MARGIN_SECONDS)
    with engine() as ctx:
        outcome = capture_changes(ctx, seconds)
        started: dict[str, str | None] = {}
        for tenant_id, reason in sorted(outcome.history_lost.items()):
            tenant = ctx.registry.get(tenant_id)
            if tenant is None:
                continue
            label = tenant.active_frequency()
            logger.error("tenant %s: change history lost: %s", tenant_id, reason)
            emit_gap(tenant_id, tenant.workspace_name, label, reason)
            started[tenant_id] = start_fresh_backup(tenant_id, label)
    create_table_artifact(
        _rows(outcome),
        key="capture",
        description=(
            f"{outcome.events} events of {len(outcome.tenants)} tenants stored in "
            f"{outcome.segments} segments"
        ),
    )
    logger.info(
        "stored %d events in %d segments; %d skipped (not a captured tenant)",
        outcome.events,
        outcome.segments,
        outcome.skipped,
    )
    return {**outcome.as_dict(), "fresh_backups": started}
