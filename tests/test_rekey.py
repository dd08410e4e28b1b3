"""Key rotation end to end: several tenants, local and S3, a crash mid-way and a re-run."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import Timestamp

from daai_backup.capture.segments import read_changes, write_segment
from daai_backup.errors import KeyInvalid, WrongKey
from daai_backup.format.keys import Keyring, parse_master_key
from daai_backup.operations import (
    EngineContext,
    backup_tenant,
    fleet_view,
    key_census,
    list_backups,
    manifest_of,
    rekey_tenant,
    retire_problem,
    set_hold,
    verify_backup,
)
from daai_backup.rekey import REKEY_DIR
from daai_backup.settings import Settings
from daai_backup.tenants import TenantRegistry

OLD = base64.b64encode(os.urandom(32)).decode()
NEW = base64.b64encode(os.urandom(32)).decode()
OLD_FP = parse_master_key(OLD).fingerprint
NEW_FP = parse_master_key(NEW).fingerprint
TENANTS = ("acme", "globex")


def _ctx(
    mongo_uri: str,
    storage_url: str,
    dbs: dict[str, str],
    key: str,
    previous: str | None,
    **extra: Any,
) -> EngineContext:
    settings = Settings(
        backup_encryption_key=key,
        backup_encryption_previous_keys=previous,
        mongodb_uri=mongo_uri,
        storage_url=storage_url,
        tenants_file=Path("unused.yaml"),
        **extra,
    )
    tenants = [
        {"id": t, "workspace_name": t, "database": db, "permissions": {"ops": ["create"]}}
        for t, db in dbs.items()
    ]
    return EngineContext(settings, TenantRegistry.from_data({"tenants": tenants}))


@pytest.fixture
def dbs(mongo_client: Any, mongo_db_name: str) -> Any:
    names = {t: f"{mongo_db_name}_{t}" for t in TENANTS}
    for n, db in enumerate(names.values()):
        mongo_client[db].items.insert_many([{"i": i, "t": n} for i in range(20)])
    yield names
    for db in names.values():
        mongo_client.drop_database(db)


def _populate(ctx: EngineContext) -> dict[str, list[str]]:
    """Two backups per tenant (one held, with a note), manifests, a change segment each."""
    files: dict[str, list[str]] = {}
    base = datetime(2026, 11, 1, tzinfo=UTC)
    for tid in TENANTS:
        tenant = ctx.tenant(tid)
        first = backup_tenant(ctx, tenant, "manual", note="before import", now=base)
        second = backup_tenant(ctx, tenant, "daily", now=base + timedelta(days=1))
        set_hold(ctx, tenant, first.entry.file, held=True)
        event = bson.encode({"_id": {"_data": tid}, "clusterTime": Timestamp(100, 1), "op": tid})
        write_segment(
            ctx.folder(tenant),
            ctx.settings.keyring.require_current(),
            tid,
            Timestamp(100, 0),
            Timestamp(200, 0),
            [event],
        )
        list_backups(ctx, tenant)  # writes the listing index
        files[tid] = [first.entry.file, second.entry.file]
    return files


def _rotate(mongo_uri: str, url: str, dbs: dict[str, str], **extra: Any) -> None:
    before = _ctx(mongo_uri, url, dbs, OLD, None, **extra)
    files = _populate(before)
    shown = {
        t: [(e.file, e.held, e.note) for e in list_backups(before, before.tenant(t))]
        for t in TENANTS
    }
    before.close()

    rotated = _ctx(mongo_uri, url, dbs, NEW, OLD, **extra)
    census = [key_census(rotated, rotated.tenant(t)) for t in TENANTS]
    # 2 backups + 2 manifests + 1 segment + the index per tenant, all under the old key.
    assert [c.by_key for c in census] == [{OLD_FP: 6}, {OLD_FP: 6}]
    notes = fleet_view(rotated).notes
    assert (
        f"backups per key: {OLD_FP}: 4 in acme, globex; run `daai-backup rekey --all` before "
        "retiring an old key"
    ) in notes
    assert retire_problem(census, OLD_FP) == (
        f"key {OLD_FP} cannot be retired: 12 file(s) still need it, in tenant(s) "
        "acme (6), globex (6); run `daai-backup rekey --all` first"
    )

    class Crash(Exception):
        pass

    def crash_after_three(done: int, total: int) -> None:
        if done == 3:
            raise Crash

    with pytest.raises(Crash):
        rekey_tenant(rotated, rotated.tenant("acme"), progress=crash_after_three)
    half = key_census(rotated, rotated.tenant("acme"))
    assert half.by_key == {NEW_FP: 3, OLD_FP: 3}  # backup, its manifest, next backup

    outcomes = [rekey_tenant(rotated, rotated.tenant(t)) for t in TENANTS]
    assert outcomes[0].already_current == 3
    assert outcomes[1].rewritten == {
        "backup": 2,
        "manifest": 2,
        "change-segment": 1,
        "listing-index": 1,
    }
    assert all(o.remaining == {} for o in outcomes)
    rotated.close()

    # Only the new key from now on: everything reads, nothing moved or renamed.
    after = _ctx(mongo_uri, url, dbs, NEW, None, **extra)
    census = [key_census(after, after.tenant(t)) for t in TENANTS]
    assert [c.by_key for c in census] == [{NEW_FP: 6}, {NEW_FP: 6}]
    assert retire_problem(census, OLD_FP) is None
    assert not any(n.startswith("backups per key") for n in fleet_view(after).notes)
    for tid in TENANTS:
        tenant = after.tenant(tid)
        assert [(e.file, e.held, e.note) for e in list_backups(after, tenant)] == shown[tid]
        for file in files[tid]:
            assert verify_backup(after, tenant, file).documents == 20
            assert manifest_of(after, tenant, file).key_fingerprint == NEW_FP
        events = list(
            read_changes(
                after.folder(tenant),
                after.settings.keyring,
                tid,
                Timestamp(100, 0),
                Timestamp(200, 0),
            )
        )
        assert len(events) == 1
        assert not list(after.folder(tenant).storage.list(f"{tid}/{REKEY_DIR}/"))
    # A re-run has nothing left to do.
    again = rekey_tenant(after, after.tenant("acme"))
    assert again.total_rewritten == 0
    after.close()


def test_rotation_of_several_tenants_local_survives_a_crash(
    mongo_uri: str, local_storage_url: str, dbs: dict[str, str]
) -> None:
    _rotate(mongo_uri, local_storage_url, dbs)


def test_rotation_of_several_tenants_s3_survives_a_crash(
    mongo_uri: str, s3_endpoint: str, s3_bucket: str, dbs: dict[str, str]
) -> None:
    _rotate(mongo_uri, f"s3://{s3_bucket}/root", dbs, s3_endpoint_url=s3_endpoint)


def test_a_crash_between_copy_and_move_is_cleaned_and_completed(
    mongo_uri: str, local_storage_url: str, dbs: dict[str, str]
) -> None:
    before = _ctx(mongo_uri, local_storage_url, dbs, OLD, None)
    tenant = before.tenant("acme")
    made = backup_tenant(before, tenant, "manual")
    folder = before.folder(tenant)
    # What a kill between writing the temporary copy and moving it leaves: a copy.
    key = f"acme/db-backups/{made.entry.file}"
    folder.storage.copy(key, f"acme/{REKEY_DIR}/db-backups/{made.entry.file}")
    before.close()
    rotated = _ctx(mongo_uri, local_storage_url, dbs, NEW, OLD)
    outcome = rekey_tenant(rotated, rotated.tenant("acme"))
    assert outcome.leftovers_removed == 1
    assert outcome.rewritten["backup"] == 1
    assert [e.file for e in list_backups(rotated, rotated.tenant("acme"))] == [made.entry.file]
    rotated.close()


def test_rekey_refuses_when_a_file_needs_an_unknown_key(
    mongo_uri: str, local_storage_url: str, dbs: dict[str, str]
) -> None:
    before = _ctx(mongo_uri, local_storage_url, dbs, OLD, None)
    made = backup_tenant(before, before.tenant("acme"), "manual")
    before.close()
    lost = _ctx(mongo_uri, local_storage_url, dbs, NEW, None)
    with pytest.raises(WrongKey, match=rf"{OLD_FP} \(2 file\(s\)\).*nothing was changed"):
        rekey_tenant(lost, lost.tenant("acme"))
    assert key_census(lost, lost.tenant("acme")).by_key == {OLD_FP: 2}
    assert [e.file for e in list_backups(lost, lost.tenant("acme"))] == [made.entry.file]
    lost.close()


def test_previous_key_equal_to_current_or_malformed_is_one_line() -> None:
    with pytest.raises(KeyInvalid, match="entry 1 is the same key as BACKUP_ENCRYPTION_KEY"):
        Keyring.from_strings(NEW, [NEW])
    with pytest.raises(KeyInvalid, match=r"entry 2 is the same key as .*entry 1"):
        Keyring.from_strings(NEW, [OLD, OLD])
    with pytest.raises(KeyInvalid, match="entry 1 is not valid base64"):
        Keyring.from_strings(NEW, ["not a key!"])


def test_a_copy_that_does_not_read_back_never_replaces_the_original(
    mongo_uri: str, local_storage_url: str, dbs: dict[str, str]
) -> None:
    import io as _io

    from daai_backup.errors import ArchiveCorrupt
    from daai_backup.rekey import rekey_folder
    from daai_backup.repository.folder import BackupFolder
    from daai_backup.storage.local import LocalStorage

    class FlipsABit(LocalStorage):
        """A disk that damages what is written under db-rekey/ (one bit, mid-file)."""

        def put_stream(self, key, source, metadata=None):  # type: ignore[no-untyped-def]
            data = bytearray(source.read())
            if f"/{REKEY_DIR}/" in f"/{key}" and len(data) > 200:
                data[len(data) // 2] ^= 1
            return super().put_stream(key, _io.BytesIO(bytes(data)), metadata)

    before = _ctx(mongo_uri, local_storage_url, dbs, OLD, None)
    made = backup_tenant(before, before.tenant("acme"), "manual")
    before.close()
    ring = Keyring.from_strings(NEW, [OLD])
    root = Path(local_storage_url.removeprefix("file://"))
    folder = BackupFolder(FlipsABit(root), "acme", tenant_id="acme", keyring=ring)
    with pytest.raises(ArchiveCorrupt, match="damaged or was altered"):
        rekey_folder(folder, ring, "acme")
    # The original is untouched (still the old key, still whole) and no copy is left.
    after = _ctx(mongo_uri, local_storage_url, dbs, NEW, OLD)
    assert key_census(after, after.tenant("acme")).by_key == {OLD_FP: 2}
    assert verify_backup(after, after.tenant("acme"), made.entry.file).documents == 20
    assert not list(folder.storage.list(f"acme/{REKEY_DIR}/"))
    after.close()


def test_a_file_with_a_damaged_header_is_left_and_reported(tmp_path: Path) -> None:
    from daai_backup.rekey import rekey_folder
    from daai_backup.repository.folder import BackupFolder
    from daai_backup.storage.local import LocalStorage

    ring = Keyring.from_strings(NEW, [OLD])
    folder = BackupFolder(LocalStorage(tmp_path), "acme", tenant_id="acme", keyring=ring)
    event = bson.encode({"_id": {"_data": "a"}, "clusterTime": Timestamp(100, 1)})
    old = parse_master_key(OLD)
    write_segment(folder, old, "acme", Timestamp(100, 0), Timestamp(200, 0), [event])
    broken = "0000000300.0000000000-0000000400.0000000000_0_0000000000000000.chg.enc"
    (tmp_path / "acme" / "db-changes" / broken).write_bytes(b"DBK1\x02\x01\x00\x05rest")
    outcome = rekey_folder(folder, ring, "acme")
    assert outcome.rewritten == {"change-segment": 1}
    assert len(outcome.unreadable) == 1
    assert outcome.unreadable[0].startswith(f"db-changes/{broken}: ")
    assert outcome.summary().endswith(
        "; 1 file(s) with a damaged header left as they are (`daai-backup doctor --keys` "
        "lists them)"
    )
