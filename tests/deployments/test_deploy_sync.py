"""sync_deployments against a real Prefect server (the test harness).

Creates, updates, removes, pauses, resumes; idempotent; the override expires by itself;
deployments this product does not manage are never touched.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from deploy_helpers import registry
from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import DeploymentResponse

from daai_backup.settings import Settings
from deployments import build
from deployments.sync import SyncReport, ensure_process_pool, sync_deployments

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
# One deployment per operation role (backup deployments are per tenant).
OPS = {f"{role}/{role}" for role in build.ROLES if role != build.BACKUP}


def _tenant(tenant_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": tenant_id, "workspace_name": tenant_id.title(), **fields}


def _sync(
    tenants: list[dict[str, Any]],
    settings: Settings,
    flows: dict[str, Any],
    now: datetime = NOW,
    work_pool: str | None = None,
) -> SyncReport:
    return sync_deployments(
        registry(*tenants).values(), settings=settings, now=now, flows=flows, work_pool=work_pool
    )


def _read(name: str) -> DeploymentResponse:
    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


def test_create_then_idempotent(
    clean_server: str, settings: Settings, stand_in_flows: dict[str, Any]
) -> None:
    tenants = [_tenant("acme-hr"), _tenant("globex-crm", frequency="3-day", timezone="UTC")]
    first = _sync(tenants, settings, stand_in_flows)
    assert set(first.created) == OPS | {"backup/backup-acme-hr", "backup/backup-globex-crm"}
    assert (first.updated, first.removed, first.paused, first.resumed) == ([], [], [], [])

    second = _sync(tenants, settings, stand_in_flows)
    assert not second.changed, second.summary()
    assert second.unchanged == len(OPS) + 2

    deployment = _read("backup/backup-globex-crm")
    # A Quick Run is Backup Now; the schedule's own parameters label scheduled runs.
    assert deployment.parameters == {"tenant": "globex-crm", "label": "manual"}
    assert set(deployment.tags) == {"daai-backup", "tenant:globex-crm", "env:production"}
    assert "every 3 days at " in (deployment.description or "")
    schema = deployment.parameter_openapi_schema
    assert "actor" in schema["required"]  # type: ignore[index]
    assert schema["properties"]["actor"]["type"] == "string"  # type: ignore[index]
    assert not deployment.paused
    [schedule] = deployment.schedules
    assert schedule.parameters == {"label": "3-day", "actor": "scheduler"}
    assert schedule.slug.startswith("3-day: every 3 days at ")
    assert schedule.slug.endswith("UTC (UTC)")
    assert schedule.schedule.rrule.endswith("FREQ=DAILY;INTERVAL=3")  # type: ignore[union-attr]
    assert schedule.schedule.timezone == "UTC"  # type: ignore[union-attr]
    restore = _read("restore/restore")
    assert restore.schedules == []
    assert "tenant" in restore.parameter_openapi_schema["properties"]  # type: ignore[index]
    assert "actor" in restore.parameter_openapi_schema["required"]  # type: ignore[index]
    assert "file" not in restore.parameter_openapi_schema["required"]  # type: ignore[index]


def test_update_pause_resume_remove(
    clean_server: str, settings: Settings, stand_in_flows: dict[str, Any]
) -> None:
    tenants = [_tenant("acme-hr"), _tenant("globex-crm"), _tenant("initech-inv")]
    _sync(tenants, settings, stand_in_flows)
    # A deployment someone else made, without the daai-backup tag: never touched.
    stand_in_flows["backup"].to_deployment(name="hand-made", tags=["other"]).apply()

    changed = [
        _tenant("acme-hr", frequency="7-day"),
        _tenant("globex-crm", subscription="suspended"),
    ]
    report = _sync(changed, settings, stand_in_flows)
    assert report.updated == ["backup/backup-acme-hr"]
    assert report.paused == ["backup/backup-globex-crm"]
    assert report.removed == ["backup/backup-initech-inv"]
    assert report.created == []
    assert report.unchanged == len(OPS)

    acme = _read("backup/backup-acme-hr")
    assert [s.slug.split(":")[0] for s in acme.schedules] == ["7-day"]  # the old one is gone
    assert acme.schedules[0].parameters["label"] == "7-day"
    assert acme.parameters["label"] == "manual"
    assert _read("backup/backup-globex-crm").paused
    assert _read("backup/hand-made").name == "hand-made"

    assert not _sync(changed, settings, stand_in_flows).changed

    resumed = _sync([changed[0], _tenant("globex-crm")], settings, stand_in_flows)
    assert resumed.resumed == ["backup/backup-globex-crm"]
    assert resumed.updated == []  # only the paused flag changed
    assert not _read("backup/backup-globex-crm").paused


def test_override_expires_back_to_own_frequency(
    clean_server: str, settings: Settings, stand_in_flows: dict[str, Any]
) -> None:
    until = NOW + timedelta(days=2)
    tenants = [_tenant("acme-hr", frequency_override={"frequency": "24-hour", "until": until})]
    _sync(tenants, settings, stand_in_flows, now=NOW)
    assert _read("backup/backup-acme-hr").schedules[0].parameters["label"] == "24-hour"
    # An hourly sync before the end changes nothing ...
    assert not _sync(tenants, settings, stand_in_flows, now=until - timedelta(hours=1)).changed
    # ... the first one after it brings the tenant's own frequency back.
    after = _sync(tenants, settings, stand_in_flows, now=until + timedelta(minutes=5))
    assert after.updated == ["backup/backup-acme-hr"]
    deployment = _read("backup/backup-acme-hr")
    assert deployment.schedules[0].parameters["label"] == "15-day"
    assert [s.slug.split(":")[0] for s in deployment.schedules] == ["15-day"]


def test_work_pool_registration(
    clean_server: str, settings: Settings, stand_in_flows: dict[str, Any]
) -> None:
    assert ensure_process_pool("daai-test-pool") in (True, False)
    assert ensure_process_pool("daai-test-pool") is False
    tenants = [_tenant("acme-hr")]
    _sync(tenants, settings, stand_in_flows)
    moved = _sync(tenants, settings, stand_in_flows, work_pool="daai-test-pool")
    assert len(moved.updated) == len(OPS) + 1  # every deployment moves to the pool
    assert _read("backup/backup-acme-hr").work_pool_name == "daai-test-pool"
    assert _read("sync-schedules/sync-schedules").parameters == {"work_pool": "daai-test-pool"}
    assert not _sync(tenants, settings, stand_in_flows, work_pool="daai-test-pool").changed
    # A later sync without a pool (e.g. the hourly one) leaves the pool alone.
    plain = _sync(tenants, settings, stand_in_flows)
    assert plain.updated == ["sync-schedules/sync-schedules"]  # its own parameter only
    assert _read("backup/backup-acme-hr").work_pool_name == "daai-test-pool"


@pytest.mark.parametrize("frequency", ["daily"])
def test_refused_frequency_writes_nothing(
    clean_server: str, settings: Settings, stand_in_flows: dict[str, Any], frequency: str
) -> None:
    from daai_backup.errors import ConfigError
    from daai_backup.tenants import Tenant

    bad = Tenant.model_validate(_tenant("acme-hr")).model_copy(update={"frequency": frequency})
    with pytest.raises(ConfigError, match="sandbox workspaces only"):
        sync_deployments([bad], settings=settings, now=NOW, flows=stand_in_flows)
    with get_client(sync_client=True) as client:
        assert client.read_deployments() == [] or all(
            "daai-backup" not in d.tags for d in client.read_deployments()
        )
