"""Retention on an S3 Object Lock bucket (moto over HTTP): a locked backup is kept, and the
run says which and why."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import boto3
from flowkit import FlowEnv, artifact, files_of

from daai_backup.repository.names import new_backup_name
from daai_backup.repository.verification import VerificationRecord
from flows.retention import retention


def test_retention_keeps_a_locked_backup_and_says_why(
    flow_env: FlowEnv, mongo_db_name: str, s3_endpoint: str
) -> None:
    bucket = f"lock-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(
        Bucket=bucket, ObjectLockEnabledForBucket=True
    )
    flow_env.monkeypatch.setenv("DAAI_BACKUP_STORAGE_URL", f"s3://{bucket}")
    flow_env.monkeypatch.setenv("DAAI_BACKUP_S3_ENDPOINT_URL", s3_endpoint)
    flow_env.monkeypatch.setenv("DAAI_BACKUP_S3_OBJECT_LOCK", "governance")
    tid = flow_env.add_tenant(mongo_db_name, frequency="24-hour")  # keep the newest 14
    ctx = flow_env.context()
    folder = ctx.folder(ctx.tenant(tid))
    now = datetime.now(UTC)
    made = []
    for hours in range(15):  # 15 backups within a day: the oldest is over the count...
        name = new_backup_name("24-hour", now - timedelta(hours=hours + 1), encrypted=True)
        folder.write(name, io.BytesIO(b"x" * 100))
        folder.record_verification(
            name.filename, VerificationRecord(name.filename, now, True, None, 100)
        )
        made.append(name.filename)
    ctx.close()

    result = retention(tenant=tid)  # ...but locked for 14 days from when it was taken

    oldest = made[-1]
    assert result["deleted"] == []
    assert list(result["locked"]) == [oldest]
    assert "is under S3 Object Lock until" in result["locked"][oldest]
    assert set(files_of(flow_env, tid)) == set(made)
    table = str(artifact(f"retention-{tid}").data)
    assert "kept: backup" in table
