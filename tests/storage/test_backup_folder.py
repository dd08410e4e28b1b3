"""Tenant-scoped backup folders: isolation, notes, holds, on every backend."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from conftest import KEYRING

from daai_backup.errors import InvalidName, ObjectNotFound, StorageError
from daai_backup.repository.folder import BackupFolder, folder_for_tenant
from daai_backup.repository.names import BackupName, new_backup_name
from daai_backup.storage import read_bytes

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


def _folder(tenant: str, default_url: str, endpoint: str | None) -> BackupFolder:
    return folder_for_tenant(tenant, None, default_url, s3_endpoint_url=endpoint, keyring=KEYRING)


def _write(folder: BackupFolder, frequency: str, data: bytes, **kw: object) -> str:
    name = new_backup_name(frequency, now=T0)
    folder.write(name, io.BytesIO(data), **kw)  # type: ignore[arg-type]
    return name.filename


def test_two_tenants_in_one_place_cannot_reach_each_other(
    default_url: str, endpoint: str | None
) -> None:
    acme = _folder("acme", default_url, endpoint)
    acme2 = _folder("acme-2", default_url, endpoint)  # a prefix of it is the other's id
    mine = _write(acme, "15-day", b"acme data")
    theirs = _write(acme2, "manual", b"acme-2 data, longer")

    assert [e.file for e in acme.entries()] == [mine]
    assert [e.file for e in acme2.entries()] == [theirs]
    # Usage is what the storage holds (the local backend adds a metadata side file).
    acme_used = acme.usage_bytes()
    assert acme_used >= len(b"acme data")
    assert acme2.usage_bytes() >= len(b"acme-2 data, longer")

    # A valid name of the other tenant is simply not there.
    with pytest.raises(ObjectNotFound):
        acme.open(theirs)
    with pytest.raises(ObjectNotFound):
        acme.hold(theirs)
    acme.delete(theirs)  # idempotent no-op on acme's side
    assert [e.file for e in acme2.entries()] == [theirs]

    # Crafted names never become keys.
    crafted = [
        f"../acme-2/db-backups/{theirs}",
        f"acme-2/db-backups/{theirs}",
        f"held/{theirs}",
        f"/{theirs}",
        f"..%2facme-2%2fdb-backups%2f{theirs}",
        f"%2e%2e/{theirs}",
        theirs + "\x00",
        theirs + "/",
        "/etc/passwd",
        "",
    ]
    for name in crafted:
        for op in (acme.open, acme.stat, acme.delete, acme.hold, acme.release, acme.note):
            with pytest.raises(InvalidName):
                op(name)
    with acme2.open(theirs) as stream:
        assert stream.read() == b"acme-2 data, longer"
    _write(acme2, "manual", b"x" * 5000)
    assert acme.usage_bytes() == acme_used


def test_tenant_storage_url_override_is_the_root(default_url: str, endpoint: str | None) -> None:
    own_url = default_url + "/custom-place"
    folder = folder_for_tenant("acme", own_url, default_url, s3_endpoint_url=endpoint)
    filename = _write(folder, "7-day", b"x")
    assert folder.url.endswith("/custom-place/db-backups")
    assert [e.file for e in folder.entries()] == [filename]
    assert _folder("acme", default_url, endpoint).entries() == []
    with pytest.raises(InvalidName):
        folder_for_tenant("../acme", None, default_url)


def test_notes_are_listed_and_validated(default_url: str, endpoint: str | None) -> None:
    folder = _folder("acme", default_url, endpoint)
    noted = _write(folder, "manual", b"1", note="before the big import")
    plain = folder.write(
        BackupName("24-hour", datetime(2026, 11, 28, tzinfo=UTC), "00000001", True),
        io.BytesIO(b"22"),
    ).key.rsplit("/", 1)[1]
    entries = {e.file: e for e in folder.entries()}
    assert set(entries) == {noted, plain}  # side files are never listed as backups
    assert entries[noted].note == "before the big import"
    assert entries[plain].note is None
    assert folder.note(noted) == "before the big import"
    assert [e.file for e in folder.entries()] == [plain, noted]  # newest first

    for bad in ("two\nlines", "tab\there", "x" * 201, "bell\x07"):
        with pytest.raises(InvalidName):
            _write(folder, "manual", b"x", note=bad)
    assert len(folder.entries()) == 2


def test_failed_write_leaves_neither_backup_nor_note(
    default_url: str, endpoint: str | None
) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            raise OSError("the dump died")

    folder = _folder("acme", default_url, endpoint)
    with pytest.raises(OSError, match="the dump died"):
        folder.write(new_backup_name("manual"), Broken(), note="never")  # type: ignore[arg-type]
    assert folder.entries() == []
    assert folder.usage_bytes() == 0


def test_hold_and_release(default_url: str, endpoint: str | None) -> None:
    folder = _folder("acme", default_url, endpoint)
    filename = _write(folder, "manual", b"keep me", note="pinned for audit")

    folder.hold(filename)
    folder.hold(filename)  # idempotent
    [entry] = folder.entries()
    assert (entry.file, entry.held, entry.note) == (filename, True, "pinned for audit")
    with folder.open(filename) as stream:
        assert stream.read() == b"keep me"
    assert folder.stat(filename).size == 7
    with pytest.raises(StorageError, match="is held"):
        folder.delete(filename)  # retention and users must release first
    assert folder.entries()[0].held

    folder.release(filename)
    folder.release(filename)  # idempotent
    [entry] = folder.entries()
    assert (entry.held, entry.note) == (False, "pinned for audit")
    folder.delete(filename)
    folder.delete(filename)
    assert folder.entries() == []
    assert folder.usage_bytes() == 0
    with pytest.raises(ObjectNotFound):
        folder.hold(filename)


def test_a_hold_is_a_marker_and_the_backup_never_moves(
    default_url: str, endpoint: str | None
) -> None:
    folder = _folder("acme", default_url, endpoint)
    filename = _write(folder, "3-day", b"data")
    folder.hold(filename)
    keys = sorted(i.key for i in folder.storage.list("acme/db-backups/"))
    assert f"acme/db-backups/{filename}" in keys
    assert f"acme/db-backups/holds/{filename}.hold" in keys
    assert not any("/held/" in k for k in keys)
    folder.release(filename)
    assert f"acme/db-backups/holds/{filename}.hold" not in {
        i.key for i in folder.storage.list("acme/db-backups/")
    }


@pytest.mark.parametrize("mid_move", [False, True])
@pytest.mark.parametrize("then", ["hold", "release"])
def test_a_legacy_held_backup_is_listed_held_and_migrated_by_hold_or_release(
    default_url: str, endpoint: str | None, mid_move: bool, then: str
) -> None:
    folder = _folder("acme", default_url, endpoint)
    filename = _write(folder, "3-day", b"data", note="legacy note")
    storage = folder.storage
    pool = f"acme/db-backups/{filename}"
    # Held the old way: moved to held/ with its side file (or killed half way through).
    storage.copy(pool, f"acme/db-backups/held/{filename}")
    storage.copy(pool + ".meta.json", f"acme/db-backups/held/{filename}.meta.json")
    if not mid_move:
        storage.delete(pool)
        storage.delete(pool + ".meta.json")
    [entry] = folder.entries()
    assert (entry.held, entry.note, entry.size_bytes) == (True, "legacy note", 4)
    assert folder.lookup(filename).size_bytes == 4
    with pytest.raises(StorageError, match="is held"):
        folder.delete(filename)

    getattr(folder, then)(filename)
    keys = sorted(i.key for i in storage.list("acme/db-backups/") if "index" not in i.key)
    marker = [f"acme/db-backups/holds/{filename}.hold"] if then == "hold" else []
    assert keys == sorted([pool, pool + ".meta.json", *marker])
    assert read_bytes(storage, pool) == b"data"
    [entry] = folder.entries()
    assert (entry.held, entry.note) == (then == "hold", "legacy note")


def test_foreign_objects_in_the_folder_are_not_backups(
    default_url: str, endpoint: str | None
) -> None:
    folder = _folder("acme", default_url, endpoint)
    storage = folder.storage
    for key in (
        "acme/db-backups/readme.txt",
        "acme/db-backups/sub/15-day_20261127T010000Z_3f9a1c2b.gz.enc",
        "acme/db-backups/held/deeper/15-day_20261127T010000Z_3f9a1c2b.gz.enc",
        "acme/other/15-day_20261127T010000Z_3f9a1c2b.gz.enc",
        "acme/db-backups/15-day_20261127T010000Z_3f9a1c2b.gz.enc.meta.json",
    ):
        storage.put_stream(key, io.BytesIO(b"{}"))
    listing = folder.listing()
    assert listing.entries == []
    # ... but reported, never silently skipped; only our own orphan is removable.
    assert [(s.name, s.removable) for s in listing.strays] == [
        ("15-day_20261127T010000Z_3f9a1c2b.gz.enc.meta.json", True),
        ("held/deeper/15-day_20261127T010000Z_3f9a1c2b.gz.enc", False),
        ("readme.txt", False),
        ("sub/15-day_20261127T010000Z_3f9a1c2b.gz.enc", False),
    ]
    folder.remove_leftovers()
    assert [s.name for s in folder.listing().strays] == [
        "held/deeper/15-day_20261127T010000Z_3f9a1c2b.gz.enc",
        "readme.txt",
        "sub/15-day_20261127T010000Z_3f9a1c2b.gz.enc",
    ]
