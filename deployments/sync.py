"""Registry -> Prefect server: create, update, remove, pause and resume deployments.

``sync_deployments`` is idempotent: it reads what the server has (deployments tagged
:data:`~deployments.build.MANAGED_TAG` only), compares every field it owns (parameters, tags,
schedules by slug with interval/anchor/time zone, paused, work pool when one is asked for) and
writes only differences, so a second run reports no changes. Deployments without the tag are
never touched, and a deployment is removed only when its tenant left the registry.

Run it from ``daai-backup deploy``, at the start of ``make up`` and every hour as the
``sync-schedules`` flow: that hourly run is what makes a ``frequency_override`` end on its own
and what pauses a tenant whose subscription was suspended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import (
    DeploymentScheduleCreate,
    DeploymentScheduleUpdate,
    DeploymentUpdate,
)
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterTags,
    FlowFilter,
    FlowFilterId,
)
from prefect.schedules import Schedule

from daai_backup.settings import Settings
from daai_backup.tenants import Tenant
from deployments.build import MANAGED_TAG, DeploymentSpec, desired_specs, load_flows, to_runner

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.responses import DeploymentResponse

PAGE = 200
CODE_DIR = Path(__file__).resolve().parent.parent
"""Where workers find the code (``flows/...`` entrypoints): this checkout or image path."""


@dataclass
class SyncReport:
    """Full names (``flow/deployment``) per kind of change; ``unchanged`` is a count."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed or self.paused or self.resumed)

    def summary(self) -> str:
        parts = [
            f"{len(self.created)} created",
            f"{len(self.updated)} updated",
            f"{len(self.removed)} removed",
            f"{len(self.paused)} paused",
            f"{len(self.resumed)} resumed",
            f"{self.unchanged} unchanged",
        ]
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "removed": self.removed,
            "paused": self.paused,
            "resumed": self.resumed,
            "unchanged": self.unchanged,
        }


def sync_deployments(
    tenants: Iterable[Tenant],
    *,
    settings: Settings,
    work_pool: str | None = None,
    now: datetime | None = None,
    flows: Mapping[str, Flow[..., Any]] | None = None,
) -> SyncReport:
    """Make the server's daai-backup deployments match ``tenants`` at ``now``.

    ``work_pool``: register to this work pool (scale-out); ``None`` leaves existing
    deployments' pools alone and creates new ones without a pool (served by ``serve``).
    Raises ``ConfigError`` naming the tenant for a frequency its environment refuses,
    before anything is written.
    """
    now = now or datetime.now(UTC)
    specs = desired_specs(tenants, settings=settings, now=now, work_pool=work_pool)
    flows = flows if flows is not None else load_flows()
    report = SyncReport()
    with get_client(sync_client=True) as client:
        existing = _read_managed(client)
        writer = _Writer(client, flows)
        writes: list[Callable[[], object]] = []
        wanted: set[str] = set()
        for spec in specs:
            flow_name = flows[spec.role].name
            full_name = f"{flow_name}/{spec.name}"
            wanted.add(full_name)
            current = existing.get(full_name)
            if current is None:
                writes.append(partial(writer.create, spec, work_pool))
                writer.prepare(spec)
                report.created.append(full_name)
                continue
            if _differs(spec, current, work_pool):
                # No pool asked for: keep the one the deployment has (an update that names
                # no pool would take it off its pool).
                pool = work_pool if work_pool is not None else current.work_pool_name
                writes.append(partial(_update, writer, current, spec, pool))
                writer.prepare(spec)
                report.updated.append(full_name)
                if spec.paused != current.paused:
                    (report.paused if spec.paused else report.resumed).append(full_name)
            elif spec.paused != current.paused:
                toggle = client.pause_deployment if spec.paused else client.resume_deployment
                writes.append(partial(toggle, current.id))
                (report.paused if spec.paused else report.resumed).append(full_name)
            else:
                report.unchanged += 1
        for full_name, deployment in sorted(existing.items()):
            if full_name not in wanted:
                writes.append(partial(client.delete_deployment, deployment.id))
                report.removed.append(full_name)
        _run_bounded(writes, settings.sync_concurrent_writes)
    return report


def _update(
    writer: _Writer, current: DeploymentResponse, spec: DeploymentSpec, pool: str | None
) -> None:
    writer.update(current.id, spec, pool)
    _delete_stale_schedules(writer.client, current, spec.schedules)


def _run_bounded(writes: list[Callable[[], object]], limit: int) -> None:
    """Send the writes, at most ``limit`` at a time, over the one client.

    Every write is one deployment's own request(s), independent of the others, so their
    order does not matter. One by one, each waits a whole round trip of the server (about
    60 ms of its CPU, more under load), and 10,000 tenants took half an hour; a few in
    flight let a PostgreSQL-backed server overlap its database waits. On the embedded SQLite
    server they do the opposite (each write locks the file; the others get 503s and are
    retried with back-off), so the limit is a setting, ``DAAI_BACKUP_SYNC_CONCURRENT_WRITES``,
    1 by default. The first error is raised once the writes already sent have finished (the
    next sync redoes what is missing).
    """
    if len(writes) <= 1 or limit <= 1:
        for write in writes:
            write()
        return
    pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="sync")
    try:
        futures = [pool.submit(write) for write in writes]
        errors = [f.exception() for f in futures]
    except BaseException:  # Ctrl-C or the flow cancelled: send nothing more
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    for error in errors:
        if error is not None:
            raise error


def pull_steps(code_dir: Path = CODE_DIR) -> list[dict[str, Any]]:
    """What a worker does before a run: work in the checkout/image directory of the code."""
    return [{"prefect.deployments.steps.set_working_directory": {"directory": str(code_dir)}}]


class _Writer:
    """Creates and updates deployments over one client, as ``RunnerDeployment.apply`` would.

    The flow id, entrypoint, path and parameter schema are computed once per flow from a
    ``RunnerDeployment`` (so they are exactly what ``serve``/``apply`` register), then each
    deployment is one request: ``apply`` itself opens a client, looks the deployment up and
    infers a version from git on every call, about 10x slower for a thousand tenants.
    """

    def __init__(self, client: SyncPrefectClient, flows: Mapping[str, Flow[..., Any]]) -> None:
        self.client = client
        self.flows = flows
        self._templates: dict[str, tuple[UUID, dict[str, Any]]] = {}

    def _template(self, spec: DeploymentSpec) -> tuple[UUID, dict[str, Any]]:
        if spec.role not in self._templates:
            runner = to_runner(spec, self.flows)
            flow_id = self.client.create_flow_from_name(self.flows[spec.role].name)
            fields = {
                "entrypoint": runner.entrypoint,
                "path": runner._path,
                "parameter_openapi_schema": runner._parameter_openapi_schema.model_dump(
                    exclude_unset=True
                ),
                "enforce_parameter_schema": True,
            }
            self._templates[spec.role] = (flow_id, fields)
        return self._templates[spec.role]

    def prepare(self, spec: DeploymentSpec) -> None:
        """Compute the role's template before the writes run concurrently (no race on it)."""
        self._template(spec)

    def create(self, spec: DeploymentSpec, work_pool: str | None) -> UUID:
        flow_id, fields = self._template(spec)
        return self.client.create_deployment(
            flow_id=flow_id,
            name=spec.name,
            schedules=[DeploymentScheduleCreate.from_schedule(s) for s in spec.schedules],
            parameters=dict(spec.parameters),
            description=spec.description,
            tags=list(spec.tags),
            paused=spec.paused,
            work_pool_name=work_pool,
            pull_steps=pull_steps() if work_pool else None,
            job_variables={} if work_pool else None,
            **fields,
        )

    def update(self, deployment_id: UUID, spec: DeploymentSpec, work_pool: str | None) -> None:
        _, fields = self._template(spec)
        update: dict[str, Any] = {
            "parameters": dict(spec.parameters),
            "description": spec.description,
            "tags": list(spec.tags),
            "paused": spec.paused,
            "schedules": [
                DeploymentScheduleUpdate(
                    schedule=created.schedule,
                    active=created.active,
                    slug=created.slug,
                    parameters=created.parameters,
                )
                for created in (DeploymentScheduleCreate.from_schedule(s) for s in spec.schedules)
            ],
            **fields,
        }
        if work_pool is not None:  # naming no pool keeps the deployment's own
            update["work_pool_name"] = work_pool
            update["pull_steps"] = pull_steps()
        self.client.update_deployment(deployment_id, DeploymentUpdate(**update))


def _read_managed(client: SyncPrefectClient) -> dict[str, DeploymentResponse]:
    """Every deployment tagged :data:`MANAGED_TAG`, by ``flow/deployment`` name."""
    tagged = DeploymentFilter(tags=DeploymentFilterTags(all_=[MANAGED_TAG]))
    deployments: list[DeploymentResponse] = []
    offset = 0
    while True:
        page = client.read_deployments(deployment_filter=tagged, limit=PAGE, offset=offset)
        deployments.extend(page)
        if len(page) < PAGE:
            break
        offset += PAGE
    flow_ids = list({d.flow_id for d in deployments})
    names: dict[UUID, str] = {}
    for start in range(0, len(flow_ids), PAGE):
        chunk = flow_ids[start : start + PAGE]
        for flow in client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=chunk))):
            names[flow.id] = flow.name
    return {f"{names.get(d.flow_id, '?')}/{d.name}": d for d in deployments}


def _differs(spec: DeploymentSpec, current: DeploymentResponse, work_pool: str | None) -> bool:
    """Whether any field sync owns differs (paused is handled apart, as a cheap toggle)."""
    if dict(current.parameters) != spec.parameters:
        return True
    if set(current.tags) != set(spec.tags):
        return True
    if (current.description or "") != spec.description:
        return True
    if work_pool is not None and (
        current.work_pool_name != work_pool or current.pull_steps != pull_steps()
    ):
        return True
    return _schedule_key(spec.schedules) != _current_schedule_key(current)


def _schedule_key(items: Iterable[Schedule]) -> set[tuple[Any, ...]]:
    key: set[tuple[Any, ...]] = set()
    for s in items:
        if s.rrule is not None:
            what: tuple[Any, ...] = ("rrule", s.rrule)
        else:
            interval = s.interval
            seconds = (
                interval.total_seconds()
                if isinstance(interval, timedelta)
                else float(interval or 0)
            )
            what = ("interval", seconds, s.anchor_date.astimezone(UTC))
        key.add((s.slug, what, s.timezone, s.active, tuple(sorted(s.parameters.items()))))
    return key


def _current_schedule_key(current: DeploymentResponse) -> set[tuple[Any, ...]]:
    key: set[tuple[Any, ...]] = set()
    for item in current.schedules:
        schedule = item.schedule
        rrule = getattr(schedule, "rrule", None)
        if isinstance(rrule, str):
            what: tuple[Any, ...] = ("rrule", rrule)
        else:
            interval = getattr(schedule, "interval", None)
            anchor = getattr(schedule, "anchor_date", None)
            what = (
                "interval",
                interval.total_seconds() if isinstance(interval, timedelta) else None,
                anchor.astimezone(UTC) if isinstance(anchor, datetime) else None,
            )
        parameters = tuple(sorted((item.parameters or {}).items()))
        key.add((item.slug, what, getattr(schedule, "timezone", None), item.active, parameters))
    return key


def _delete_stale_schedules(
    client: SyncPrefectClient, current: DeploymentResponse, wanted: Iterable[Schedule]
) -> None:
    """Slugged updates add or patch schedules but never drop one: drop those no longer wanted."""
    slugs = {s.slug for s in wanted}
    for item in current.schedules:
        if item.slug not in slugs:
            client.delete_deployment_schedule(current.id, item.id)


def ensure_process_pool(name: str) -> bool:
    """Create process work pool ``name`` if missing; True when it was created."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return True
        return False
