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
    with pytest.raises(TenantsFileInvalid, match="differ only in case"):
        TenantRegistry.from_data(
            {"tenants": [_tenant(database="acme_hr"), _tenant(id="other", database="Acme_HR")]}
        )


@pytest.mark.parametrize("database", ["admin", "local", "config", "Admin", "daai_backup_control"])
def test_a_tenant_may_not_use_mongodbs_or_the_products_own_database(database: str) -> None:
    registry = TenantRegistry.from_data({"tenants": [_tenant(database=database)]})
    with pytest.raises(TenantsFileInvalid, match="is reserved") as refused:
        registry.check_databases("daai_backup_control")
    assert "\n" not in str(refused.value)
    TenantRegistry.from_data({"tenants": [_tenant(database="acme_hr")]}).check_databases(
        "daai_backup_control"
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


# Other spellings of tenant 'ten-b''s default folder (file:///srv/backups/ten-b), or of a
# place inside it: each must be refused, not compared as a different string.
SPELLINGS_OF_TEN_B = [
    ("file:///srv/backups//ten-b", "share the storage root"),
    ("file:///srv//backups/ten-b", "share the storage root"),
    ("file:///srv/backups/./ten-b", "share the storage root"),
    ("file:///srv/./backups/././ten-b/", "share the storage root"),
    ("file:///srv/backups/ten-b/", "share the storage root"),
    ("file:///srv/backups/ten-b//", "share the storage root"),
    ("file:///srv/backups%2Ften-b", "share the storage root"),
    ("file:///srv/backups%2ften-b", "share the storage root"),
    ("file:///srv/backups/%2e/ten-b", "share the storage root"),
    ("file:///srv/backups/%2E/ten-b", "share the storage root"),
    ("file:///srv/back%75ps/ten-b", "share the storage root"),
    ("file:///srv/backups/ten-b/db-backups", "inside tenant 'ten-b'"),
    ("file:///srv/backups//ten-b/./db-backups/", "inside tenant 'ten-b'"),
    ("file:///srv/backups/ten-b%2Fdb-backups", "inside tenant 'ten-b'"),
    ("file:///srv/backups/%2e%2e/backups/ten-b", "without '..'"),
    ("file:///srv/backups/%2E%2E/backups/ten-b", "without '..'"),
    ("file:///srv/backups/x/../ten-b", "without '..'"),
    ("file:///srv/backups/ten-b?x=1", "query or fragment"),
    ("file:///srv/backups/ten-b#x", "query or fragment"),
    ("file:///srv/backups/", "holds every tenant's default folder"),
    ("file:///srv//backups/.", "holds every tenant's default folder"),
    ("file:///", "holds every tenant's default folder"),
    ("file:///%2F", "holds every tenant's default folder"),
]


@pytest.mark.parametrize(("evil_url", "expected"), SPELLINGS_OF_TEN_B)
def test_no_spelling_reaches_another_tenants_folder(evil_url: str, expected: str) -> None:
    registry = TenantRegistry.from_data(
        {"tenants": [_tenant(id="ten-b"), _tenant(id="evil", storage_url=evil_url)]}
    )
    with pytest.raises(TenantsFileInvalid, match=expected) as info:
        registry.check_storage_roots("file:///srv/backups")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("evil_url", "expected"),
    [
        ("s3://bkt/tenants%2Ften-b", "share the storage root"),
        ("s3://bkt/tenants/ten-b/", "share the storage root"),
        ("s3://bkt/tenants/ten-b/db-backups", "inside tenant 'ten-b'"),
        ("s3://bkt/tenants//ten-b", "unacceptable path"),
        ("s3://bkt/tenants/./ten-b", "unacceptable path"),
        ("s3://bkt/tenants/%2e/ten-b", "unacceptable path"),
        ("s3://bkt", "holds every tenant's default folder"),
    ],
)
def test_no_s3_spelling_reaches_another_tenants_prefix(evil_url: str, expected: str) -> None:
    registry = TenantRegistry.from_data(
        {"tenants": [_tenant(id="ten-b"), _tenant(id="evil", storage_url=evil_url)]}
    )
    with pytest.raises(TenantsFileInvalid, match=expected):
        registry.check_storage_roots("s3://bkt/tenants")


def test_a_tenant_root_above_two_others_is_refused() -> None:
    registry = TenantRegistry.from_data(
        {
            "tenants": [
                _tenant(id="a", storage_url="s3://bkt/x/a"),
                _tenant(id="big", storage_url="s3://bkt/x"),
            ]
        }
    )
    with pytest.raises(TenantsFileInvalid, match="'a': storage root 's3://bkt/x/a' lies inside"):
        registry.check_storage_roots("file:///srv/backups")


def test_a_symlink_into_another_tenants_folder_is_refused(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    (storage / "ten-b").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "to-ten-b").symlink_to(storage / "ten-b")
    (tmp_path / "to-inside").symlink_to(storage / "ten-b" / "db-backups")
    (tmp_path / "to-elsewhere").symlink_to(elsewhere)
    (storage / "evil").symlink_to(storage / "ten-b")  # evil's own default folder
    default = storage.as_uri()

    def check(evil: dict[str, object]) -> None:
        TenantRegistry.from_data({"tenants": [_tenant(id="ten-b"), evil]}).check_storage_roots(
            default
        )

    with pytest.raises(TenantsFileInvalid, match="share the storage root"):
        check(_tenant(id="x", storage_url=(tmp_path / "to-ten-b").as_uri()))
    with pytest.raises(TenantsFileInvalid, match="inside tenant 'ten-b'"):
        check(_tenant(id="x", storage_url=(tmp_path / "to-inside").as_uri()))
    with pytest.raises(TenantsFileInvalid, match="share the storage root"):
        check(_tenant(id="evil"))
    check(_tenant(id="x", storage_url=(tmp_path / "to-elsewhere").as_uri()))  # fine


DUPLICATED_USER = """\
tenants:
  - id: acme-hr
    workspace_name: Acme HR
    permissions:
      priya@acme.example: [create, restore]
      sam@acme.example: [create]
      priya@acme.example: []
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            DUPLICATED_USER,
            "line 7: key 'priya@acme.example' appears twice in the same mapping (first at line 5)",
        ),
        (
            "tenants:\n  - id: a\n    workspace_name: A\n"
            "    frequency: 7-day\n    frequency: 3-day\n",
            "line 5: key 'frequency' appears twice",
        ),
        ("tenants: []\ntenants:\n  - id: a\n    workspace_name: A\n", "line 2: key 'tenants'"),
        ("tenants:\n  - {id: a, workspace_name: A, id: b}\n", "line 2: key 'id' appears twice"),
        ("x:\n  deep:\n    deeper: {1: a, 1: b}\n", "line 3: key 1 appears twice"),
    ],
)
def test_a_key_written_twice_is_refused_with_its_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(text)
    with pytest.raises(TenantsFileInvalid) as info:
        TenantRegistry.load(path)
    message = str(info.value)
    assert message.startswith(f"{path} line ")
    assert expected in message
    assert "\n" not in message


def test_same_keys_in_different_mappings_and_merges_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(
        "tenants:\n"
        "  - &one\n"
        "    id: one\n"
        "    workspace_name: One\n"
        "    frequency: 7-day\n"
        "    permissions: {priya: [create]}\n"
        "  - <<: *one\n"
        "    id: two\n"
        "    frequency: 3-day\n"  # overrides the merged value: not a duplicate
        "    permissions: {priya: [restore]}\n"
    )
    registry = TenantRegistry.load(path)
    assert (registry["one"].frequency, registry["two"].frequency) == ("7-day", "3-day")
    assert registry["two"].workspace_name == "One"
    assert registry["two"].can("priya", "restore")
    assert not registry["two"].can("priya", "create")
