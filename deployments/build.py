"""Registry -> the deployments daai-backup wants on the Prefect server.

Names (Prefect shows ``<flow name>/<deployment name>``):

==========================  ======================================  ==========================
deployment                  parameters                              schedule
==========================  ======================================  ==========================
``backup/backup-<tenant>``  ``{tenant, label: manual}``             RRule with ``{label: <freq>}``
``restore/restore``         given per run (tenant, file, actor...)  none
``retention/retention``     given per run (tenant, dry_run)         none
``verify/verify``           given per run (tenant, file)            weekly drill, 05:00 Mon
``retention-sweep/...``     none                                    daily, 04:00 default tz
``sync-schedules/...``      ``{work_pool}``                         hourly
``fleet/fleet``             none                                    every 15 minutes
``diff/diff``               given per run (tenant, a, b, actor...)  none
``capture/capture``         ``{minutes: 10}``                         every 10 minutes, limit 1
``timeline/timeline``       given per run (tenant, actor, since...) none
==========================  ======================================  ==========================

One backup deployment per tenant keeps "Backup Now", the run history and pausing per tenant
in Prefect's UI. Its default parameters are a manual backup (a Quick Run in the UI *is* Backup
Now, and is refused without an ``actor`` holding ``create``); its schedule carries its own
parameters (``label``: the frequency), so scheduled runs are labelled by the schedule that
made them. Runs are tagged with their label at run time (``label:<label>``), not through the
deployment, whose tags every run inherits. Restore and retention are one deployment each
because their runs always say which tenant. Every deployment carries the
:data:`MANAGED_TAG`, which is how sync knows what it may delete.

:func:`desired_specs` is pure (no server, no flow import); :func:`to_runner` turns a spec
into Prefect's ``RunnerDeployment`` given the flow objects (:func:`load_flows`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Schedule

from daai_backup.errors import ConfigError
from daai_backup.policy import MANUAL
from daai_backup.settings import Settings
from daai_backup.tenants import Tenant
from deployments import schedules

if TYPE_CHECKING:
    from prefect import Flow

MANAGED_TAG: Final = "daai-backup"
"""Every deployment this product creates carries it; sync deletes only tagged ones."""

BACKUP, RESTORE, RETENTION, RETENTION_SWEEP, SYNC, VERIFY, FLEET, CAPTURE = (
    "backup",
    "restore",
    "retention",
    "retention-sweep",
    "sync-schedules",
    "verify",
    "fleet",
    "capture",
)
DIFF: Final = "diff"
TIMELINE: Final = "timeline"
REKEY: Final = "rekey"
ROLES: Final = (
    BACKUP,
    RESTORE,
    RETENTION,
    RETENTION_SWEEP,
    SYNC,
    VERIFY,
    FLEET,
    DIFF,
    CAPTURE,
    TIMELINE,
    REKEY,
)

FLOW_OBJECTS: Final[dict[str, str]] = {
    BACKUP: "flows.backup:backup",
    RESTORE: "flows.restore:restore",
    RETENTION: "flows.retention:retention",
    RETENTION_SWEEP: "flows.retention:retention_sweep",
    SYNC: "flows.sync:sync_schedules",
    VERIFY: "flows.verify:verify",
    FLEET: "flows.fleet:fleet",
    DIFF: "flows.inspect:diff",
    CAPTURE: "flows.capture:capture",
    TIMELINE: "flows.timeline:timeline",
    REKEY: "flows.rekey:rekey",
}
"""Where each role's flow object lives (``module:attribute``)."""

RETENTION_SWEEP_HOUR: Final = 4
"""The daily sweep runs at 04:00 in the default time zone, after the backup window."""

VERIFY_DRILL_HOUR: Final = 5
"""The verify drill runs at 05:00 in the default time zone, after the retention sweep."""

FLEET_EVERY_MINUTES: Final = 15
"""The fleet view is recomputed (and overdue tenants noticed) this often."""

CAPTURE_EVERY_MINUTES: Final = 10
"""Change capture runs this long and is scheduled this often: back to back."""


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment as daai-backup wants it; compared field by field by sync."""

    role: str
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: tuple[Schedule, ...] = ()
    tags: tuple[str, ...] = ()
    paused: bool = False
    description: str = ""
    tenant: str | None = None
    required: tuple[str, ...] = ()
    """Parameters the run form must have filled (optional in Python for direct calls)."""
    concurrency_limit: int | None = None
    """At most this many runs at once; a run due while the limit is full is cancelled."""


def backup_deployment_name(tenant_id: str) -> str:
    return f"backup-{tenant_id}"


def tenant_spec(tenant: Tenant, *, settings: Settings, now: datetime) -> DeploymentSpec:
    """The backup deployment of one tenant at ``now`` (override applied, pause if suspended).

    Raises ``ConfigError`` naming the tenant when its frequency is not allowed in its
    environment (``daily`` is sandbox only).
    """
    label = tenant.active_frequency(now)
    try:
        schedule = schedules.backup_schedule(
            tenant,
            label,
            default_timezone=settings.timezone,
            spread_minutes=settings.schedule_spread_minutes,
        )
    except ConfigError as exc:
        raise ConfigError(f"tenant {tenant.id!r}: {exc}") from None
    suspended = tenant.subscription == "suspended"
    until = ""
    override = tenant.frequency_override
    if override is not None and label == override.frequency and now < override.until:
        until = f" (override until {override.until.isoformat()}, then {tenant.frequency})"
    when = schedules.describe_backup_schedule(
        tenant,
        label,
        default_timezone=settings.timezone,
        spread_minutes=settings.schedule_spread_minutes,
    )
    return DeploymentSpec(
        role=BACKUP,
        name=backup_deployment_name(tenant.id),
        parameters={"tenant": tenant.id, "label": MANUAL},
        schedules=(schedule,),
        tags=(MANAGED_TAG, f"tenant:{tenant.id}", f"env:{tenant.environment}"),
        paused=suspended,
        # Pausing shows in Prefect's UI on its own; the description stays put so that
        # pausing and resuming are a cheap toggle, not an update.
        description=(
            f"Backups of {tenant.workspace_name} ({tenant.id}): {label}, {when}{until}. "
            "Run = Backup Now (give your name as actor; it needs the create permission)."
        ),
        tenant=tenant.id,
        required=("actor",),
    )


def operation_specs(settings: Settings, *, work_pool: str | None) -> list[DeploymentSpec]:
    """The tenant-independent deployments: restore, retention, verify, the sweep, the sync,
    the fleet view, the diff, the capture and the timeline."""
    return [
        DeploymentSpec(
            role=RESTORE,
            name=RESTORE,
            tags=(MANAGED_TAG, "operation:restore"),
            description=(
                "Restore a tenant's backup: leave file empty to pick it from a list; you are "
                "asked to type the workspace name; a safety backup is taken first."
            ),
            required=("actor",),
        ),
        DeploymentSpec(
            role=RETENTION,
            name=RETENTION,
            tags=(MANAGED_TAG, "operation:retention"),
            description="Apply the retention policy to one tenant (dry_run to preview).",
        ),
        DeploymentSpec(
            role=VERIFY,
            name=VERIFY,
            schedules=_drill_schedules(settings),
            tags=(MANAGED_TAG, "operation:verify"),
            description=(
                "Restore drill without a database: read a tenant's backups whole and check "
                "every tag and CRC (file empty: every backup; tenant empty: the newest backup "
                "of every tenant, which the schedule runs)."
            ),
        ),
        DeploymentSpec(
            role=RETENTION_SWEEP,
            name=RETENTION_SWEEP,
            schedules=(
                schedules.daily_schedule(
                    RETENTION_SWEEP_HOUR, settings.timezone, slug="retention-sweep-daily"
                ),
            ),
            tags=(MANAGED_TAG, "operation:retention"),
            description="Apply retention to every tenant, once a day.",
        ),
        DeploymentSpec(
            role=SYNC,
            name=SYNC,
            parameters={"work_pool": work_pool},
            schedules=(schedules.hourly_schedule(slug="sync-schedules-hourly"),),
            tags=(MANAGED_TAG, "operation:sync"),
            description=(
                "Re-apply the tenant registry to the deployments every hour (overrides expire, "
                "suspended tenants pause)."
            ),
        ),
        DeploymentSpec(
            role=FLEET,
            name=FLEET,
            schedules=(
                schedules.every_minutes_schedule(FLEET_EVERY_MINUTES, slug="fleet-every-15-min"),
            ),
            tags=(MANAGED_TAG, "operation:fleet"),
            description=(
                "Every tenant's state (ok, overdue, failing, suspended, no key, waiting for "
                "first backup) as the 'fleet' table; posts tenants that become overdue or failing."
            ),
        ),
        DeploymentSpec(
            role=DIFF,
            name=DIFF,
            tags=(MANAGED_TAG, "operation:diff"),
            description=(
                "What differs between two backups of a tenant (b: another backup, or live): "
                "documents added, removed, changed per collection, indexes and options. "
                "Read only; the actor needs the restore permission."
            ),
            required=("actor",),
        ),
        DeploymentSpec(
            role=CAPTURE,
            name=CAPTURE,
            parameters={"minutes": CAPTURE_EVERY_MINUTES},
            schedules=(
                schedules.every_minutes_schedule(
                    CAPTURE_EVERY_MINUTES, slug="capture-back-to-back"
                ),
            ),
            tags=(MANAGED_TAG, "operation:capture"),
            description=(
                "Continuous change capture of the cluster (point-in-time restore): bounded "
                "runs back to back, never two at once; gaps start fresh backups and post."
            ),
            concurrency_limit=1,
        ),
        DeploymentSpec(
            role=TIMELINE,
            name=TIMELINE,
            tags=(MANAGED_TAG, "operation:timeline"),
            description=(
                "A tenant's changes per minute and collection from its captured changes, and "
                "the mass changes (bulk deletes, drops, imports) with the moment before each, "
                "for a restore to a moment. Read only; the actor needs the restore permission."
            ),
            required=("actor",),
        ),
        DeploymentSpec(
            role=REKEY,
            name=REKEY,
            tags=(MANAGED_TAG, "operation:rekey"),
            description=(
                "After a key rotation: re-encrypt every file made under a previous key to the "
                "current key (tenant, or all_tenants), each verified before it replaces the "
                "old one; resumable."
            ),
            concurrency_limit=1,
        ),
    ]


def _drill_schedules(settings: Settings) -> tuple[Schedule, ...]:
    """The verify drill's schedule (none when ``verify_drill_days`` is 0)."""
    days = settings.verify_drill_days
    if days == 0:
        return ()
    every = "weekly" if days == 7 else f"every-{days}-days"
    return (
        schedules.every_days_schedule(
            days, VERIFY_DRILL_HOUR, settings.timezone, slug=f"verify-drill-{every}"
        ),
    )


def desired_specs(
    tenants: Iterable[Tenant],
    *,
    settings: Settings,
    now: datetime | None = None,
    work_pool: str | None = None,
) -> list[DeploymentSpec]:
    """Every deployment daai-backup wants for ``tenants`` at ``now``."""
    now = now or datetime.now(UTC)
    specs = operation_specs(settings, work_pool=work_pool)
    specs.extend(tenant_spec(tenant, settings=settings, now=now) for tenant in tenants)
    return specs


def load_flows() -> dict[str, Flow[..., Any]]:
    """Import each role's flow object (the flows package lands separately from this one)."""
    flows: dict[str, Flow[..., Any]] = {}
    for role, ref in FLOW_OBJECTS.items():
        module_name, attribute = ref.split(":")
        try:
            module = importlib.import_module(module_name)
            flows[role] = getattr(module, attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"flow {ref} cannot be loaded ({exc}): is the code complete?"
            ) from exc
    return flows


def to_runner(
    spec: DeploymentSpec, flows: Mapping[str, Flow[..., Any]], *, work_pool: str | None = None
) -> RunnerDeployment:
    """Prefect's deployment object for ``spec`` (apply it, or pass it to ``serve``)."""
    flow = flows[spec.role]
    runner = flow.to_deployment(
        name=spec.name,
        schedules=list(spec.schedules),
        parameters=dict(spec.parameters),
        tags=list(spec.tags),
        paused=spec.paused,
        description=spec.description,
        work_pool_name=work_pool,
        concurrency_limit=(
            ConcurrencyLimitConfig(
                limit=spec.concurrency_limit,
                collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW,
            )
            if spec.concurrency_limit is not None
            else None
        ),
    )
    assert isinstance(runner, RunnerDeployment)  # the sync form (not awaited)
    schema = runner._parameter_openapi_schema
    for name in spec.required:
        # Optional in Python (a direct call is refused by the flow itself, in one line), but
        # the run form marks it required and the server refuses a run without it.
        field = {k: v for k, v in schema.properties[name].items() if k not in ("anyOf", "default")}
        schema.properties[name] = {**field, "type": "string", "minLength": 1}
        if name not in schema.required:
            schema.required.append(name)
    return runner


__all__ = [
    "MANAGED_TAG",
    "DeploymentSpec",
    "backup_deployment_name",
    "desired_specs",
    "load_flows",
    "operation_specs",
    "tenant_spec",
    "to_runner",
]
