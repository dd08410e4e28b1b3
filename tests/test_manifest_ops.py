"""Manifests end to end: written with every backup, rebuilt for old ones, held against the
archive by verify; and `import` of a mongodump archive, on real servers."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_operations import _ctx, _seed, _state

from daai_backup.errors import (
    DaaiBackupError,
    ManifestMismatch,
    NotAnArchive,
    ObjectNotFound,
    PermissionDenied,
    StorageError,
)
from daai_backup.format.dbk1 import open_plaintext
from daai_backup.mongo import dump_database
from daai_backup.operations import (
    backup_tenant,
    import_archive,
    list_backups,
    manifest_of,
    restore_tenant,
    verify_backup,
)
from daai_backup.repository.manifest import manifest_name, seal


def _files(storage_url: str, tenant: str = "acme") -> dict[str, bytes]:
    """The tenant's objects (local storage keeps each object's metadata in a dot file)."""
    root = Path(storage_url.removeprefix("file://")) / tenant
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def test_a_backup_writes_its_manifest_and_no_plaintext_note(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    _seed(mongo_client, mongo_db_name)
    mongo_client[mongo_db_name].create_collection(
        "readings", timeseries={"timeField": "at", "metaField": "sensor"}
    )
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    outcome = backup_tenant(ctx, tenant, "manual", actor="ops", note="before payroll run")
    file = outcome.entry.file

    stored = _files(local_storage_url)
    assert set(stored) == {f"db-backups/{file}", f"db-backups/{manifest_name(file)}"}
    assert not any(b"before payroll run" in data for data in stored.values())

    m = manifest_of(ctx, tenant, file)
    assert (m.tenant, m.file, m.label, m.source) == ("acme", file, "manual", "backup")
    assert (m.actor, m.note, m.consistency) == ("ops", "before payroll run", "snapshot")
    assert m.cluster_time is not None
    assert m.cluster_time[0] > 1_700_000_000
    assert m.key_fingerprint == ctx.settings.keyring.require_current().fingerprint
    assert m.stored_bytes == outcome.entry.size_bytes
    assert m.documents == 80
    assert m.data_bytes == outcome.data_bytes > 0
    assert m.plain_bytes > m.data_bytes
    kinds = {n.name: n.kind for n in m.namespaces}
    assert kinds == {
        "audit": "collection",
        "big_invoices": "view",
        "employees": "collection",
        "invoices": "collection",
        "readings": "timeseries",
    }
    employees = m.namespace("employees")
    assert employees is not None
    assert employees.documents == 50
    assert employees.indexes == ("_id_", "name_1")
    assert m.namespace("audit").options_digest != m.namespace("invoices").options_digest  # type: ignore[union-attr]
    # verify agrees with what the backup wrote (same facts from the archive)
    assert verify_backup(ctx, tenant, file).documents == 80


def test_no_manifest_means_no_backup(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url, monkeypatch
):
    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")

    def refuse(*args: Any, **kwargs: Any) -> bytes:
        raise StorageError("the manifest could not be written")

    monkeypatch.setattr("daai_backup.operations.seal", refuse)
    with pytest.raises(StorageError, match="manifest"):
        backup_tenant(ctx, tenant, "manual", actor="ops")
    assert list_backups(ctx, tenant) == []
    assert _files(local_storage_url) == {}


def test_an_old_backup_gets_its_manifest_built_from_the_archive(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    """A backup written before manifests (note in a side file) describes itself once read."""
    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    made = backup_tenant(ctx, tenant, "manual", actor="ops", note="month end")
    file = made.entry.file
    written = manifest_of(ctx, tenant, file)
    root = Path(local_storage_url.removeprefix("file://")) / "acme" / "db-backups"
    (root / manifest_name(file)).unlink()
    (root / f"{file}.meta.json").write_text('{"note": "month end", "consistency": "snapshot"}')

    rebuilt = manifest_of(ctx, tenant, file)
    assert rebuilt.source == "archive"
    assert (rebuilt.note, rebuilt.consistency, rebuilt.actor) == ("month end", "snapshot", None)
    assert rebuilt.cluster_time is None
    assert rebuilt.namespaces == written.namespaces
    assert (rebuilt.plain_bytes, rebuilt.stored_bytes) == (
        written.plain_bytes,
        written.stored_bytes,
    )
    assert (root / manifest_name(file)).is_file()  # stored: the next look is one read
    assert manifest_of(ctx, tenant, file) == rebuilt

    (root / manifest_name(file)).unlink()
    verify_backup(ctx, tenant, file)  # verify builds a missing one too
    assert manifest_of(ctx, tenant, file).namespaces == written.namespaces


def test_verify_fails_a_manifest_that_does_not_match_its_backup(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    folder = ctx.folder(tenant)
    master = ctx.settings.keyring.require_current()
    a = backup_tenant(ctx, tenant, "manual", actor="ops").entry.file
    mongo_client[mongo_db_name].invoices.delete_many({"n": {"$lt": 5}})
    b = backup_tenant(ctx, tenant, "manual", actor="ops").entry.file
    root = Path(local_storage_url.removeprefix("file://")) / "acme" / "db-backups"

    # tampered: a well-sealed manifest that claims other counts
    good = manifest_of(ctx, tenant, a)
    invoices = good.namespace("invoices")
    assert invoices is not None
    lying = replace(
        good,
        namespaces=tuple(
            replace(n, documents=n.documents + 1) if n.name == "invoices" else n
            for n in good.namespaces
        ),
    )
    folder.put_manifest(a, seal(lying, master))
    with pytest.raises(ManifestMismatch) as bad:
        verify_backup(ctx, tenant, a)
    line = str(bad.value)
    assert "\n" not in line
    assert manifest_name(a) in line
    assert "'invoices' differs (documents)" in line
    assert a not in folder.verifications()  # a manifest problem says nothing of the archive

    # swapped: b's manifest copied over a's
    (root / manifest_name(a)).write_bytes((root / manifest_name(b)).read_bytes())
    with pytest.raises(ManifestMismatch, match=f"{manifest_name(a)}.*not the manifest of"):
        verify_backup(ctx, tenant, a)
    with pytest.raises(ManifestMismatch):
        manifest_of(ctx, tenant, a)

    # repaired as the message says: delete it, verify rebuilds it
    (root / manifest_name(a)).unlink()
    verify_backup(ctx, tenant, a)
    assert manifest_of(ctx, tenant, a).namespace("invoices") == invoices
    assert folder.verifications()[a].ok


def test_describe_refuses_unknown_and_other_tenants_files(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    _seed(mongo_client, mongo_db_name)
    databases = {"acme": mongo_db_name, "acme-2": mongo_db_name + "_2"}
    ctx = _ctx(mongo_uri, local_storage_url, databases)
    file = backup_tenant(ctx, ctx.tenant("acme"), "manual", actor="ops").entry.file
    with pytest.raises(ObjectNotFound, match="not a backup of tenant 'acme-2'"):
        manifest_of(ctx, ctx.tenant("acme-2"), file)
    with pytest.raises(ObjectNotFound, match="not a backup of tenant 'acme'"):
        manifest_of(ctx, ctx.tenant("acme"), "manual_20990101T000000Z_aaaaaaaa.gz.enc")
    with pytest.raises(DaaiBackupError):
        manifest_of(ctx, ctx.tenant("acme"), "../acme-2/db-backups/" + file)
    assert _files(local_storage_url, "acme-2") == {}


def _dump(client: Any, database: str, *, compress: bool) -> bytes:
    sink = io.BytesIO()
    dump_database(client, database, sink)
    return gzip.compress(sink.getvalue()) if compress else sink.getvalue()


def test_import_stores_an_archive_of_another_database_and_restores_it(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    source_db = mongo_db_name + "_src"
    try:
        _seed(mongo_client, source_db)
        expected = _state(mongo_client, source_db)
        ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
        tenant = ctx.tenant("acme")
        data = _dump(mongo_client, source_db, compress=True)
        done = import_archive(
            ctx, tenant, io.BytesIO(data), actor="ops", note="from the old system", what="x.gz"
        )
        assert done.entry.frequency == "imported"
        assert done.source_database == source_db
        assert [e.file for e in list_backups(ctx, tenant)] == [done.entry.file]
        m = manifest_of(ctx, tenant, done.entry.file)
        assert (m.label, m.actor, m.note, m.source) == (
            "imported",
            "ops",
            "from the old system",
            "archive",
        )
        assert m.documents == 80
        assert m.namespace("big_invoices").kind == "view"  # type: ignore[union-attr]
        # stored encrypted: the note and the data are nowhere in plaintext
        assert not any(
            b"emp 1" in v or b"old system" in v for v in _files(local_storage_url).values()
        )
        verify_backup(ctx, tenant, done.entry.file)
        restore_tenant(ctx, tenant, done.entry.file)
        assert _state(mongo_client, mongo_db_name) == expected
    finally:
        mongo_client.drop_database(source_db)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "is empty"),
        (b"hello, this is a CSV file\n", "not a mongodump archive"),
        (gzip.compress(b"just some text"), "not a mongodump archive"),
        (b"DBK1\x02\x01", "encrypted daai-backup file"),
    ],
)
def test_import_refuses_what_is_not_an_archive(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url, content, said
):
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    with pytest.raises(NotAnArchive, match=said) as refused:
        import_archive(ctx, ctx.tenant("acme"), io.BytesIO(content), actor="ops", what="f.bin")
    assert str(refused.value).startswith("f.bin ")
    assert "\n" not in str(refused.value)
    assert list_backups(ctx, ctx.tenant("acme")) == []
    assert _files(local_storage_url) == {}


def test_import_refuses_a_truncated_archive_and_an_actor_without_create(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    plain = _dump(mongo_client, mongo_db_name, compress=False)
    for cut in (plain[: len(plain) - 30], gzip.compress(plain)[:-40]):
        with pytest.raises(NotAnArchive, match=r"cannot be imported: .*nothing was stored"):
            import_archive(ctx, tenant, io.BytesIO(cut), actor="ops", what="cut.archive")
    with pytest.raises(PermissionDenied):
        import_archive(ctx, tenant, io.BytesIO(plain), actor="intruder")
    # An archive without a single collection would, restored, empty the workspace.
    empty = _dump(mongo_client, mongo_db_name + "_nothing", compress=False)
    with pytest.raises(NotAnArchive, match="holds no collection or view"):
        import_archive(ctx, tenant, io.BytesIO(empty), actor="ops", what="empty.archive")
    assert _files(local_storage_url) == {}


def _mongo_tool(name: str) -> str:
    """The real mongo-tools binary: ``$MONGO_TOOLS_BIN``, else ``../shared/tools/mongo-tools``
    beside the project (where CI has them too); a clear failure when neither has it."""
    project = Path(__file__).resolve().parents[1]
    for folder in (os.environ.get("MONGO_TOOLS_BIN"), project.parent / "shared/tools/mongo-tools"):
        if folder and (Path(folder) / name).is_file():
            return str(Path(folder) / name)
    pytest.fail(f"{name} not found in $MONGO_TOOLS_BIN or ../shared/tools/mongo-tools")


@pytest.mark.parametrize("compress", [False, True])
def test_a_real_mongodump_archive_imports_and_restores(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url, tmp_path, compress
):
    """`mongodump --db OTHER --archive [--gzip]` of SecantusDB, imported, then restored."""
    source_db = mongo_db_name + "_legacy"
    try:
        _seed(mongo_client, source_db)
        expected = _state(mongo_client, source_db)
        archive = tmp_path / ("dump.archive.gz" if compress else "dump.archive")
        subprocess.run(
            [
                _mongo_tool("mongodump"),
                f"--uri={mongo_uri}",
                f"--db={source_db}",
                f"--archive={archive}",
                *(["--gzip"] if compress else []),
                "--quiet",
            ],
            check=True,
            timeout=60,
        )
        ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
        tenant = ctx.tenant("acme")
        with archive.open("rb") as source:
            done = import_archive(
                ctx,
                tenant,
                source,
                actor="ops",
                what=archive.name,
                size_hint=archive.stat().st_size,
            )
        m = done.manifest
        assert done.source_database == source_db
        assert m.documents == 80
        assert {n.name for n in m.namespaces} == {"audit", "big_invoices", "employees", "invoices"}
        assert m.namespace("employees").indexes == ("_id_", "name_1")  # type: ignore[union-attr]
        with ctx.folder(tenant).open(done.entry.file) as stored:  # decrypts to a gzip archive
            assert (
                open_plaintext(stored, ctx.settings.keyring, "acme", name=done.entry.file).read(2)
                == b"\x1f\x8b"
            )
        restore_tenant(ctx, tenant, done.entry.file)
        assert _state(mongo_client, mongo_db_name) == expected
    finally:
        mongo_client.drop_database(source_db)
