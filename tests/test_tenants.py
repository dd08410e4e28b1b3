"""The tenant registry: validation names the tenant and the field; permissions; overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daai_backup.errors import PermissionDenied, TenantsFileInvalid, UnknownTenant
from daai_backup.tenants import TenantRegistry


def _tenant(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"id": "acme-hr", "workspace_name": "Acme HR"}
    base.update(fields)
    return base


def test_defaults_fill_in_database_frequency_and_subscription() -> None:
    registry = TenantRegistry.from_data({"tenants": [_tenant()]})
    tenant = registry["acme-hr"]
    assert tenant.database == "acme_hr"
    assert tenant.frequency == "15-day"
    assert tenant.environment == "production"
    assert tenant.subscription == "active"


def test_unknown_tenant_is_a_clear_error() -> None:
    registry = TenantRegistry.from_data({"tenants": [_tenant()]})
    with pytest.raises(UnknownTenant, match="unknown tenant 'nope'"):
        registry["nope"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"id": "Acme"}, "tenant 'Acme': field 'id'"),
        ({"id": "../etc"}, "field 'id'"),
        ({"id": "a/b"}, "field 'id'"),
        ({"id": "-lead"}, "field 'id'"),
        ({"frequency": "hourly"}, "unknown frequency 'hourly'"),
        ({"frequency": "daily"}, "sandbox workspaces only"),
        ({"frequency": "manual"}, "is not a schedule"),
        ({"environment": "staging"}, "field 'environment'"),
        ({"subscription": "paused"}, "field 'subscription'"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"storage_quota_mb": 0}, "field 'storage_quota_mb'"),
        ({"storage_url": "ftp://x"}, "field 'storage_url'"),
        ({"permissions": {"ann": ["delete"]}}, "field 'permissions.ann"),
        ({"database": "bad.name"}, "not a valid MongoDB database name"),
        ({"colour": "red"}, "field 'colour'"),
        ({"frequency_override": {"frequency": "24-hour", "until": "2026-12-01T00:00:00"}}, "UTC"),
    ],
)
def test_invalid_tenants_are_refused_naming_tenant_and_field(
    fields: dict[str, object], expected: str
) -> None:
    with pytest.raises(TenantsFileInvalid, match="tenant '") as info:
        TenantRegistry.from_data({"tenants": [_tenant(**fields)]})
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_daily_is_allowed_on_a_sandbox() -> None:
    registry = TenantRegistry.from_data(
        {"tenants": [_tenant(frequency="daily", environment="sandbox")]}
    )
    assert registry["acme-hr"].frequency == "daily"


def test_duplicates_and_shared_databases_are_refused() -> None:
    with pytest.raises(TenantsFileInvalid, match="listed twice"):
        TenantRegistry.from_data({"tenants": [_tenant(), _tenant()]})
    with pytest.raises(TenantsFileInvalid, match="share database"):
        TenantRegistry.from_data(
            {"tenants": [_tenant(database="x"), _tenant(id="other", database="x")]}
        )


def test_permissions_map_create_and_restore() -> None:
    tenant = TenantRegistry.from_data(
        {"tenants": [_tenant(permissions={"priya": ["create", "restore"], "sam": ["create"]})]}
    )["acme-hr"]
    tenant.require("priya", "restore")
    tenant.require("sam", "create")
    with pytest.raises(PermissionDenied, match="'sam' may not restore"):
        tenant.require("sam", "restore")
    with pytest.raises(PermissionDenied, match="an actor is needed"):
        tenant.require(None, "create")


def test_frequency_override_applies_until_it_expires() -> None:
    until = datetime(2026, 12, 1, tzinfo=UTC)
    tenant = TenantRegistry.from_data(
        {"tenants": [_tenant(frequency_override={"frequency": "24-hour", "until": until})]}
    )["acme-hr"]
    assert tenant.active_frequency(until - timedelta(seconds=1)) == "24-hour"
    assert tenant.active_frequency(until) == "15-day"


def test_load_reports_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(TenantsFileInvalid, match="does not exist"):
        TenantRegistry.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants: [\n  - id: x\n  bad")
    with pytest.raises(TenantsFileInvalid, match="not valid YAML at line"):
        TenantRegistry.load(bad)
    good = tmp_path / "good.yaml"
    good.write_text("tenants:\n  - id: crm-one\n    workspace_name: CRM One\n")
    assert list(TenantRegistry.load(good)) == ["crm-one"]


@pytest.mark.parametrize(
    ("evil_url", "expected"),
    [
        ("file:///srv/backups/acme", "share the storage root"),
        ("file:///srv/backups/acme/inside", "inside tenant 'acme'"),
        ("file:///srv/backups", "holds every tenant's default folder"),
        ("file:///srv", "holds every tenant's default folder"),
    ],
)
def test_storage_roots_may_not_overlap(evil_url: str, expected: str) -> None:
    registry = TenantRegistry.from_data(
        {"tenants": [_tenant(id="acme"), _tenant(id="evil", storage_url=evil_url)]}
    )
    with pytest.raises(TenantsFileInvalid, match=expected):
        registry.check_storage_roots("file:///srv/backups")


def test_separate_roots_and_prefix_ids_are_fine() -> None:
    registry = TenantRegistry.from_data(
        {
            "tenants": [
                _tenant(id="acme"),
                _tenant(id="acme-2"),
                _tenant(id="big", storage_url="s3://big-bucket/acme"),
                _tenant(id="big-2", storage_url="s3://big-bucket/acme-2"),
            ]
        }
    )
    registry.check_storage_roots("file:///srv/backups/")
    assert registry["acme"].storage_root("file:///srv/backups/") == "file:///srv/backups/acme"
