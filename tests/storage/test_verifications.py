"""Verification records: one small JSON object per verified backup, on every backend."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import pytest
from conftest import KEYRING
from test_backup_folder_crashes import Journal

from daai_backup.errors import InvalidName, ObjectNotFound
from daai_backup.repository.folder import BackupFolder, folder_for_tenant
from daai_backup.repository.names import new_backup_name
from daai_backup.repository.verification import MAX_ERROR_CHARS, VerificationRecord
from daai_backup.storage import put_bytes, read_bytes

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


def _folder(default_url: str, endpoint: str | None) -> BackupFolder:
    return folder_for_tenant("acme", None, default_url, s3_endpoint_url=endpoint, keyring=KEYRING)


def _write(folder: BackupFolder, data: bytes = b"data") -> str:
    name = new_backup_name("15-day", now=T0)
    folder.write(name, io.BytesIO(data))
    return name.filename


def test_records_round_trip_and_stay_out_of_the_backup_list(
    default_url: str, endpoint: str | None
) -> None:
    folder = _folder(default_url, endpoint)
    good, bad = _write(folder, b"good"), _write(folder, b"bad!")
    ok = VerificationRecord(good, T0, True, None, 4)
    failed = VerificationRecord(bad, T0 + timedelta(hours=1), False, "archive is truncated", 4)
    folder.record_verification(good, ok)
    folder.record_verification(bad, failed)

    assert folder.verifications(with_errors=True) == {good: ok, bad: failed}
    # Without the errors, the listing alone: result, time and size are in the names.
    assert folder.verifications()[bad] == VerificationRecord(
        bad, failed.verified_at, False, None, 4
    )
    assert sorted(e.file for e in folder.entries()) == sorted([good, bad])
    names = sorted(i.key for i in folder.storage.list("acme/db-backups/verified/"))
    assert names == sorted(
        [
            f"acme/db-backups/verified/{good}.20261127T010000Z.4.ok",
            f"acme/db-backups/verified/{bad}.20261127T020000Z.4.bad",
        ]
    )
    assert read_bytes(folder.storage, names[0 if names[0].endswith("bad") else 1]) == (
        b"archive is truncated"
    )
    assert {e.file: e.verified for e in folder.entries()} == folder.verifications()

    newer = VerificationRecord(bad, T0 + timedelta(days=1), True, None, 4)
    folder.record_verification(bad, newer)  # replaces the older record
    assert folder.verifications()[bad] == newer
    assert len(list(folder.storage.list(f"acme/db-backups/verified/{bad}."))) == 1
    older = VerificationRecord(bad, T0, False, "late writer", 4)
    folder.record_verification(bad, older)  # an older result never wins, nor deletes newer
    assert folder.verifications()[bad] == newer


def test_a_record_follows_its_backup_through_hold_and_delete(
    default_url: str, endpoint: str | None
) -> None:
    folder = _folder(default_url, endpoint)
    f = _write(folder)
    record = VerificationRecord(f, T0, True, None, 4)
    folder.record_verification(f, record)
    folder.hold(f)
    assert folder.verifications() == {f: record}
    folder.record_verification(f, record)  # a held backup can be verified too
    folder.release(f)
    assert folder.verifications() == {f: record}
    folder.delete(f)
    assert folder.verifications() == {}
    assert [i.key for i in folder.storage.list("acme/")] == []


def test_records_need_their_backup(default_url: str, endpoint: str | None) -> None:
    folder = _folder(default_url, endpoint)
    f = _write(folder)
    missing = new_backup_name("15-day", now=T0).filename
    with pytest.raises(ObjectNotFound, match="no backup"):
        folder.record_verification(missing, VerificationRecord(missing, T0, True, None, 1))
    with pytest.raises(InvalidName, match="given for"):
        folder.record_verification(f, VerificationRecord(missing, T0, True, None, 1))
    with pytest.raises(InvalidName):
        folder.record_verification("../x", VerificationRecord("../x", T0, True, None, 1))

    # A record left by a killed delete (the backup is gone) is ignored, then swept.
    orphan = VerificationRecord(missing, T0, False, "bad", 1).to_json()
    put_bytes(folder.storage, f"acme/db-backups/verified/{missing}.json", orphan)
    put_bytes(folder.storage, f"acme/db-backups/verified/{f}.json", b"not json")
    assert folder.verifications() == {}  # an unreadable record counts as not verified
    folder.remove_leftovers()
    assert sorted(i.key for i in folder.storage.list("acme/db-backups/verified/")) == [
        f"acme/db-backups/verified/{f}.json"
    ]


def test_reading_records_costs_one_listing_and_legacy_records_are_converted_once(
    default_url: str, endpoint: str | None
) -> None:
    journal = Journal(_folder(default_url, endpoint).storage)
    folder = BackupFolder(journal, "acme")
    files = [_write(folder) for _ in range(4)]
    for f in files[:2]:
        folder.record_verification(f, VerificationRecord(f, T0, True, None, 4))
    legacy = VerificationRecord(files[2], T0, False, "bad tag", 4)
    put_bytes(journal.inner, f"acme/db-backups/verified/{files[2]}.json", legacy.to_json())
    journal.reads.clear()
    assert folder.verifications() == {
        files[0]: VerificationRecord(files[0], T0, True, None, 4),
        files[1]: VerificationRecord(files[1], T0, True, None, 4),
        files[2]: legacy,
    }
    assert sorted(journal.reads) == [
        "list acme/db-backups/",
        f"read acme/db-backups/verified/{files[2]}.json",
    ]
    # Converted when read: from now on the listing alone answers.
    journal.reads.clear()
    assert folder.verifications()[files[2]] == VerificationRecord(files[2], T0, False, None, 4)
    assert journal.reads == ["list acme/db-backups/"]
    assert folder.verifications(with_errors=True)[files[2]] == legacy


def test_the_record_itself() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    record = VerificationRecord("f", datetime(2026, 1, 1, 5, 30, tzinfo=ist), False, "a\nb", 3)
    assert record.verified_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert record.error == "a b"  # one line
    assert VerificationRecord.from_json(record.to_json()) == record
    long = VerificationRecord("f", T0, False, "x" * 10_000, 3)
    assert long.error is not None
    assert len(long.error) == MAX_ERROR_CHARS
    with pytest.raises(ValueError, match="time zone"):
        VerificationRecord("f", datetime(2026, 1, 1), True, None, 3)
    for bad in (b"[]", b'{"file": "f"}', b'{"file": "f", "verified_at": "x", "ok": 1}'):
        with pytest.raises(ValueError, match="a verification record"):
            VerificationRecord.from_json(bad)


def test_a_record_dated_ahead_is_not_believed_and_the_last_written_wins(
    default_url: str, endpoint: str | None
) -> None:
    """A verify host whose clock runs a day ahead wrote "ok": that record must not outrank
    the bad result verify finds today (retention would keep deleting older backups on it)."""
    folder = _folder(default_url, endpoint)
    file = _write(folder)
    now = datetime.now(UTC).replace(microsecond=0)
    folder.record_verification(
        file, VerificationRecord(file, now + timedelta(days=1), True, None, 4)
    )
    assert file not in folder.verifications()  # dated ahead: not counted...
    assert any("verified/" in s.name for s in folder.listing().strays)  # ...but reported
    folder.record_verification(file, VerificationRecord(file, now, False, "archive corrupt", 4))
    assert not folder.verifications()[file].ok
    assert not [s for s in folder.listing().strays if "verified/" in s.name]  # superseded
