"""The tenant registry read from the suite's own MongoDB collection (a real SecantusDB server).

Mapped and nested fields, value mapping, the filter, the same validation and cross-tenant
checks as the YAML file, one-line errors naming the collection (never the password), the
tenant (or the document's ``_id``) and our field; an unreachable server is transient.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daai_backup.errors import ConfigError, TenantsFileInvalid, TransientDatabaseError
from daai_backup.operations import load_context
from daai_backup.settings import Settings, load_settings
from daai_backup.tenant_sources import describe_source, load_registry, mask_uri

MAPPING = {
    "id": "slug",
    "workspace_name": "name",
    "subscription": "billing.status",
    "frequency": "backup.frequency",
    "frequency_override": "backup.bump",
    "permissions": "members",
}
VALUES = {"subscription": {"trialing": "active", "past_due": "active", "canceled": "suspended"}}


def _doc(slug: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "slug": slug,
        "name": slug.title(),
        "billing": {"status": "trialing", "plan": "pro"},
        "backup": {"frequency": "7-day"},
        "members": [{"user": "priya@acme.example", "permissions": ["create", "restore"]}],
        "crm_settings": {"anything": ["the suite keeps"]},  # not ours: never read
    }
    doc.update(extra)
    return doc


def _settings(mongo_uri: str, db: str, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "tenants_uri": mongo_uri,
        "tenants_database": db,
        "tenants_collection": "tenants",
        "tenants_fields": MAPPING,
        "tenants_values": VALUES,
        "storage_url": "file:///srv/backups",
        "tenants_file": Path("no-such-file.yaml"),
        **kw,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def tenants(mongo_client: Any, mongo_db_name: str) -> Any:
    return mongo_client[mongo_db_name]["tenants"]


def test_documents_are_mapped_valued_filtered_and_validated(
    tenants: Any, mongo_uri: str, mongo_db_name: str
) -> None:
    until = datetime(2030, 1, 1, tzinfo=UTC)
    tenants.insert_many(
        [
            _doc(
                "acme-hr",
                backup={"frequency": "7-day", "bump": {"frequency": "24-hour", "until": until}},
            ),
            _doc("globex-crm", billing={"status": "canceled"}, timezone="UTC"),
            _doc("gone-inc", deleted=True),
        ]
    )
    settings = _settings(mongo_uri, mongo_db_name, tenants_filter={"deleted": {"$ne": True}})
    registry = load_registry(settings)
    assert list(registry) == ["acme-hr", "globex-crm"]
    acme = registry["acme-hr"]
    assert acme.workspace_name == "Acme-Hr"
    assert acme.subscription == "active"  # trialing -> active
    assert acme.frequency == "7-day"
    assert acme.can("priya@acme.example", "restore")
    assert acme.active_frequency(datetime(2029, 1, 1, tzinfo=UTC)) == "24-hour"
    assert registry["globex-crm"].subscription == "suspended"  # canceled -> suspended
    assert registry["globex-crm"].timezone == "UTC"  # unmapped: read under our own name
    # Every engine entry point reads the same source.
    ctx = load_context(settings)
    try:
        assert list(ctx.registry) == ["acme-hr", "globex-crm"]
    finally:
        ctx.close()


def test_errors_name_collection_tenant_and_our_field_never_the_password(
    tenants: Any, mongo_uri: str, mongo_db_name: str
) -> None:
    settings = _settings(mongo_uri, mongo_db_name)
    tenants.insert_one(_doc("acme-hr", billing={"status": "frozen"}))
    with pytest.raises(TenantsFileInvalid) as err:
        load_registry(settings)
    message = str(err.value)
    assert "\n" not in message
    assert f"tenants collection {mongo_db_name}.tenants at mongodb://127.0.0.1:" in message
    assert "tenant 'acme-hr': field 'subscription' (billing.status in the collection)" in message
    assert "'active' or 'suspended'" in message

    # Credentials the server refuses: one line, not transient, the password masked.
    secret_uri = mongo_uri.replace("mongodb://", "mongodb://app:hunter2-secret@")
    refused = _settings(secret_uri, mongo_db_name)
    with pytest.raises(ConfigError) as denied:
        load_registry(refused)
    assert "\n" not in str(denied.value)
    assert not denied.value.transient
    assert f"{mongo_db_name}.tenants at mongodb://app:***@127.0.0.1:" in str(denied.value)
    assert "hunter2" not in str(denied.value)
    assert "hunter2" not in repr(refused)
    assert "hunter2" not in describe_source(refused)

    # No id: the document's _id names it; daily is refused on production as in the YAML.
    tenants.delete_many({})
    inserted = tenants.insert_one({"name": "No Slug"}).inserted_id
    with pytest.raises(TenantsFileInvalid, match=rf"document _id ObjectId\('{inserted}'\)"):
        load_registry(settings)
    tenants.delete_many({})
    tenants.insert_one(_doc("acme-hr", backup={"frequency": "daily"}))
    with pytest.raises(TenantsFileInvalid, match=r"tenant 'acme-hr'.*sandbox"):
        load_registry(settings)


def test_cross_tenant_checks_are_those_of_the_yaml_file(
    tenants: Any, mongo_uri: str, mongo_db_name: str
) -> None:
    settings = _settings(mongo_uri, mongo_db_name)
    first = tenants.insert_one(_doc("acme-hr")).inserted_id
    second = tenants.insert_one(_doc("acme-hr")).inserted_id
    with pytest.raises(TenantsFileInvalid, match=rf"listed twice.*{first}.*{second}"):
        load_registry(settings)
    tenants.delete_many({})
    tenants.insert_many([_doc("acme-hr", database="shared"), _doc("beta", database="SHARED")])
    with pytest.raises(TenantsFileInvalid, match="share database"):
        load_registry(settings)
    tenants.delete_many({})
    tenants.insert_many(
        [
            _doc("acme-hr", storage_url="file:///srv/other/acme"),
            _doc("beta", storage_url="file:///srv/other/acme/inner"),
        ]
    )
    with pytest.raises(TenantsFileInvalid, match="lies inside tenant 'acme-hr'"):
        load_context(settings)
    tenants.delete_many({})
    tenants.insert_one(
        _doc(
            "acme-hr",
            members=[
                {"user": "a@x.example", "permissions": ["create"]},
                {"user": "a@x.example", "permissions": ["restore"]},
            ],
        )
    )
    with pytest.raises(TenantsFileInvalid, match=r"user 'a@x\.example' is listed twice"):
        load_registry(settings)


def test_an_unreachable_server_is_one_transient_line(mongo_db_name: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = _settings(f"mongodb://app:pw-secret@127.0.0.1:{port}/", mongo_db_name)
    with pytest.raises(TransientDatabaseError) as err:
        load_registry(settings, timeout_ms=300)
    assert err.value.transient
    assert "\n" not in str(err.value)
    assert "pw-secret" not in str(err.value)
    assert f"mongodb://app:***@127.0.0.1:{port}/" in str(err.value)


def test_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mongo_uri: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAAI_BACKUP_TENANTS_URI", mongo_uri + "suite")
    monkeypatch.setenv("DAAI_BACKUP_TENANTS_FIELDS", json.dumps({"id": "slug"}))
    settings = load_settings()
    assert settings.tenants_fields == {"id": "slug"}
    assert describe_source(settings).startswith("tenants collection suite.tenants at mongodb://")
    monkeypatch.setenv("DAAI_BACKUP_TENANTS_FIELDS", "{not json")
    with pytest.raises(ConfigError, match="tenants_fields: not valid JSON"):
        load_settings()
    monkeypatch.setenv("DAAI_BACKUP_TENANTS_FIELDS", json.dumps({"slug": "id"}))
    with pytest.raises(ConfigError, match="'slug' is not a tenant field"):
        load_registry(load_settings())
    monkeypatch.setenv("DAAI_BACKUP_TENANTS_URI", "postgres://u:secretpw@h/db")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "secretpw" not in str(err.value)
    assert "mongodb://" in str(err.value)


def test_mask_uri() -> None:
    assert mask_uri("mongodb://app:s3cret@db1:27017,db2/suite?tls=true&x=y") == (
        "mongodb://app:***@db1:27017,db2/suite"
    )
    assert mask_uri("mongodb+srv://cluster.example/") == "mongodb+srv://cluster.example/"
    assert mask_uri("mongodb://user@h") == "mongodb://user@h"
    assert mask_uri("mongodb://u:p@ss@h/db") == "mongodb://u:***@h/db"
