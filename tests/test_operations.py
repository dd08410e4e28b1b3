"""The engine calls end to end: backup -> list -> verify -> restore, on real servers."""

from __future__ import annotations

import base64
import gzip
import io
import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import Decimal128, ObjectId
from dbk1_vectors import seal_v1

from daai_backup.errors import (
    ArchiveCorrupt,
    InvalidName,
    KeyMissing,
    NameMismatch,
    ObjectNotFound,
    PermissionDenied,
    QuotaExceeded,
    SubscriptionSuspended,
    WrongKey,
    WrongTenant,
)
from daai_backup.format.dbk1 import open_plaintext
from daai_backup.operations import (
    EngineContext,
    backup_tenant,
    check_key_can_read,
    delete_backup,
    describe_backup,
    finish_interrupted_restore,
    list_backups,
    manifest_of,
    preflight_backup,
    preflight_restore,
    quota_report,
    remove_leftovers,
    restore_tenant,
    set_hold,
    verify_backup,
)
from daai_backup.repository.names import BackupName
from daai_backup.settings import Settings
from daai_backup.tenants import TenantRegistry

KEY = base64.b64encode(os.urandom(32)).decode()


def _ctx(
    mongo_uri: str, storage_url: str, databases: dict[str, str], key: str | None = KEY, **tenant
) -> EngineContext:
    settings = Settings(
        backup_encryption_key=key,
        mongodb_uri=mongo_uri,
        storage_url=storage_url,
        tenants_file=Path("unused.yaml"),
    )
    tenants = [
        {
            "id": tid,
            "workspace_name": f"{tid} workspace",
            "database": db,
            "permissions": {"ops": ["create", "restore"]},
            **tenant,
        }
        for tid, db in databases.items()
    ]
    return EngineContext(settings, TenantRegistry.from_data({"tenants": tenants}))


def _seed(client, name: str) -> None:
    db = client[name]
    db.employees.insert_many(
        [
            {"_id": ObjectId(), "name": f"emp {i}", "salary": Decimal128(f"{1000 + i}.50")}
            for i in range(50)
        ]
    )
    db.employees.create_index("name", unique=True)
    db.invoices.insert_many([{"n": i, "lines": [{"sku": "a", "qty": i}]} for i in range(30)])
    db.create_collection("audit", capped=True, size=65536)
    db.command(
        "create", "big_invoices", viewOn="invoices", pipeline=[{"$match": {"n": {"$gt": 10}}}]
    )


def _state(client, name: str) -> dict[str, list]:
    db = client[name]
    out = {}
    for coll in sorted(db.list_collection_names()):
        if coll.startswith("__daai_restore") or coll.startswith("system."):
            continue
        info = db.command("listCollections", filter={"name": coll})["cursor"]["firstBatch"][0]
        if info["type"] == "view":
            out[coll] = ["view", info["options"]["viewOn"]]
        else:
            out[coll] = list(db[coll].find().sort("_id", 1))
    return out


def test_backup_verify_restore_round_trip(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    before = _state(mongo_client, mongo_db_name)

    preflight_backup(ctx, tenant, "manual", actor="ops", note="before payroll run")
    outcome = backup_tenant(ctx, tenant, "manual", note="before payroll run")
    assert outcome.documents == 80
    assert outcome.entry.file.startswith("manual_")
    assert outcome.entry.file.endswith(".gz.enc")

    [entry] = list_backups(ctx, tenant)
    assert entry.file == outcome.entry.file
    assert entry.encrypted
    assert entry.size_bytes > 0
    # the object lives in the tenant's own db-backups folder
    stored = Path(local_storage_url.removeprefix("file://")) / "acme" / "db-backups" / entry.file
    assert stored.is_file()

    manifest = manifest_of(ctx, tenant, entry.file)  # the note and facts live in it
    assert manifest.consistency == outcome.consistency == "snapshot"
    assert manifest.documents == 80
    assert manifest.note == "before payroll run"

    verified = verify_backup(ctx, tenant, entry.file)
    assert verified.documents == 80
    assert verified.namespaces >= 3

    # damage the live database: change, drop and add
    db = mongo_client[mongo_db_name]
    db.employees.update_many({}, {"$set": {"salary": 0}})
    db.invoices.drop()
    db.extra.insert_one({"x": 1})

    result = restore_tenant(ctx, tenant, entry.file)
    assert result.documents == 80
    assert "extra" in result.dropped
    assert _state(mongo_client, mongo_db_name) == before


def test_preflight_refusals(mongo_client, mongo_uri, mongo_db_name, local_storage_url):
    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    with pytest.raises(PermissionDenied):
        preflight_backup(ctx, tenant, "manual", actor="intruder")
    no_key = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name}, key=None)
    with pytest.raises(KeyMissing, match="BACKUP_ENCRYPTION_KEY"):
        preflight_backup(no_key, no_key.tenant("acme"), "manual", actor="ops")
    suspended = _ctx(
        mongo_uri, local_storage_url, {"acme": mongo_db_name}, subscription="suspended"
    )
    with pytest.raises(SubscriptionSuspended):
        preflight_backup(suspended, suspended.tenant("acme"), "15-day")
    tiny = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name}, storage_quota_mb=1)
    # pretend the folder is nearly full: a 1 MB quota with ~1 MB already used
    root = Path(local_storage_url.removeprefix("file://")) / "acme"
    root.mkdir(parents=True, exist_ok=True)
    (root / "other-files.bin").write_bytes(b"\0" * 1_000_000)
    with pytest.raises(QuotaExceeded, match="MB"):
        preflight_backup(tiny, tiny.tenant("acme"), "manual", actor="ops")
    # and the hard stop while writing leaves nothing behind
    with pytest.raises(QuotaExceeded):
        backup_tenant(tiny, tiny.tenant("acme"), "manual")
    assert list_backups(tiny, tiny.tenant("acme")) == []


def test_other_tenants_files_and_paths_are_refused(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    _seed(mongo_client, mongo_db_name)
    other_db = mongo_db_name + "_b"
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name, "beta": other_db})
    acme, beta = ctx.tenant("acme"), ctx.tenant("beta")
    file = backup_tenant(ctx, acme, "manual").entry.file
    try:
        with pytest.raises(ObjectNotFound):
            describe_backup(ctx, beta, file)
        for bad in ("../acme/db-backups/" + file, "/etc/passwd", "acme/" + file, ""):
            with pytest.raises((InvalidName, ObjectNotFound)):
                restore_tenant(ctx, beta, bad)
        # copying acme's archive into beta's folder does not make it restorable there
        src = Path(local_storage_url.removeprefix("file://")) / "acme" / "db-backups" / file
        dst = Path(local_storage_url.removeprefix("file://")) / "beta" / "db-backups" / file
        dst.parent.mkdir(parents=True)
        dst.write_bytes(src.read_bytes())
        with pytest.raises(WrongTenant):
            check_key_can_read(ctx, beta, file)
        with pytest.raises(WrongTenant):
            restore_tenant(ctx, beta, file)
        assert other_db not in mongo_client.list_database_names()
    finally:
        mongo_client.drop_database(other_db)


def test_wrong_key_is_named_and_legacy_gzip_needs_none(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    file = backup_tenant(ctx, ctx.tenant("acme"), "manual").entry.file
    rotated = _ctx(
        mongo_uri,
        local_storage_url,
        {"acme": mongo_db_name},
        key=base64.b64encode(os.urandom(32)).decode(),
    )
    fingerprint = ctx.settings.keyring.require_current().fingerprint
    with pytest.raises(WrongKey, match=fingerprint):
        check_key_can_read(rotated, rotated.tenant("acme"), file)

    # a legacy plaintext .gz (the decrypted form) restores with no key configured at all
    root = Path(local_storage_url.removeprefix("file://")) / "acme" / "db-backups"
    with (root / file).open("rb") as src:
        plain = open_plaintext(src, ctx.settings.keyring, "acme", name=file).read()
    assert gzip.decompress(plain)[:4] == bytes.fromhex("6de29981")
    legacy = file.removesuffix(".gz.enc").replace("manual_", "15-day_") + ".gz"
    (root / legacy).write_bytes(plain)
    keyless = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name}, key=None)
    mongo_client[mongo_db_name].employees.drop()
    result = restore_tenant(keyless, keyless.tenant("acme"), legacy)
    assert result.documents == 80
    assert mongo_client[mongo_db_name].employees.count_documents({}) == 50
    assert any(not e.encrypted for e in list_backups(keyless, keyless.tenant("acme")))

    # ... but the product's restore always takes an encrypted safety backup first, so it is
    # refused up front, before any confirmation, with what to do
    with pytest.raises(KeyMissing) as refused:
        preflight_restore(keyless, keyless.tenant("acme"), legacy, actor="ops")
    assert "safety backup" in str(refused.value)
    assert "legacy" in str(refused.value)
    assert preflight_restore(ctx, ctx.tenant("acme"), legacy, actor="ops").file == legacy


def test_backup_and_restore_through_s3_over_http(
    mongo_client, mongo_uri, mongo_db_name, s3_endpoint, s3_bucket
):
    """The same pipeline against the S3 API (moto over real HTTP), two tenants in one bucket."""
    import boto3

    _seed(mongo_client, mongo_db_name)
    other_db = mongo_db_name + "_b"
    settings = Settings(
        backup_encryption_key=KEY,
        mongodb_uri=mongo_uri,
        storage_url=f"s3://{s3_bucket}/tenants",
        s3_endpoint_url=s3_endpoint,
        tenants_file=Path("unused.yaml"),
    )
    registry = TenantRegistry.from_data(
        {
            "tenants": [
                {"id": "acme", "workspace_name": "Acme", "database": mongo_db_name},
                {"id": "acme-2", "workspace_name": "Acme Two", "database": other_db},
            ]
        }
    )
    ctx = EngineContext(settings, registry)
    acme, acme2 = ctx.tenant("acme"), ctx.tenant("acme-2")
    before = _state(mongo_client, mongo_db_name)
    try:
        file = backup_tenant(ctx, acme, "7-day").entry.file
        keys = [
            o["Key"]
            for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=s3_bucket)[
                "Contents"
            ]
        ]
        assert f"tenants/acme/db-backups/{file}" in keys
        # a tenant whose id shares a prefix sees nothing of acme's
        assert list_backups(ctx, acme2) == []
        with pytest.raises(ObjectNotFound):
            restore_tenant(ctx, acme2, file)
        mongo_client[mongo_db_name].invoices.delete_many({})
        restore_tenant(ctx, acme, file)
        assert _state(mongo_client, mongo_db_name) == before
        assert verify_backup(ctx, acme, file).documents == 80
    finally:
        mongo_client.drop_database(other_db)


def test_plaintext_swapped_in_under_an_encrypted_name_is_refused(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    """Someone with write access to storage replaces a .gz.enc with plaintext of their own."""

    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    file = backup_tenant(ctx, tenant, "manual").entry.file
    stored = Path(local_storage_url.removeprefix("file://")) / "acme" / "db-backups" / file
    with stored.open("rb") as src:
        plain = open_plaintext(src, ctx.settings.keyring, "acme", name=file).read()
    stored.write_bytes(plain)  # valid mongodump gzip, but no longer authenticated
    before = _state(mongo_client, mongo_db_name)
    with pytest.raises(ArchiveCorrupt, match="named as encrypted"):
        check_key_can_read(ctx, tenant, file)
    with pytest.raises(ArchiveCorrupt, match="encrypted"):
        verify_backup(ctx, tenant, file)
    with pytest.raises(ArchiveCorrupt, match="encrypted"):
        restore_tenant(ctx, tenant, file)
    assert _state(mongo_client, mongo_db_name) == before


def test_a_renamed_copy_is_not_the_backup_its_name_claims(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    """Someone copies a backup under another time, label or id in the same folder.

    The list shows what a name claims (it reads no headers), but verify, the pre-restore key
    check and restore all refuse the copy: its header names the original file.
    """
    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    file = backup_tenant(ctx, tenant, "manual").entry.file
    original = BackupName.parse(file)
    folder = ctx.folder(tenant)  # a BackupFolder on local storage
    with folder.open(file) as src:
        data = src.read()
    far_future = datetime(2099, 12, 31, tzinfo=UTC)
    copies = [
        replace(original, frequency="15-day", taken_at=far_future, short_id="aaaaaa17"),
        replace(original, frequency="pre-restore", taken_at=datetime(2020, 1, 1, tzinfo=UTC)),
        replace(original, frequency="15-day"),  # another label only
        replace(original, short_id="aaaaaa17"),  # another id only
        replace(original, taken_at=original.taken_at + timedelta(seconds=1)),  # another time
    ]
    for copy in copies:
        folder.write(copy, io.BytesIO(data))
    assert list_backups(ctx, tenant)[0].file == copies[0].filename  # listed as from 2099 ...
    mongo_client[mongo_db_name].extra.insert_one({"x": 1})
    before = _state(mongo_client, mongo_db_name)
    for copy in copies:
        with pytest.raises(NameMismatch) as err:
            verify_backup(ctx, tenant, copy.filename)  # ... but verify reports it bad
        message = str(err.value)
        assert copy.filename in message
        assert file in message
        assert "renamed or copied; use the original or another backup" in message
        assert "\n" not in message
        with pytest.raises(NameMismatch):
            check_key_can_read(ctx, tenant, copy.filename)  # the restore flow's early check
        with pytest.raises(NameMismatch):
            restore_tenant(ctx, tenant, copy.filename)
    assert _state(mongo_client, mongo_db_name) == before  # nothing was restored
    assert verify_backup(ctx, tenant, file).documents == 80  # the original is untouched


def test_version_1_backups_are_bound_by_their_time(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    """Version 1 headers have no name: a copy with another time is refused, the rest pass."""
    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    file = backup_tenant(ctx, tenant, "manual").entry.file
    original = BackupName.parse(file)
    folder = ctx.folder(tenant)
    with folder.open(file) as src:
        plain = open_plaintext(src, ctx.settings.keyring, "acme", name=file).read()
    # What the version 1 writer made: created_at is exactly the name's time.
    v1 = seal_v1(plain, base64.b64decode(KEY), "acme", original.taken_at)
    as_written = replace(original, frequency="15-day", short_id="00000001")
    redated = replace(as_written, taken_at=original.taken_at + timedelta(days=400))
    folder.write(as_written, io.BytesIO(v1))
    folder.write(redated, io.BytesIO(v1))

    assert verify_backup(ctx, tenant, as_written.filename).documents == 80
    check_key_can_read(ctx, tenant, as_written.filename)
    for call in (verify_backup, check_key_can_read, restore_tenant):
        with pytest.raises(NameMismatch, match="renamed or copied"):
            call(ctx, tenant, redated.filename)
    before = _state(mongo_client, mongo_db_name)
    mongo_client[mongo_db_name].employees.drop()
    assert restore_tenant(ctx, tenant, as_written.filename).documents == 80
    assert _state(mongo_client, mongo_db_name) == before


def test_a_header_edited_to_match_its_new_name_fails_the_early_check(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    """The pre-restore check authenticates the header (it decrypts the first segment), so an
    edited header fails before any safety backup, not half-way through the restore."""
    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    file = backup_tenant(ctx, tenant, "manual").entry.file
    original = BackupName.parse(file)
    forged = replace(original, short_id="aaaaaa17")  # same length: only the name bytes change
    folder = ctx.folder(tenant)
    with folder.open(file) as src:
        data = src.read()
    edited = data.replace(original.filename.encode(), forged.filename.encode(), 1)
    assert edited != data
    folder.write(forged, io.BytesIO(edited))
    with pytest.raises(ArchiveCorrupt, match="damaged or was altered"):
        check_key_can_read(ctx, tenant, forged.filename)


def test_safety_backups_are_outside_the_quota(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    """A tenant over half its quota can still restore: the pre-restore backup is never
    refused for room, and it does not count against the tenant's other backups."""
    _seed(mongo_client, mongo_db_name)
    roomy = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    made = backup_tenant(roomy, roomy.tenant("acme"), "manual")
    size = made.entry.size_bytes
    # A quota that holds the existing backup but not a second one of the same size.
    quota_mb = 1
    tight = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name}, storage_quota_mb=quota_mb)
    tenant = tight.tenant("acme")
    filler = 1_000_000 - 2 * size + 10  # leaves less room than one more backup
    tight.folder(tenant).write(
        BackupName.parse("manual_20200101T000000Z_0000abcd.gz.enc"), io.BytesIO(b"x" * filler)
    )
    with pytest.raises(QuotaExceeded):
        preflight_backup(tight, tenant, "manual", actor="ops")
    preflight_backup(tight, tenant, "pre-restore")  # never refused for room
    safety = backup_tenant(tight, tenant, "pre-restore")
    report = quota_report(tight, tenant)
    assert report.outside_quota_bytes == safety.entry.size_bytes
    # everything on disk counts but the safety backup
    assert report.used_bytes == tight.folder(tenant).usage_bytes() - safety.entry.size_bytes
    assert report.used_bytes >= size + filler
    assert "safety backups outside the quota" in report.describe()


def test_a_lost_lease_stops_the_backup_before_its_commit_and_the_restore_before_its_swap(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    from daai_backup.errors import LeaseLost
    from daai_backup.lease import lease_id, leases_collection, tenant_lease

    _seed(mongo_client, mongo_db_name)
    control = f"{mongo_db_name}_ctl"
    base = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    ctx = EngineContext(
        base.settings.model_copy(update={"control_database": control}), base.registry
    )
    tenant = ctx.tenant("acme")
    try:
        with tenant_lease(ctx.mongo_client, control, "acme", "backup") as held:
            checks: list[int] = []
            held_check = held.check

            def check() -> None:
                checks.append(1)
                held_check()

            held.check = check  # type: ignore[method-assign]  # count the engine's checks
            good = backup_tenant(ctx, tenant, "manual").entry.file  # nested: the same lease
            held.check = held_check  # type: ignore[method-assign]
            assert checks  # called once everything was written
        mongo_client[mongo_db_name].employees.delete_many({})
        damaged = _state(mongo_client, mongo_db_name)

        with tenant_lease(
            ctx.mongo_client, control, "acme", "restore", ttl_seconds=3, renew_every=0.2
        ) as held:
            leases_collection(mongo_client, control).update_one(
                {"_id": lease_id("acme")}, {"$set": {"holder": "successor"}}
            )
            for _ in range(100):
                if held.lost:
                    break
                time.sleep(0.05)
            with pytest.raises(LeaseLost):
                backup_tenant(ctx, tenant, "manual")  # nested in the held lease: checks it
            assert [e.file for e in list_backups(ctx, tenant)] == [good]
            folder = Path(local_storage_url.removeprefix("file://")) / "acme" / "db-backups"
            # No partial file left (the listing index is the folder's own cache).
            assert all(good in p.name for p in folder.iterdir() if p.name != "index.enc")

            with pytest.raises(LeaseLost):
                restore_tenant(ctx, tenant, good)
            assert _state(mongo_client, mongo_db_name) == damaged  # nothing live changed
            assert not [
                name
                for name in mongo_client[mongo_db_name].list_collection_names()
                if name.startswith("__daai")
            ]
    finally:
        ctx.close()
        mongo_client.drop_database(control)


@pytest.mark.parametrize(
    "call", ["hold", "backup", "restore", "delete", "remove_leftovers", "finish_interrupted"]
)
def test_engine_calls_wait_for_the_tenants_lease(
    call, mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    """Whoever calls the engine (a flow, the CLI, a script), an operation that writes to a
    tenant's folder or database waits while another operation of the tenant holds the lease."""
    import threading

    from daai_backup.lease import tenant_lease

    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    file = backup_tenant(ctx, tenant, "manual").entry.file
    taken, release = threading.Event(), threading.Event()

    def operation_elsewhere() -> None:
        with tenant_lease(mongo_client, ctx.settings, "acme", "retention"):
            taken.set()
            release.wait(10)

    other = threading.Thread(target=operation_elsewhere)
    other.start()
    assert taken.wait(10)
    threading.Timer(1.5, release.set).start()
    started = time.monotonic()
    {
        "hold": lambda: set_hold(ctx, tenant, file, held=True),
        "backup": lambda: backup_tenant(ctx, tenant, "manual"),
        "restore": lambda: restore_tenant(ctx, tenant, file),
        "delete": lambda: delete_backup(ctx, tenant, file),
        "remove_leftovers": lambda: remove_leftovers(ctx, tenant),
        "finish_interrupted": lambda: finish_interrupted_restore(ctx, tenant),
    }[call]()
    assert time.monotonic() - started >= 1.4  # it waited for the other operation
    other.join(10)


def test_a_best_effort_backup_records_the_catalog_changes_it_saw(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    """``on_catalog_change="record"`` (the task's last attempt) keeps the backup and says why
    it is best-effort; "raise" keeps nothing. The change is made while the dump is blocked on
    the pipe (16 MB of incompressible data cannot all be buffered), so it lands mid-dump."""
    db = mongo_client[mongo_db_name]
    db.blobs.insert_many([{"_id": i, "b": os.urandom(1 << 20)} for i in range(16)])
    ctx = _ctx(mongo_uri, local_storage_url, {"t1": mongo_db_name})
    tenant = ctx.tenant("t1")
    made: list[str] = []
    attempt = [0]

    def app_creates_a_collection(done: int, expected: int) -> None:
        if len(made) < attempt[0]:
            made.append(f"report{len(made)}")
            db.create_collection(made[-1])

    attempt[0] = 1
    with pytest.raises(Exception, match="report0") as refused:
        backup_tenant(ctx, tenant, "manual", progress=app_creates_a_collection)
    assert getattr(refused.value, "transient", False)  # the task retries it
    assert list_backups(ctx, tenant) == []

    attempt[0] = 2
    outcome = backup_tenant(
        ctx, tenant, "manual", progress=app_creates_a_collection, on_catalog_change="record"
    )
    assert outcome.consistency == "best-effort"
    assert outcome.catalog_changes == ["report1: new"]
    assert [e.file for e in list_backups(ctx, tenant)] == [outcome.entry.file]
    manifest = manifest_of(ctx, tenant, outcome.entry.file)
    assert manifest.consistency == "best-effort"
    assert manifest.catalog_changes == ("report1: new",)
