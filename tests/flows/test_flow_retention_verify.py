"""Retention and verify flows on crafted catalogs; the retry layer on a real failing storage."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flowkit import OWNER, FlowEnv, artifact, files_of, seed
from prefect import flow

from daai_backup import operations
from daai_backup.errors import StorageError, TransientStorageError
from daai_backup.format.keys import generate_master_key
from daai_backup.repository.folder import BackupFolder
from daai_backup.repository.names import new_backup_name
from daai_backup.repository.verification import VerificationRecord
from daai_backup.storage import MemoryStorage, ObjectInfo, storage_from_url
from daai_backup.tenants import Tenant
from flows.backup import backup
from flows.retention import retention, retention_sweep
from flows.verify import verify
from tasks.catalog import list_backups
from tasks.common import is_transient_error


def craft(
    env: FlowEnv, tenant_id: str, spec: Sequence[tuple[str, float]], *, verified: bool = True
) -> dict[str, str]:
    """Backups named (label, days ago) -> file, with junk content, recorded as verified good
    unless ``verified=False`` (retention reads only the newest, and only when unverified)."""
    ctx = env.context()
    folder = ctx.folder(ctx.tenant(tenant_id))
    now = datetime.now(UTC)
    made: dict[str, str] = {}
    for i, (label, days) in enumerate(spec):
        name = new_backup_name(label, now - timedelta(days=days, seconds=i), encrypted=True)
        folder.write(name, io.BytesIO(b"x" * 100))
        if verified:
            record = VerificationRecord(name.filename, now, True, None, 100)
            folder.record_verification(name.filename, record)
        made[f"{label}@{days}"] = name.filename
    return made


def test_retention_keeps_exactly_the_right_set(flow_env: FlowEnv, mongo_db_name: str) -> None:
    tid = flow_env.add_tenant(mongo_db_name, frequency="7-day")  # keep 8 scheduled
    weekly = [("7-day", 1 + 7 * i) for i in range(10)]
    older = [("15-day", 80), ("15-day", 95)]
    manual = [("manual", 2), ("manual", 5), ("manual", 40), ("manual", 50), ("manual", 60)]
    pre = [("pre-restore", 3), ("pre-restore", 10)]
    made = craft(flow_env, tid, weekly + older + manual + pre + [("manual", 100)])
    ctx = flow_env.context()
    ctx.folder(ctx.tenant(tid)).hold(made["manual@100"])
    doomed = {
        made["7-day@57"],
        made["7-day@64"],
        made["15-day@80"],
        made["15-day@95"],
        made["manual@50"],
        made["manual@60"],
        made["pre-restore@10"],
    }

    dry = retention(tenant=tid, dry_run=True)
    assert set(dry["would_delete"]) == doomed
    assert len(files_of(flow_env, tid)) == len(made)
    assert "would delete" in str(artifact(f"retention-{tid}").data)

    result = retention(tenant=tid)
    assert set(result["deleted"]) == doomed
    assert set(files_of(flow_env, tid)) == set(made.values()) - doomed
    table = artifact(f"retention-{tid}")
    assert "beyond the newest 8" in str(table.data)
    assert "held" in str(table.data)


def test_sweep_carries_on_past_a_failing_tenant_and_reports_it(
    flow_env: FlowEnv, mongo_db_name: str, s3_endpoint: str
) -> None:
    flow_env.monkeypatch.setenv("DAAI_BACKUP_S3_ENDPOINT_URL", s3_endpoint)
    broken = flow_env.add_tenant(mongo_db_name + "_x", storage_url="s3://no-such-bucket-here")
    fine = flow_env.add_tenant(mongo_db_name)
    made = craft(flow_env, fine, [("pre-restore", 1), ("pre-restore", 20)])
    state = retention_sweep(return_state=True)
    assert state.is_failed()
    assert broken in (state.message or "")
    assert fine not in (state.message or "")
    assert files_of(flow_env, fine) == [made["pre-restore@1"]]


def test_verify_names_the_bad_file_and_fails(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=30)
    tid = flow_env.add_tenant(mongo_db_name)
    ctx = flow_env.context()
    tenant = ctx.tenant(tid)
    good = operations.backup_tenant(ctx, tenant, "manual").entry.file
    bad = operations.backup_tenant(ctx, tenant, "manual").entry.file
    storage = storage_from_url(flow_env.storage_url)
    (key,) = [o.key for o in storage.list(tid) if o.key.endswith(bad)]
    with storage.open_read(key) as stream:
        data = bytearray(stream.read())
    data[len(data) // 2] ^= 0x01
    storage.put_stream(key, io.BytesIO(bytes(data)))

    assert verify(tenant=tid, file=good)["good"] == [good]
    contents = artifact(f"contents-{tid}")  # what the good backup holds, from its manifest
    assert contents is not None
    assert f"What {good} holds" in str(contents.data)
    assert "| people | collection | 30 |" in str(contents.data)
    state = verify(tenant=tid, return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert bad in message
    assert good not in message
    assert "1 of 2" in message


def flip_a_bit(env: FlowEnv, tenant_id: str, file: str) -> None:
    storage = storage_from_url(env.storage_url)
    (key,) = [o.key for o in storage.list(tenant_id) if o.key.endswith("/" + file)]
    with storage.open_read(key) as stream:
        data = bytearray(stream.read())
    data[len(data) // 2] ^= 0x01
    storage.put_stream(key, io.BytesIO(bytes(data)))


def test_prune_never_deletes_the_good_backup_behind_a_corrupt_newest(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    """The hostile round's case: a corrupt newest backup and an older good one, which the
    pool rules alone would delete (a pre-restore backup older than 7 days)."""
    seed(mongo_client, mongo_db_name, docs=30)
    tid = flow_env.add_tenant(mongo_db_name)
    ctx = flow_env.context()
    tenant = ctx.tenant(tid)
    old = datetime.now(UTC) - timedelta(days=10)
    good = operations.backup_tenant(ctx, tenant, "pre-restore", now=old).entry.file
    corrupt = operations.backup_tenant(ctx, tenant, "manual").entry.file
    flip_a_bit(flow_env, tid, corrupt)

    result = retention(tenant=tid)
    assert result["deleted"] == []
    assert set(files_of(flow_env, tid)) == {good, corrupt}
    records = ctx.folder(tenant).verifications(with_errors=True)
    assert records[corrupt].ok is False
    assert "damaged" in (records[corrupt].error or "")
    assert records[good].ok is True  # read whole by retention before it relied on it


def test_retention_verifies_the_newest_backup_before_deleting_below_it(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=30)
    tid = flow_env.add_tenant(mongo_db_name)
    made = craft(flow_env, tid, [("pre-restore", 10)])  # verified, deletable by age
    ctx = flow_env.context()
    tenant = ctx.tenant(tid)
    newest = operations.backup_tenant(ctx, tenant, "manual").entry.file  # not verified yet
    result = retention(tenant=tid)
    assert result["deleted"] == [made["pre-restore@10"]]
    assert ctx.folder(tenant).verifications()[newest].ok is True


def test_a_week_old_good_verification_is_repeated_before_retention_relies_on_it(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    """Storage can rot in place without changing a file's size: an old 'good' is rechecked."""
    seed(mongo_client, mongo_db_name, docs=30)
    tid = flow_env.add_tenant(mongo_db_name)
    made = craft(flow_env, tid, [("pre-restore", 10)])  # verified, deletable by age
    ctx = flow_env.context()
    tenant = ctx.tenant(tid)
    newest = operations.backup_tenant(ctx, tenant, "manual").entry.file
    folder = ctx.folder(tenant)
    size = ctx.folder(tenant).stat(newest).size
    long_ago = datetime.now(UTC) - timedelta(days=8)
    folder.record_verification(newest, VerificationRecord(newest, long_ago, True, None, size))
    flip_a_bit(flow_env, tid, newest)  # rotted since, same size

    result = retention(tenant=tid)
    assert result["deleted"] == []  # the old good record was not trusted
    assert folder.verifications()[newest].ok is False
    assert made["pre-restore@10"] in files_of(flow_env, tid)


def test_verify_with_a_wrong_key_says_it_is_the_key_not_the_backup(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(mongo_client, mongo_db_name, docs=10)
    tid = flow_env.add_tenant(mongo_db_name)
    ctx = flow_env.context()
    file = operations.backup_tenant(ctx, ctx.tenant(tid), "manual").entry.file
    fingerprint = ctx.settings.keyring.require_current().fingerprint
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", generate_master_key())
    state = verify(tenant=tid, return_state=True)
    assert state.is_failed()
    message = state.message or ""
    assert "could not be checked with the configured keys (the files may be fine)" in message
    assert fingerprint in message
    assert "are bad" not in message
    assert ctx.folder(ctx.tenant(tid)).verifications() == {}  # a key problem records nothing

    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "not-a-key")
    state = verify(tenant=tid, return_state=True)
    assert state.is_failed()
    assert "BACKUP_ENCRYPTION_KEY is not valid base64" in (state.message or "")
    assert file not in (state.message or "")


def test_a_backup_removes_what_a_killed_backup_left_and_usage_counted_it(
    flow_env: FlowEnv,
    mongo_client: Any,
    mongo_db_name: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage_root = tmp_path / "storage"
    monkeypatch.setenv("DAAI_BACKUP_STORAGE_URL", storage_root.as_uri())
    seed(mongo_client, mongo_db_name, docs=10)
    tid = flow_env.add_tenant(mongo_db_name)
    folder = storage_root / tid / "db-backups"
    folder.mkdir(parents=True)
    temp_name = ".tmp-" + "0123456789abcdef" * 2 + "-manual_20261101T000000Z_0badf00d.gz.enc"
    leftover = folder / temp_name
    leftover.write_bytes(b"x" * 50_000)  # what a kill -9 mid-write leaves (no lock held)
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    ctx = flow_env.context()
    assert operations.quota_report(ctx, ctx.tenant(tid)).used_bytes >= 50_000  # counted

    backup(tenant=tid, actor=OWNER)
    assert not leftover.exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")] == []


# --- the retry layer ---------------------------------------------------------------------


class FlakyStorage(MemoryStorage):
    """An in-memory store whose listing fails with ``error`` the first ``failures`` times."""

    def __init__(self, name: str, error: Exception, failures: int) -> None:
        super().__init__(name)
        self.error = error
        self.failures = failures
        self.calls = 0

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return super().list(prefix)


class FlakyContext(operations.EngineContext):
    def __init__(self, base: operations.EngineContext, storage: FlakyStorage) -> None:
        super().__init__(base.settings, base.registry)
        self.storage = storage

    def folder(self, tenant: Tenant) -> BackupFolder:
        return BackupFolder(self.storage, tenant.id)


@pytest.mark.parametrize(
    ("error", "failures", "calls", "completes"),
    [
        (TransientStorageError("S3 answered 503; try again"), 2, 3, True),
        (StorageError("access denied: check the bucket policy"), 1, 1, False),
    ],
)
def test_only_transient_errors_are_retried(
    flow_env: FlowEnv,
    mongo_db_name: str,
    error: Exception,
    failures: int,
    calls: int,
    completes: bool,
) -> None:
    tid = flow_env.add_tenant(mongo_db_name)
    storage = FlakyStorage(f"flaky-{tid}", error, failures)
    ctx = FlakyContext(flow_env.context(), storage)
    fast = list_backups.with_options(retry_delay_seconds=0, retry_jitter_factor=None)  # type: ignore[arg-type]

    @flow
    def probe() -> int:
        return len(fast(ctx, ctx.tenant(tid)))

    state = probe(return_state=True)
    assert state.is_completed() is completes
    assert storage.calls == calls


def test_leaked_driver_errors_count_as_transient() -> None:
    from botocore.exceptions import EndpointConnectionError
    from pymongo.errors import AutoReconnect, OperationFailure

    assert is_transient_error(AutoReconnect("primary stepped down"))
    assert is_transient_error(EndpointConnectionError(endpoint_url="http://x"))
    assert not is_transient_error(OperationFailure("unauthorized"))
    assert not is_transient_error(ValueError("bad input"))


def test_the_weekly_drill_reads_each_tenants_newest_backup_and_the_lists_show_it(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=20)
    seed(mongo_client, mongo_db_name + "_b", docs=20)
    good_tenant = flow_env.add_tenant(mongo_db_name)
    bad_tenant = flow_env.add_tenant(mongo_db_name + "_b")
    flow_env.add_tenant(mongo_db_name + "_c")  # no backups yet: nothing to drill
    ctx = flow_env.context()
    a, b = ctx.tenant(good_tenant), ctx.tenant(bad_tenant)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    older = operations.backup_tenant(ctx, a, "manual", now=hour_ago).entry.file
    newest = operations.backup_tenant(ctx, a, "manual").entry.file
    broken = operations.backup_tenant(ctx, b, "manual").entry.file
    flip_a_bit(flow_env, bad_tenant, broken)

    state = verify(return_state=True)  # no tenant: the drill
    assert state.is_failed()
    assert broken in (state.message or "")
    data = artifact("verify-drill").data
    rows = {r["Tenant"]: r for r in (json.loads(data) if isinstance(data, str) else data)}
    assert rows[good_tenant]["File"] == newest
    assert rows[good_tenant]["Result"].startswith("✅")
    assert rows[bad_tenant]["Result"].startswith("❌")

    ctx = flow_env.context()
    verified = {e.file: e.verification for e in operations.list_backups(ctx, a)}
    assert verified[older] is None  # only the newest is drilled
    assert verified[newest] is not None
    assert verified[newest].ok
    [entry] = operations.list_backups(ctx, b)
    assert entry.verification is not None
    assert not entry.verification.ok
    # The fleet view and the backup list artifact show the result.
    facts = operations.tenant_facts(ctx, b)
    assert facts.known_bad == {broken}
    from daai_backup.fleet import display_rows, fleet_table

    table = fleet_table(
        [a, b],
        {a.id: operations.tenant_facts(ctx, a), b.id: facts},
        now=datetime.now(UTC),
        default_timezone="UTC",
        spread_minutes=0,
    )
    shown = {r["Tenant"]: r["Verified"] for r in display_rows(table)}
    assert shown[a.id].startswith("✅ ok")
    assert shown[b.id].startswith("❌ BAD")
