"""Crash ordering of a tenant's folder and the sweep of what killed operations leave.

A side file is written only after its backup and deleted only after it, so a side file
without its backup is always garbage; ``remove_leftovers`` removes that garbage and what
killed writes left in the storage, and nothing else. Runs on every backend.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import BinaryIO

import pytest
from conftest import abandon_write

from daai_backup.repository.folder import BackupFolder, folder_for_tenant
from daai_backup.repository.names import new_backup_name
from daai_backup.repository.verification import VerificationRecord
from daai_backup.storage import ObjectInfo, Storage, put_bytes, read_bytes

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


class Crash(Exception):
    """The process died here."""


class Journal(Storage):
    """A real backend seen through a recorder: every change is logged, and the process can
    'die' before the n-th change (that change and every later call then raise Crash)."""

    def __init__(self, inner: Storage, crash_before: int | None = None) -> None:
        self.inner = inner
        self.crash_before = crash_before
        self.changes: list[tuple[str, str]] = []
        self.reads: list[str] = []

    def _change(self, op: str, key: str) -> None:
        if self.crash_before is not None and len(self.changes) >= self.crash_before:
            raise Crash(f"killed before {op} {key}")
        self.changes.append((op, key))

    @property
    def url(self) -> str:
        return self.inner.url

    def put_stream(
        self, key: str, source: BinaryIO, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        self._change("put", key)
        return self.inner.put_stream(key, source, metadata)

    def open_read(self, key: str) -> BinaryIO:
        self.reads.append(f"read {key}")
        return self.inner.open_read(key)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.reads.append(f"list {prefix}")
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._change("delete", key)
        self.inner.delete(key)

    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        self._change("copy", dst_key)
        return self.inner.copy(src_key, dst_key)

    def space_used(self, prefix: str = "") -> int:
        return self.inner.space_used(prefix)

    def remove_incomplete(self, prefix: str = "") -> int:
        self._change("sweep", prefix)
        return self.inner.remove_incomplete(prefix)

    def ping(self) -> None:
        self.inner.ping()


def _storage(default_url: str, endpoint: str | None) -> Storage:
    return folder_for_tenant("acme", None, default_url, s3_endpoint_url=endpoint).storage


def _keys(storage: Storage, prefix: str = "acme/") -> list[str]:
    return sorted(i.key for i in storage.list(prefix))


def _write(folder: BackupFolder, data: bytes = b"backup bytes", note: str | None = "n") -> str:
    name = new_backup_name("manual", now=T0)
    folder.write(name, io.BytesIO(data), note=note)
    return name.filename


def test_side_files_follow_their_backup_in_and_out(default_url: str, endpoint: str | None) -> None:
    journal = Journal(_storage(default_url, endpoint))
    folder = BackupFolder(journal, "acme")
    pool, held = "acme/db-backups/", "acme/db-backups/held/"

    f = _write(folder, note="before the import")
    assert journal.changes == [("put", pool + f), ("put", pool + f + ".meta.json")]

    journal.changes.clear()
    folder.hold(f)  # a marker: the backup itself never moves
    assert journal.changes == [("put", f"{pool}holds/{f}.hold")]

    journal.changes.clear()
    folder.release(f)
    assert journal.changes == [("delete", f"{pool}holds/{f}.hold")]

    # A backup held the legacy way is brought back by its next hold, marker before delete.
    journal.inner.copy(pool + f, held + f)
    journal.inner.copy(pool + f + ".meta.json", held + f + ".meta.json")
    journal.inner.delete(pool + f)
    journal.inner.delete(pool + f + ".meta.json")
    journal.changes.clear()
    folder.hold(f)
    assert journal.changes == [
        ("copy", pool + f),
        ("copy", pool + f + ".meta.json"),
        ("put", f"{pool}holds/{f}.hold"),
        ("delete", held + f),
        ("delete", held + f + ".meta.json"),
    ]
    folder.release(f)

    folder.record_verification(f, VerificationRecord(f, T0, True, None, 12))
    journal.changes.clear()
    folder.delete(f)
    assert journal.changes == [
        ("delete", pool + f),
        ("delete", pool + f + ".meta.json"),
        ("delete", pool + f + ".manifest"),
        ("delete", pool + f + ".changes"),
        ("delete", f"{pool}verified/{f}.20261127T010000Z.12.ok"),
    ]


def test_a_failed_note_takes_its_backup_away_again(default_url: str, endpoint: str | None) -> None:
    """All or nothing for the caller, so that a retry does not leave a second backup."""
    storage = _storage(default_url, endpoint)

    class NoNotes(Journal):
        def put_stream(
            self, key: str, source: BinaryIO, metadata: Mapping[str, str] | None = None
        ) -> ObjectInfo:
            if key.endswith(".meta.json"):
                raise OSError("the side file could not be written")
            return super().put_stream(key, source, metadata)

    folder = BackupFolder(NoNotes(storage), "acme")
    with pytest.raises(OSError, match="side file"):
        _write(folder)
    assert _keys(storage) == []


Operation = Callable[[BackupFolder, str], None]
OPERATIONS: dict[str, tuple[str, Operation]] = {
    # name: (held before: "" not, "marker", "legacy" in held/, operation)
    "hold": ("", BackupFolder.hold),
    "release": ("marker", BackupFolder.release),
    "hold-legacy": ("legacy", BackupFolder.hold),
    "release-legacy": ("legacy", BackupFolder.release),
    "delete": ("", BackupFolder.delete),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_a_crash_at_any_step_is_swept_and_finished_by_a_rerun(
    default_url: str, endpoint: str | None, operation: str
) -> None:
    held_before, run = OPERATIONS[operation]
    storage = _storage(default_url, endpoint)
    clean = BackupFolder(storage, "acme")
    f = _write(clean, note="pinned")
    clean.record_verification(f, VerificationRecord(f, T0, True, None, 12))
    if held_before == "marker":
        clean.hold(f)
    elif held_before == "legacy":
        for suffix in ("", ".meta.json"):
            storage.copy(f"acme/db-backups/{f}{suffix}", f"acme/db-backups/held/{f}{suffix}")
            storage.delete(f"acme/db-backups/{f}{suffix}")
    start = {k: read_bytes(storage, k) for k in _keys(storage)}

    # The full run, to learn how many steps it has and where it ends.
    journal = Journal(storage)
    run(BackupFolder(journal, "acme"), f)
    steps = len(journal.changes)
    end = _keys(storage)
    assert steps >= 1

    for crash_at in range(steps):
        # Back to the start, then die before step ``crash_at``.
        for key in _keys(storage):
            storage.delete(key)
        for key, data in start.items():
            put_bytes(storage, key, data)
        with pytest.raises(Crash):
            run(BackupFolder(Journal(storage, crash_before=crash_at), "acme"), f)

        # Whatever was left: the sweep removes only garbage, never a backup's side file.
        listed = {e.file: e for e in clean.entries()}
        clean.remove_leftovers()
        assert {e.file: e for e in clean.entries()} == listed
        for key in _keys(storage):
            if key.endswith(".meta.json"):
                assert key.removesuffix(".meta.json") in _keys(storage), key

        run(clean, f)  # a rerun finishes the job
        clean.remove_leftovers()
        assert _keys(storage) == end, f"crash before step {crash_at}"
        if operation != "delete":
            assert clean.note(f) == "pinned"


def test_remove_leftovers_sweeps_garbage_and_killed_writes_of_this_tenant_only(
    default_url: str, endpoint: str | None
) -> None:
    storage = _storage(default_url, endpoint)
    acme = BackupFolder(storage, "acme")
    other = BackupFolder(storage, "acme-2")
    kept = _write(acme, b"kept", note="kept note")
    held = _write(acme, b"held", note="held note")
    acme.hold(held)
    acme.record_verification(kept, VerificationRecord(kept, T0, True, None, 4))
    acme.record_verification(held, VerificationRecord(held, T0, False, "bad tag", 4))
    acme.annotate(kept, {"consistency": "snapshot"})
    foreign = ["acme/db-backups/readme.txt.meta.json", "acme/db-backups/verified/notes.json"]
    for key in foreign:
        put_bytes(storage, key, b"not ours")
    wanted = _keys(storage)

    # Garbage a killed operation leaves, in both tenants.
    gone = new_backup_name("15-day", now=T0).filename
    for tenant in ("acme", "acme-2"):
        put_bytes(storage, f"{tenant}/db-backups/{gone}.meta.json", b'{"note": "x"}')
        put_bytes(storage, f"{tenant}/db-backups/held/{gone}.meta.json", b'{"note": "x"}')
        put_bytes(storage, f"{tenant}/db-backups/verified/{gone}.json", b"{}")
    put_bytes(storage, f"acme/db-backups/held/{held}.meta.json", b'{"note": "stale"}')  # legacy
    put_bytes(storage, f"acme/db-backups/{gone}.manifest", b"m")
    put_bytes(storage, f"acme/db-backups/holds/{gone}.hold", b"{}")
    put_bytes(storage, f"acme/db-backups/verified/{gone}.20261127T010000Z.4.ok", b"")
    older = f"acme/db-backups/verified/{kept}.20261126T010000Z.4.bad"
    put_bytes(storage, older, b"superseded")
    killed = abandon_write(storage, f"acme/db-backups/{gone}", 5 * 1024 * 1024)
    abandon_write(storage, f"acme-2/db-backups/{gone}", 1000)
    other_keys = _keys(storage, "acme-2/")
    other_used = other.usage_bytes()

    used = acme.usage_bytes()
    assert used >= storage.space_used("acme/db-backups/") >= killed  # leftovers count
    freed = acme.remove_leftovers()
    assert freed >= killed + 3 * len(b"{}")
    assert acme.usage_bytes() == used - freed
    assert _keys(storage) == wanted
    assert _keys(storage, "acme-2/") == other_keys
    assert other.usage_bytes() == other_used
    assert acme.note(kept) == "kept note"
    assert acme.note(held) == "held note"
    assert acme.details(kept)["consistency"] == "snapshot"
    assert set(acme.verifications()) == {kept, held}
    assert acme.remove_leftovers() == 0
