"""Stand-in flows with the real flows' names and signatures, and a registry builder.

Sync and schedule tests exercise the Prefect API, not the engine, so they register these
instead of importing ``flows/`` (whose bodies need MongoDB and storage).
"""

from __future__ import annotations

from typing import Any

from prefect import Flow, flow

from daai_backup.tenants import TenantRegistry


@flow(name="backup")
def backup(
    tenant: str, label: str = "manual", actor: str | None = None, note: str | None = None
) -> None:
    """Stand-in for flows.backup.backup."""


@flow(name="restore")
def restore(
    tenant: str,
    file: str | None = None,
    actor: str | None = None,
    confirm_workspace_name: str | None = None,
    confirm_timeout_seconds: int = 3600,
) -> None:
    """Stand-in for flows.restore.restore."""


@flow(name="retention")
def retention(tenant: str, dry_run: bool = False) -> None:
    """Stand-in for flows.retention.retention."""


@flow(name="retention-sweep")
def retention_sweep() -> None:
    """Stand-in for flows.retention.retention_sweep."""


@flow(name="verify")
def verify(tenant: str | None = None, file: str | None = None) -> None:
    """Stand-in for flows.verify.verify."""


@flow(name="sync-schedules")
def sync_schedules(work_pool: str | None = None) -> None:
    """Stand-in for flows.sync.sync_schedules."""


@flow(name="fleet")
def fleet() -> None:
    """Stand-in for flows.fleet.fleet."""


@flow(name="diff")
def diff(tenant: str, a: str, b: str = "live", actor: str | None = None, show: int = 0) -> None:
    """Stand-in for flows.inspect.diff."""


@flow(name="capture")
def capture(minutes: float = 10) -> None:
    """Stand-in for flows.capture.capture."""


@flow(name="timeline")
def timeline(
    tenant: str, actor: str | None = None, since: str | None = None, until: str | None = None
) -> None:
    """Stand-in for flows.timeline.timeline."""


@flow(name="rekey")
def rekey(tenant: str | None = None, all_tenants: bool = False) -> None:
    """Stand-in for flows.rekey.rekey."""


FLOWS: dict[str, Flow[..., Any]] = {
    "backup": backup,
    "restore": restore,
    "retention": retention,
    "retention-sweep": retention_sweep,
    "sync-schedules": sync_schedules,
    "verify": verify,
    "fleet": fleet,
    "diff": diff,
    "capture": capture,
    "timeline": timeline,
    "rekey": rekey,
}


def registry(*tenants: dict[str, Any]) -> TenantRegistry:
    return TenantRegistry.from_data({"tenants": list(tenants)})
