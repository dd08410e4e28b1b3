"""S3 Object Lock on moto over HTTP: backups locked until their retention ends, holds as legal
holds, deletes before the date refused by the storage and said in one line."""

from __future__ import annotations

import base64
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from daai_backup.errors import ConfigError, ObjectLocked
from daai_backup.operations import (
    EngineContext,
    backup_tenant,
    delete_backup,
    list_backups,
    set_hold,
)
from daai_backup.policy.lock import retain_until
from daai_backup.settings import Settings
from daai_backup.tenants import TenantRegistry

KEY = base64.b64encode(os.urandom(32)).decode()


def _ctx(mongo_uri: str, url: str, endpoint: str, db: str, lock: str) -> EngineContext:
    settings = Settings(
        backup_encryption_key=KEY,
        mongodb_uri=mongo_uri,
        storage_url=url,
        s3_endpoint_url=endpoint,
        s3_object_lock=lock,
        tenants_file=Path("unused.yaml"),
    )
    tenants = [{"id": "acme", "workspace_name": "Acme", "database": db, "permissions": {}}]
    return EngineContext(settings, TenantRegistry.from_data({"tenants": tenants}))


@pytest.fixture
def locked_bucket(s3_endpoint: str) -> str:
    name = f"lock-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(
        Bucket=name, ObjectLockEnabledForBucket=True
    )
    return name


@pytest.fixture
def db(mongo_client: Any, mongo_db_name: str) -> str:
    mongo_client[mongo_db_name].items.insert_many([{"i": i} for i in range(5)])
    return mongo_db_name


def test_retain_until_is_the_end_of_planned_retention() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert retain_until("monthly", at) == at + timedelta(days=360)  # newest 12, every 30 days
    assert retain_until("24-hour", at) == at + timedelta(days=14)
    assert retain_until("manual", at) == at + timedelta(days=30)  # max age
    assert retain_until("pre-restore", at) == at + timedelta(days=7)


def test_backups_are_locked_and_a_delete_before_the_date_is_refused(
    mongo_uri: str, s3_endpoint: str, locked_bucket: str, db: str
) -> None:
    ctx = _ctx(mongo_uri, f"s3://{locked_bucket}", s3_endpoint, db, "governance")
    tenant = ctx.tenant("acme")
    made = backup_tenant(ctx, tenant, "manual")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    key = f"acme/db-backups/{made.entry.file}"
    head = s3.head_object(Bucket=locked_bucket, Key=key)
    expected = retain_until("manual", made.entry.taken_at)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert abs(head["ObjectLockRetainUntilDate"] - expected) < timedelta(seconds=1)
    manifest = s3.head_object(Bucket=locked_bucket, Key=key + ".manifest")
    assert manifest["ObjectLockMode"] == "GOVERNANCE"

    # The storage itself refuses: deleting the locked version is AccessDenied.
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=locked_bucket, Key=key, VersionId=head["VersionId"])
    # The product says so in one line, and nothing is changed.
    with pytest.raises(ObjectLocked) as refused:
        delete_backup(ctx, tenant, made.entry.file)
    message = str(refused.value)
    assert "\n" not in message
    assert message == (
        f"backup {made.entry.file!r} is under S3 Object Lock until "
        f"{head['ObjectLockRetainUntilDate'].astimezone(UTC).isoformat(timespec='seconds')}: "
        "it is kept; retention deletes it after that date"
    )
    # The storage layer refuses too when asked directly (no delete marker hiding it).
    with pytest.raises(ObjectLocked, match="S3 Object Lock keeps it until"):
        ctx.folder(tenant).storage.delete(key)
    assert [e.file for e in list_backups(ctx, tenant)] == [made.entry.file]

    set_hold(ctx, tenant, made.entry.file, held=True)
    assert s3.get_object_legal_hold(Bucket=locked_bucket, Key=key)["LegalHold"]["Status"] == "ON"
    set_hold(ctx, tenant, made.entry.file, held=False)
    assert s3.get_object_legal_hold(Bucket=locked_bucket, Key=key)["LegalHold"]["Status"] == "OFF"
    ctx.close()


def test_a_lock_bucket_without_the_setting_works_as_today(
    mongo_uri: str, s3_endpoint: str, locked_bucket: str, db: str
) -> None:
    ctx = _ctx(mongo_uri, f"s3://{locked_bucket}", s3_endpoint, db, "off")
    tenant = ctx.tenant("acme")
    made = backup_tenant(ctx, tenant, "manual")
    delete_backup(ctx, tenant, made.entry.file)
    assert list_backups(ctx, tenant) == []
    ctx.close()


def test_settings_that_contradict_the_bucket_are_one_line(
    mongo_uri: str, s3_endpoint: str, s3_bucket: str, locked_bucket: str, db: str
) -> None:
    plain = _ctx(mongo_uri, f"s3://{s3_bucket}", s3_endpoint, db, "compliance")
    with pytest.raises(ConfigError) as refused:
        backup_tenant(plain, plain.tenant("acme"), "manual")
    assert str(refused.value) == (
        f"DAAI_BACKUP_S3_OBJECT_LOCK is compliance but bucket {s3_bucket!r} has no Object "
        "Lock: use a bucket created with Object Lock enabled, or set it to off"
    )
    assert list(plain.folder(plain.tenant("acme")).storage.list("")) == []
    plain.close()

    boto3.client("s3", endpoint_url=s3_endpoint).put_object_lock_configuration(
        Bucket=locked_bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    defaulted = _ctx(mongo_uri, f"s3://{locked_bucket}", s3_endpoint, db, "governance")
    with pytest.raises(
        ConfigError, match="has a default Object Lock retention \\(GOVERNANCE, 1 days\\)"
    ):
        backup_tenant(defaulted, defaulted.tenant("acme"), "manual")
    defaulted.close()


def test_rekey_keeps_the_lock_date_and_legal_hold(
    mongo_uri: str, s3_endpoint: str, locked_bucket: str, db: str
) -> None:
    from daai_backup.operations import rekey_tenant

    ctx = _ctx(mongo_uri, f"s3://{locked_bucket}", s3_endpoint, db, "governance")
    made = backup_tenant(ctx, ctx.tenant("acme"), "manual")
    set_hold(ctx, ctx.tenant("acme"), made.entry.file, held=True)
    ctx.close()
    new = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(
        backup_encryption_key=new,
        backup_encryption_previous_keys=KEY,
        mongodb_uri=mongo_uri,
        storage_url=f"s3://{locked_bucket}",
        s3_endpoint_url=s3_endpoint,
        s3_object_lock="governance",
        tenants_file=Path("unused.yaml"),
    )
    tenants = [{"id": "acme", "workspace_name": "Acme", "database": db, "permissions": {}}]
    rotated = EngineContext(settings, TenantRegistry.from_data({"tenants": tenants}))
    outcome = rekey_tenant(rotated, rotated.tenant("acme"))
    assert outcome.rewritten["backup"] == 1
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    key = f"acme/db-backups/{made.entry.file}"
    head = s3.head_object(Bucket=locked_bucket, Key=key)
    expected = retain_until("manual", made.entry.taken_at)
    assert abs(head["ObjectLockRetainUntilDate"] - expected) < timedelta(seconds=1)
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    rotated.close()
