"""Restores as maintenance windows, and what the suite hears: events, the flag, the handshake.

Events (``prefect.events.emit_event``; the engine never emits), each about the tenant as the
resource ``daai-backup.tenant.<id>`` (as the fleet flow's ``daai-backup.tenant.<state>``
events), each following the one before (``follows``), with related resources: the flow run
(role ``flow-run``), the backup file (``backup``), the moment (``moment``), the copy
(``copy``) and the actor (``actor``), as far as they apply. See ``docs/operations.md``
("What the suite hears during a restore") for the sequence of each kind of restore.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from prefect import get_run_logger

from daai_backup import maintenance
from daai_backup.errors import DaaiBackupError, MaintenanceNotConfirmed
from daai_backup.tenants import Tenant

if TYPE_CHECKING:
    from prefect.events import Event

    from daai_backup.lease import Lease
    from daai_backup.operations import EngineContext

TENANT_PREFIX: Final = "daai-backup.tenant"
RESTORE_PREFIX: Final = "daai-backup.restore"
BACKUP_PREFIX: Final = "daai-backup.backup"
REASON_CHARS: Final = 500
"""An unexpected error's message is cut to this length in an event (refusals are one line)."""


def reason_of(exc: BaseException) -> str:
    """The one line an event carries about an error: a refusal's message, else the type and
    the first line of the message, cut short."""
    if isinstance(exc, DaaiBackupError):
        return str(exc)
    first = (str(exc).splitlines() or [""])[0][:REASON_CHARS]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _run_context() -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The flow run as a related resource, and its name, id and URL for the payload."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if run_id is None:
        return [], {}
    related = [
        {
            "prefect.resource.id": f"prefect.flow-run.{run_id}",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": str(flow_run.get_name()),
        }
    ]
    return related, {
        "flow_run": flow_run.get_name(),
        "flow_run_id": run_id,
        "url": flow_run.get_flow_run_ui_url(),
    }


class TenantEvents:
    """The events of one operation of one tenant, in order (each follows the previous)."""

    def __init__(
        self,
        prefix: str,
        tenant: Tenant,
        *,
        actor: str | None,
        file: str | None = None,
        at: str | None = None,
        into: str | None = None,
    ) -> None:
        self.prefix = prefix
        self.tenant = tenant
        self.actor = actor
        self.file = file
        self.at = at
        self.into = into
        self.emitted: list[str] = []
        self.outcome: str | None = None
        """``completed`` or ``failed`` once that event went out."""
        self._last: Event | None = None

    def related(self) -> list[dict[str, str]]:
        run, _ = _run_context()
        out = list(run)
        if self.file:
            out.append(
                {
                    "prefect.resource.id": f"daai-backup.backup.{self.tenant.id}.{self.file}",
                    "prefect.resource.role": "backup",
                    "prefect.resource.name": self.file,
                }
            )
        if self.at:
            out.append(
                {
                    "prefect.resource.id": f"daai-backup.moment.{self.tenant.id}.{self.at}",
                    "prefect.resource.role": "moment",
                    "prefect.resource.name": self.at,
                }
            )
        if self.into:
            out.append(
                {
                    "prefect.resource.id": f"daai-backup.copy.{self.into}",
                    "prefect.resource.role": "copy",
                    "prefect.resource.name": self.into,
                }
            )
        if self.actor:
            out.append(
                {
                    "prefect.resource.id": f"daai-backup.actor.{self.actor}",
                    "prefect.resource.role": "actor",
                    "prefect.resource.name": self.actor,
                }
            )
        return out

    def emit(self, name: str, **payload: Any) -> None:
        """Emit ``<prefix>.<name>`` about the tenant; never fails the operation."""
        from prefect.events import emit_event

        _, run = _run_context()
        body = {
            "tenant": self.tenant.id,
            "workspace": self.tenant.workspace_name,
            "actor": self.actor,
            "file": self.file,
            "at": self.at,
            "into": self.into,
            **payload,
            **run,
        }
        try:
            event = emit_event(
                event=f"{self.prefix}.{name}",
                resource={
                    "prefect.resource.id": f"{TENANT_PREFIX}.{self.tenant.id}",
                    "prefect.resource.name": self.tenant.id,
                },
                related=self.related(),
                payload=body,
                follows=self._last,
            )
        except Exception:  # an event too large, say: the restore itself goes on
            get_run_logger().warning("tenant %s: event %s not emitted", self.tenant.id, name)
            return
        self._last = event or self._last
        self.emitted.append(name)

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    def completed(self, **payload: Any) -> None:
        self.outcome = "completed"
        self.emit("completed", **payload)

    def failed(
        self, exc: BaseException, *, live_changed: bool, refused: bool, **payload: Any
    ) -> None:
        """``failed``, once per operation: ``refused`` when the operation said no before
        doing anything (a refusal's one line is the reason), else an error."""
        if self.finished:
            return
        self.outcome = "failed"
        self.emit(
            "failed",
            refused=refused and not live_changed,
            error=type(exc).__name__,
            reason=reason_of(exc),
            live_database_changed=live_changed,
            **payload,
        )


def expected_end(staging_seconds: float, now: datetime | None = None) -> datetime:
    """When a window is expected to end: the safety backup reads what staging loaded and the
    swap renames it, so twice the staging time, plus 30 s (an estimate, shown as such)."""
    return (now or datetime.now(UTC)) + timedelta(seconds=2 * staging_seconds + 30)


class Window:
    """What the restore tells its maintenance window as it goes."""

    def __init__(self) -> None:
        self.swapping = False
        self.live_changed = False


@contextmanager
def maintenance_window(
    ctx: EngineContext,
    tenant: Tenant,
    lease: Lease,
    events: TenantEvents,
    *,
    operation: str,
    detail: str | None,
    ends_at: datetime,
) -> Iterator[Window]:
    """The tenant's maintenance window, held under its lease: record the flag, emit
    ``maintenance-started``, ask the suite's webhook when one is configured (no confirmation:
    ``MaintenanceNotConfirmed``, nothing changed), yield; at the end emit ``failed`` if the
    block raised (whether the live database changed: a swap journal left mid-way says so),
    remove the flag and emit ``maintenance-ended``.
    """
    from prefect.runtime import flow_run

    logger = get_run_logger()
    client, settings = ctx.mongo_client, ctx.settings
    run = flow_run.get_name()
    record = maintenance.begin(
        client,
        settings,
        tenant.id,
        lease_token=lease.token,
        operation=operation,
        detail=detail,
        actor=events.actor,
        run=None if run is None else str(run),
        expected_end=ends_at,
    )
    handshake = settings.maintenance_webhook_url is not None
    events.emit(
        "maintenance-started",
        since=record.since.isoformat(timespec="seconds"),
        expected_end=ends_at.isoformat(timespec="seconds"),
        handshake=handshake,
    )
    logger.info("tenant %s: in maintenance: %s", tenant.id, record.describe())
    window = Window()
    try:
        if settings.maintenance_webhook_url is not None:
            token = settings.maintenance_webhook_token
            maintenance.request_handshake(
                settings.maintenance_webhook_url,
                None if token is None else token.get_secret_value(),
                settings.maintenance_webhook_timeout_seconds,
                maintenance.handshake_body(
                    tenant_id=tenant.id,
                    workspace=tenant.workspace_name,
                    operation=operation,
                    detail=detail,
                    actor=events.actor,
                    run=record.run,
                    expected_end=ends_at,
                ),
            )
            logger.info("tenant %s: the suite confirmed the maintenance", tenant.id)
        yield window
    except BaseException as exc:
        if window.swapping:
            window.live_changed = maintenance.swap_started(client, tenant.database)
        # In the window only an unconfirmed handshake is a refusal: anything else failed.
        refused = isinstance(exc, MaintenanceNotConfirmed)
        events.failed(exc, live_changed=window.live_changed, refused=refused)
        raise
    finally:
        try:
            maintenance.end(client, settings, tenant.id, lease.token)
        except DaaiBackupError as exc:  # the lease's end makes the record stale anyway
            logger.warning("tenant %s: maintenance record not removed: %s", tenant.id, exc)
        events.emit(
            "maintenance-ended",
            live_database_changed=window.live_changed,
            outcome=events.outcome or "failed",
        )


def lost_writes(ctx: EngineContext, tenant: Tenant, safety_file: str) -> int | None:
    """The live database's writes since the safety backup's snapshot (lost at the swap:
    the safety backup does not hold them), or None when they cannot be counted (a
    best-effort safety backup has no snapshot time; a server without change streams)."""
    from daai_backup.operations import manifest_of

    logger = get_run_logger()
    try:
        cluster_time = manifest_of(ctx, tenant, safety_file).cluster_time
        if cluster_time is None:
            logger.warning(
                "tenant %s: writes after the safety backup not counted (no snapshot time)",
                tenant.id,
            )
            return None
        return maintenance.count_writes_since(ctx.mongo_client, tenant.database, cluster_time)
    except Exception as exc:  # counting is a report: it never stops the restore
        logger.warning(
            "tenant %s: writes after the safety backup not counted: %s", tenant.id, reason_of(exc)
        )
        return None


__all__ = [
    "BACKUP_PREFIX",
    "RESTORE_PREFIX",
    "TenantEvents",
    "Window",
    "expected_end",
    "lost_writes",
    "maintenance_window",
    "reason_of",
]
