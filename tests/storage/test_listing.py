"""Listing a tenant's folder costs O(1) requests: counted on S3 over HTTP and on local disk.

S3 requests are counted with botocore's own event hooks (every HTTP request the client
sends), so nothing about the folder's implementation is assumed.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import KEYRING
from test_backup_folder_crashes import Journal

from daai_backup.format.keys import Keyring, MasterKey
from daai_backup.operations import EngineContext, describe_backup, folder_listing
from daai_backup.repository import index as listing_index
from daai_backup.repository.folder import BackupFolder, folder_for_tenant
from daai_backup.repository.manifest import Manifest, NamespaceFacts, seal
from daai_backup.repository.names import BackupName
from daai_backup.repository.verification import VerificationRecord
from daai_backup.settings import Settings
from daai_backup.storage import S3Storage, put_bytes, read_bytes
from daai_backup.tenants import TenantRegistry

T0 = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)
BACKUPS = 30


def manifest_of(tenant: str, file: str, size: int, note: str | None) -> Manifest:
    name = BackupName.parse(file)
    assert KEYRING.current is not None
    return Manifest(
        tenant=tenant,
        file=file,
        label=name.frequency,
        taken_at=name.taken_at,
        cluster_time=(int(name.taken_at.timestamp()), 1),
        actor="ops@example.com",
        note=note,
        key_fingerprint=KEYRING.current.fingerprint,
        stored_bytes=size,
        plain_bytes=size * 3,
        data_bytes=size * 2,
        documents=7,
        consistency="snapshot",
        server_version="8.2.11",
        namespaces=(NamespaceFacts("invoices", "collection", 7, size * 2, ("_id_",), "0" * 64, 1),),
    )


def add_backup(folder: BackupFolder, n: int, note: str | None = None, tenant: str = "acme") -> str:
    """A small backup object plus its sealed manifest (what a real backup leaves)."""
    name = BackupName("15-day", T0 + timedelta(hours=n), f"{n:08x}", True)
    data = b"x" * (100 + n)
    folder.write(name, io.BytesIO(data))
    assert KEYRING.current is not None
    folder.put_manifest(
        name.filename, seal(manifest_of(tenant, name.filename, len(data), note), KEYRING.current)
    )
    return name.filename


class Requests:
    """Every HTTP request an S3 client sends, by operation name."""

    def __init__(self, storage: S3Storage) -> None:
        self.seen: Counter[str] = Counter()
        storage.client.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str, **_: Any) -> None:
        self.seen[event_name.rsplit(".", 1)[1]] += 1

    def take(self) -> dict[str, int]:
        seen = dict(self.seen)
        self.seen.clear()
        return seen


@pytest.fixture
def s3_folder(s3_endpoint: str, s3_bucket: str) -> tuple[BackupFolder, Requests]:
    folder = folder_for_tenant(
        "acme", None, f"s3://{s3_bucket}/t", s3_endpoint_url=s3_endpoint, keyring=KEYRING
    )
    assert isinstance(folder.storage, S3Storage)
    return folder, Requests(folder.storage)


def test_listing_on_s3_is_one_list_and_one_get_whatever_the_number_of_backups(
    s3_folder: tuple[BackupFolder, Requests],
) -> None:
    folder, requests = s3_folder
    files = [add_backup(folder, n, note=f"note {n}" if n % 2 else None) for n in range(BACKUPS)]
    folder.hold(files[3])
    folder.record_verification(files[4], VerificationRecord(files[4], T0, False, "bad tag", 104))
    folder.record_verification(files[5], VerificationRecord(files[5], T0, True, None, 105))
    requests.take()

    cold = folder.listing()  # no index yet: every manifest read once, then the index written
    # (the backend's put answers with the new object's info: a HEAD after the PUT)
    written = {"PutObject": 1, "HeadObject": 1}
    assert requests.take() == {"ListObjectsV2": 1, "GetObject": BACKUPS, **written}
    assert cold.index_written

    warm = folder.listing()
    assert requests.take() == {"ListObjectsV2": 1, "GetObject": 1}  # the index
    assert warm.entries == cold.entries
    assert not warm.index_written
    by_file = {e.file: e for e in warm.entries}
    assert len(by_file) == BACKUPS
    assert by_file[files[1]].note == "note 1"
    assert by_file[files[2]].note is None
    assert by_file[files[3]].held
    assert by_file[files[4]].verification == VerificationRecord(files[4], T0, False, None, 104)
    assert by_file[files[5]].verification is not None
    assert warm.strays == []
    assert warm.without_manifest == []

    # One new backup: its manifest read once, the index rewritten, then steady again.
    new = add_backup(folder, BACKUPS, note="new")
    requests.take()
    assert folder.listing().entries[0].note == "new"
    assert requests.take() == {"ListObjectsV2": 1, "GetObject": 2, **written}
    folder.listing()
    assert requests.take() == {"ListObjectsV2": 1, "GetObject": 1}

    # A deleted backup's index entry is ignored (LIST is the truth) and dropped once.
    folder.delete(new)
    requests.take()
    assert new not in {e.file for e in folder.listing().entries}
    assert requests.take() == {"ListObjectsV2": 1, "GetObject": 1, **written}

    # Looking one backup up by name: one HEAD.
    entry = folder.lookup(files[7])
    assert requests.take() == {"HeadObject": 1}
    assert (entry.file, entry.size_bytes) == (files[7], 107)


def test_describe_backup_is_one_head_and_never_a_listing(s3_endpoint: str, s3_bucket: str) -> None:
    settings = Settings(
        backup_encryption_key=_b64(bytes(range(32))),
        mongodb_uri="mongodb://127.0.0.1:1/",
        storage_url=f"s3://{s3_bucket}/t",
        s3_endpoint_url=s3_endpoint,
        tenants_file=Path("unused.yaml"),
    )
    registry = TenantRegistry.from_data(
        {"tenants": [{"id": "acme", "workspace_name": "Acme", "database": "acme_db"}]}
    )
    ctx = EngineContext(settings, registry)
    tenant = ctx.tenant("acme")
    folder = ctx.folder(tenant)
    files = [add_backup(folder, n) for n in range(3)]
    assert isinstance(folder.storage, S3Storage)
    requests = Requests(folder.storage)
    assert describe_backup(ctx, tenant, files[1]).size_bytes == 101
    assert requests.take() == {"HeadObject": 1}
    assert [e.file for e in folder_listing(ctx, tenant).entries] == files[::-1]


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


def test_listing_on_local_disk_reads_only_the_index(tmp_path: Path) -> None:
    storage = folder_for_tenant("acme", None, tmp_path.as_uri()).storage
    journal = Journal(storage)
    folder = BackupFolder(journal, "acme", tenant_id="acme", keyring=KEYRING)
    for n in range(BACKUPS):
        add_backup(folder, n, note=f"n{n}")
    folder.listing()
    journal.reads.clear()
    listing = folder.listing()
    assert journal.reads == ["list acme/db-backups/", "read acme/db-backups/index.enc"]
    assert [e.note for e in listing.entries] == [f"n{n}" for n in reversed(range(BACKUPS))]


def test_without_a_key_the_list_is_names_and_sizes_and_says_notes_need_it(
    s3_folder: tuple[BackupFolder, Requests],
) -> None:
    folder, requests = s3_folder
    files = [add_backup(folder, n, note="secret plans") for n in range(3)]
    folder.listing()  # the index exists: still unreadable without the key
    keyless = BackupFolder(folder.storage, "acme", tenant_id="acme", keyring=Keyring(None))
    requests.take()
    listing = keyless.listing()
    assert requests.take() == {"ListObjectsV2": 1}
    assert [e.file for e in listing.entries] == files[::-1]
    assert [e.note for e in listing.entries] == [None] * 3
    assert listing.notes_need_key


def test_an_unreadable_manifest_is_reported_and_not_read_again(
    s3_folder: tuple[BackupFolder, Requests],
) -> None:
    folder, requests = s3_folder
    good, broken = add_backup(folder, 1, note="ok"), add_backup(folder, 2, note="lost")
    storage = folder.storage
    # Another backup's manifest under this name: sealed for another name, so refused.
    put_bytes(
        storage,
        f"acme/db-backups/{broken}.manifest",
        read_bytes(storage, f"acme/db-backups/{good}.manifest"),
    )
    first = folder.listing()
    [stray] = first.strays
    assert stray.name == f"{broken}.manifest"
    assert "manifest cannot be read" in stray.problem
    assert "daai-backup verify --tenant acme --file" in stray.remedy
    assert not stray.removable
    assert {e.file: e.note for e in first.entries} == {good: "ok", broken: None}
    requests.take()
    assert folder.listing().strays == first.strays  # the error is cached with the index
    assert requests.take() == {"ListObjectsV2": 1, "GetObject": 1}


def test_an_index_of_another_tenant_or_key_is_not_used_and_is_rebuilt(
    s3_folder: tuple[BackupFolder, Requests],
) -> None:
    folder, _ = s3_folder
    add_backup(folder, 1, note="mine")
    assert KEYRING.current is not None
    fake = {"x": listing_index.IndexEntry("sidecar", 1, {"note": "theirs"})}
    foreign = listing_index.seal(fake, KEYRING.current, "acme-2", T0)
    put_bytes(folder.storage, "acme/db-backups/index.enc", foreign)
    listing = folder.listing()
    assert listing.index_problem is not None
    assert "acme-2" in listing.index_problem
    assert [e.note for e in listing.entries] == ["mine"]
    assert listing.index_written
    other_key = Keyring(MasterKey(bytes(32)))
    stranger = BackupFolder(folder.storage, "acme", tenant_id="acme", keyring=other_key)
    assert stranger.listing().index_problem is not None  # wrong key: names only, rebuilt


def test_legacy_side_file_notes_are_cached_until_a_manifest_appears(tmp_path: Path) -> None:
    storage = folder_for_tenant("acme", None, tmp_path.as_uri()).storage
    journal = Journal(storage)
    folder = BackupFolder(journal, "acme", tenant_id="acme", keyring=KEYRING)
    name = BackupName("manual", T0, "0badcafe", True)
    folder.write(name, io.BytesIO(b"old"), note="from the side file")
    assert [e.note for e in folder.entries()] == ["from the side file"]
    journal.reads.clear()
    listing = folder.listing()
    assert journal.reads == ["list acme/db-backups/", "read acme/db-backups/index.enc"]
    assert listing.without_manifest == [name.filename]
    assert KEYRING.current is not None
    manifest = manifest_of("acme", name.filename, 3, "from the manifest")
    folder.put_manifest(name.filename, seal(manifest, KEYRING.current))
    assert [e.note for e in folder.entries()] == ["from the manifest"]
    assert folder.listing().without_manifest == []
