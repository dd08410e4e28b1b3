"""The fleet flow: one view of every tenant, every 15 minutes, and a post when one goes wrong.

Recipe: read Prefect's run history (each tenant's newest finished backup run, when its backup
deployment was registered) -> the engine's fleet table (storage, verification records,
leases, key) -> compare each tenant's state with the previous ``fleet`` artifact -> publish
the new one -> emit a ``daai-backup.tenant.<state>`` event for each tenant whose state
changed (the notification automation posts ``overdue`` and ``failing`` ones to the webhook,
so a tenant is posted once when it goes wrong, not every 15 minutes) -> publish the backup
list of every tenant whose ``backups-<tenant>`` artifact is missing or out of date (a tenant
without backups gets an empty one naming its first scheduled run).

The Prefect readers here are also what ``daai-backup status`` uses when a server is there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    DeploymentFilter,
    DeploymentFilterTags,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort

from daai_backup import fleet as rules
from daai_backup.fleet import FleetView, LastRun
from flows.common import BACKUP_LIST_KEY, backup_list_artifact, engine
from flows.refusals import one_line_refusals
from tasks.fleet import fleet_view

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

FLEET_KEY: Final = "fleet"
"""Key of the fleet table artifact; its latest version is also the previous states."""
EVENT_PREFIX: Final = "daai-backup.tenant"
"""Events are ``daai-backup.tenant.<state>`` about resource ``daai-backup.tenant.<id>``."""
BACKUP_FLOW: Final = "backup"
MANAGED_TAG: Final = "daai-backup"
PAGE: Final = 200
FINISHED: Final = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED)
"""Outcomes that say whether backups work (a Cancelled run says nothing about that)."""


def event_name(state: str) -> str:
    """``daai-backup.tenant.overdue``, ``...no-key``, ``...waiting`` (first word of a state)."""
    slug = "waiting" if state == rules.WAITING else state.replace(" ", "-")
    return f"{EVENT_PREFIX}.{slug}"


def _plain(message: str | None) -> str | None:
    """A state message without Prefect's preamble (``Flow run encountered an exception: ``)."""
    if message is None:
        return None
    return message.removeprefix("Flow run encountered an exception: ").strip() or None


def _last_run(run: FlowRun) -> LastRun:
    state = run.state
    failed = state is not None and state.type in (StateType.FAILED, StateType.CRASHED)
    at = run.end_time or (state.timestamp if state is not None else None)
    return LastRun(
        state=(state.name or state.type.value.title()) if state is not None else "unknown",
        failed=failed,
        at=at,
        message=_plain(state.message) if state is not None else None,
        flow_run=run.name,
    )


def read_last_runs(
    client: SyncPrefectClient, tenant_ids: Iterable[str]
) -> dict[str, LastRun | None]:
    """Each tenant's newest finished run of the ``backup`` flow (by its ``tenant:<id>`` tag,
    which deployment runs inherit and the flow adds to any other run), or None."""
    last: dict[str, LastRun | None] = {}
    finished = FlowRunFilterState(type=FlowRunFilterStateType(any_=list(FINISHED)))
    backup_flow = FlowFilter(name=FlowFilterName(any_=[BACKUP_FLOW]))
    for tenant_id in tenant_ids:
        runs = client.read_flow_runs(
            flow_filter=backup_flow,
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"tenant:{tenant_id}"]), state=finished
            ),
            sort=FlowRunSort.END_TIME_DESC,
            limit=1,
        )
        last[tenant_id] = _last_run(runs[0]) if runs else None
    return last


def read_registered_at(client: SyncPrefectClient) -> dict[str, datetime]:
    """When each tenant's backup deployment was created (i.e. since when it is scheduled)."""
    found: dict[str, datetime] = {}
    offset = 0
    tagged = DeploymentFilter(tags=DeploymentFilterTags(all_=[MANAGED_TAG]))
    backup_flow = FlowFilter(name=FlowFilterName(any_=[BACKUP_FLOW]))
    while True:
        page = client.read_deployments(
            deployment_filter=tagged, flow_filter=backup_flow, limit=PAGE, offset=offset
        )
        for deployment in page:
            tenant = (deployment.parameters or {}).get("tenant")
            if isinstance(tenant, str) and deployment.created is not None:
                found[tenant] = deployment.created
        if len(page) < PAGE:
            return found
        offset += PAGE


def read_run_history(
    tenant_ids: Sequence[str],
) -> tuple[dict[str, LastRun | None], dict[str, datetime]]:
    """(last runs, registration times) from the Prefect API in the current settings."""
    with get_client(sync_client=True) as client:
        return read_last_runs(client, tenant_ids), read_registered_at(client)


def latest_artifacts(client: SyncPrefectClient, keys: Sequence[str]) -> dict[str, Any]:
    """The newest version of each artifact key that exists, by key."""
    found: dict[str, Any] = {}
    for start in range(0, len(keys), PAGE):
        chunk = list(keys[start : start + PAGE])
        for artifact in client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=chunk)),
            limit=PAGE,
        ):
            found[artifact.key] = artifact
    return found


def _rows_of(artifact: Any) -> list[dict[str, Any]] | None:
    data = getattr(artifact, "data", None)
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    return data if isinstance(data, list) else None


def previous_states(client: SyncPrefectClient) -> dict[str, str]:
    """Each tenant's state in the newest ``fleet`` artifact (empty before the first run)."""
    rows = _rows_of(latest_artifacts(client, [FLEET_KEY]).get(FLEET_KEY)) or []
    return {
        str(r["Tenant"]): str(r["State"])
        for r in rows
        if isinstance(r, dict) and "Tenant" in r and "State" in r
    }


def previous_capture(client: SyncPrefectClient) -> dict[str, str]:
    """Each tenant's "Capture lag" cell in the newest ``fleet`` artifact."""
    rows = _rows_of(latest_artifacts(client, [FLEET_KEY]).get(FLEET_KEY)) or []
    return {
        str(r["Tenant"]): str(r.get("Capture lag", ""))
        for r in rows
        if isinstance(r, dict) and "Tenant" in r
    }


def emit_capture_lag(view: FleetView, previous: dict[str, str]) -> list[str]:
    """A ``daai-backup.tenant.capture-lag`` event per tenant whose change capture lag went
    over the target since the previous fleet run (posted once, like overdue); returns them."""
    from prefect.events import emit_event
    from prefect.runtime import flow_run

    emitted: list[str] = []
    for row in view.table.to_dict(orient="records"):
        tenant = str(row["tenant"])
        if row["capture_over_target"] is not True:
            continue
        if rules.CAPTURE_OVER in previous.get(tenant, ""):
            continue
        lag = rules.format_age(timedelta(seconds=float(row["capture_lag_s"])))
        emit_event(
            event=f"{EVENT_PREFIX}.capture-lag",
            resource={
                "prefect.resource.id": f"{EVENT_PREFIX}.{tenant}",
                "prefect.resource.name": tenant,
                "daai-backup.state": "capture-lag",
            },
            payload={
                "tenant": tenant,
                "workspace": row["workspace"],
                "state": "capture-lag",
                "detail": f"change capture is {lag} behind (target under the configured "
                "DAAI_BACKUP_CAPTURE_MAX_LAG_SECONDS): is the capture deployment running?",
                "frequency": row["frequency"],
                "flow_run": flow_run.get_name(),
                "flow_run_id": flow_run.get_id(),
                "url": flow_run.get_flow_run_ui_url(),
            },
        )
        emitted.append(tenant)
    return emitted


def fleet_description(view: FleetView, limit: int = 15) -> str:
    """The summary line and one line per tenant that needs a person (markdown): what the
    artifact key's page shows."""
    lines = [rules.summary(view.table, view.now)]
    problems = view.table[~view.table["state"].isin([rules.OK, rules.SUSPENDED])]
    for row in problems.head(limit).to_dict(orient="records"):
        lines.append(f"- **{row['tenant']}** {row['state']}: {row['detail']}")
    if len(problems) > limit:
        lines.append(f"- … and {len(problems) - limit} more (see the table)")
    lines.extend(f"\n_{note}_" for note in view.notes)
    return "\n".join(lines)


def emit_changes(view: FleetView, previous: dict[str, str]) -> list[tuple[str, str]]:
    """A ``daai-backup.tenant.<state>`` event per tenant whose state changed (or is new);
    returns the (tenant, state) pairs emitted."""
    from prefect.events import emit_event
    from prefect.runtime import flow_run

    emitted: list[tuple[str, str]] = []
    for row in view.table.to_dict(orient="records"):
        tenant, state = str(row["tenant"]), str(row["state"])
        before = previous.get(tenant)
        if before == state:
            continue
        emit_event(
            event=event_name(state),
            resource={
                "prefect.resource.id": f"{EVENT_PREFIX}.{tenant}",
                "prefect.resource.name": tenant,
                "daai-backup.state": state,
            },
            payload={
                "tenant": tenant,
                "workspace": row["workspace"],
                "state": state,
                "previous": before,
                "detail": row["detail"],
                "frequency": row["frequency"],
                "flow_run": flow_run.get_name(),
                "flow_run_id": flow_run.get_id(),
                "url": flow_run.get_flow_run_ui_url(),
            },
        )
        emitted.append((tenant, state))
    return emitted


@one_line_refusals
@flow(name="fleet", persist_result=False)
def fleet() -> dict[str, Any]:
    """Every tenant's state; posts tenants that become overdue or failing (once)."""
    logger = get_run_logger()
    now = datetime.now(UTC)
    with engine() as ctx:
        tenants = list(ctx.registry.values())
        last_runs, registered_at = read_run_history([t.id for t in tenants])
        view = fleet_view(ctx, now, last_runs, registered_at)
        with get_client(sync_client=True) as client:
            previous = previous_states(client)
            previous_lag = previous_capture(client)
            keys = [BACKUP_LIST_KEY.format(tenant=t.id) for t in tenants]
            published = latest_artifacts(client, keys)
        create_table_artifact(
            rules.display_rows(view.table), key=FLEET_KEY, description=fleet_description(view)
        )
        emitted = emit_changes(view, previous)
        for tenant_id in emit_capture_lag(view, previous_lag):
            logger.warning("tenant %s: change capture lag over the target", tenant_id)
        for tenant_id, state in emitted:
            (logger.warning if state in rules.ALERT_STATES else logger.info)(
                "tenant %s: %s -> %s", tenant_id, previous.get(tenant_id, "new"), state
            )
        refreshed: list[str] = []
        for tenant in tenants:
            facts = view.facts.get(tenant.id)
            if facts is None or facts.error is not None:
                continue
            key, rows, description = backup_list_artifact(
                ctx, tenant, facts.entries, known_bad=facts.known_bad, now=now, strays=facts.strays
            )
            current = published.get(key)
            if (
                current is not None
                and current.description == description
                and _rows_of(current) == rows
            ):
                continue
            create_table_artifact(rows, key=key, description=description)
            refreshed.append(tenant.id)
        if refreshed:
            logger.info("backup lists published for %s", ", ".join(refreshed))
    return {
        "states": dict(zip(view.table["tenant"], view.table["state"], strict=True)),
        "changed": dict(emitted),
        "lists_published": refreshed,
        "notes": view.notes,
    }
