"""Manifests: sealed per tenant and per backup name, refused when moved or altered."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from daai_backup.errors import ArchiveCorrupt, NameMismatch, WrongTenant
from daai_backup.format.keys import Keyring, generate_master_key, parse_master_key
from daai_backup.repository.manifest import (
    Manifest,
    NamespaceFacts,
    backup_of,
    manifest_name,
    options_digest,
    seal,
    unseal,
)

FILE = "manual_20261127T010000Z_3f9a1c2b.gz.enc"
OTHER = "manual_20261128T010000Z_aaaaaaaa.gz.enc"


def _manifest(file: str = FILE, tenant: str = "acme-hr") -> Manifest:
    return Manifest(
        tenant=tenant,
        file=file,
        label="manual",
        taken_at=datetime(2026, 11, 27, 1, 0, tzinfo=UTC),
        cluster_time=(1795741200, 3),
        actor="ops@example.com",
        note="before the import",
        key_fingerprint="0123456789abcdef",
        stored_bytes=10,
        plain_bytes=30,
        data_bytes=20,
        documents=2,
        consistency="snapshot",
        server_version="8.0.0",
        namespaces=(
            NamespaceFacts("invoices", "collection", 2, 20, ("_id_",), options_digest({}), -5),
        ),
    )


def test_a_manifest_round_trips_and_is_bound_to_its_tenant_and_name() -> None:
    master = parse_master_key(generate_master_key())
    ring = Keyring(current=master)
    sealed = seal(_manifest(), master)
    assert b"before the import" not in sealed  # the note is encrypted
    assert unseal(io.BytesIO(sealed), ring, "acme-hr", FILE) == _manifest()
    with pytest.raises(WrongTenant):
        unseal(io.BytesIO(sealed), ring, "acme-crm", FILE)
    with pytest.raises(NameMismatch):
        unseal(io.BytesIO(sealed), ring, "acme-hr", OTHER)
    flipped = bytearray(sealed)
    flipped[-3] ^= 1
    with pytest.raises(ArchiveCorrupt):
        unseal(io.BytesIO(bytes(flipped)), ring, "acme-hr", FILE)


def test_names_and_digests() -> None:
    assert manifest_name(FILE) == FILE + ".manifest"
    assert backup_of(FILE + ".manifest") == FILE
    assert backup_of("notes.txt.manifest") is None
    assert options_digest({"b": 1, "a": 2}) == options_digest({"a": 2, "b": 1})
    assert options_digest({"capped": True}) != options_digest({})


def test_the_folder_keeps_a_manifest_beside_its_backup_and_deletes_it_after(tmp_path) -> None:
    from daai_backup.errors import ObjectNotFound
    from daai_backup.repository.folder import BackupFolder
    from daai_backup.repository.names import BackupName
    from daai_backup.storage import storage_from_url

    folder = BackupFolder(storage_from_url(tmp_path.as_uri()), "acme-hr")
    master = parse_master_key(generate_master_key())
    with pytest.raises(ObjectNotFound):  # no manifest without its backup
        folder.put_manifest(FILE, seal(_manifest(), master))
    folder.write(BackupName.parse(FILE), io.BytesIO(b"backup bytes"))
    folder.put_manifest(FILE, seal(_manifest(), master))
    with folder.open_manifest(FILE) as sealed:
        assert unseal(sealed, Keyring(current=master), "acme-hr", FILE).note == "before the import"
    folder.delete(FILE)
    with pytest.raises(ObjectNotFound):
        folder.open_manifest(FILE)
