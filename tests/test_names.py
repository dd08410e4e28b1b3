"""Backup file names, tenant ids and notes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from daai_backup.errors import InvalidName
from daai_backup.policy import FREQUENCIES
from daai_backup.repository.names import (
    FREQUENCY_LABELS,
    BackupName,
    new_backup_name,
    validate_note,
    validate_tenant_id,
)


def test_labels_come_from_the_frequency_table() -> None:
    assert tuple(FREQUENCIES) == FREQUENCY_LABELS
    assert set(FREQUENCY_LABELS) == {
        "monthly", "15-day", "7-day", "3-day", "24-hour", "daily", "manual", "pre-restore",
        "imported",
    }  # fmt: skip


def test_round_trip_encrypted_and_legacy() -> None:
    name = BackupName.parse("15-day_20261127T010000Z_3f9a1c2b.gz.enc")
    assert name == BackupName("15-day", datetime(2026, 11, 27, 1, tzinfo=UTC), "3f9a1c2b", True)
    assert name.filename == "15-day_20261127T010000Z_3f9a1c2b.gz.enc"
    legacy = BackupName.parse("pre-restore_20260101T235959Z_00000000.gz")
    assert not legacy.encrypted
    assert legacy.filename == "pre-restore_20260101T235959Z_00000000.gz"
    for label in FREQUENCY_LABELS:
        assert BackupName.parse(f"{label}_20261127T010000Z_3f9a1c2b.gz.enc").frequency == label


def test_new_backup_name_is_utc_whole_seconds_and_unique() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    name = new_backup_name("manual", now=datetime(2026, 11, 27, 6, 30, 15, 999, tzinfo=ist))
    assert name.taken_at == datetime(2026, 11, 27, 1, 0, 15, tzinfo=UTC)
    assert name.filename.startswith("manual_20261127T010015Z_")
    assert name.filename.endswith(".gz.enc")
    assert BackupName.parse(name.filename) == name
    assert not new_backup_name("manual", encrypted=False).filename.endswith(".enc")
    assert len({new_backup_name("manual").short_id for _ in range(50)}) == 50
    with pytest.raises(InvalidName):
        new_backup_name("manual", now=datetime(2026, 1, 1))  # naive
    with pytest.raises(InvalidName, match="unknown frequency"):
        new_backup_name("hourly")


@pytest.mark.parametrize(
    "filename",
    [
        "",
        "../x",
        "a/b",
        "/etc/passwd",
        "%2e%2e",
        "%2e%2e%2f15-day_20261127T010000Z_3f9a1c2b.gz.enc",
        "15-day_20261127T010000Z_3f9a1c2b.gz.enc\x00",
        "15-day_20261127T010000Z_3f9a1c2b.gz.enc\n",
        "other-tenant/db-backups/15-day_20261127T010000Z_3f9a1c2b.gz.enc",
        "held/15-day_20261127T010000Z_3f9a1c2b.gz.enc",
        "../15-day_20261127T010000Z_3f9a1c2b.gz.enc",
        "15-day_20261127T010000Z_3f9a1c2b.gz.enc.meta.json",
        "15-day_20261127T010000Z_3f9a1c2b.tar",
        "15-day_20261127T010000Z_3F9A1C2B.gz.enc",
        "15-day_20261127T010000Z_3f9a1c2.gz.enc",
        "15-day_20261127T010000_3f9a1c2b.gz.enc",
        "15-day_20261332T010000Z_3f9a1c2b.gz.enc",  # month 13
        "hourly_20261127T010000Z_3f9a1c2b.gz.enc",
        "MANUAL_20261127T010000Z_3f9a1c2b.gz.enc",
        " 15-day_20261127T010000Z_3f9a1c2b.gz.enc",
        "15-day_20261127T010000Z_3f9a1c2b.gz.enc ",
        "15-day_20261127T010000Z_3f9a1c2b.gz.enc.gz",
        "15-day_\u0662\u0660261127T010000Z_3f9a1c2b.gz.enc",  # non-ASCII digits
    ],
)
def test_bad_file_names_are_refused(filename: str) -> None:
    with pytest.raises(InvalidName):
        BackupName.parse(filename)


def test_refusal_message_is_helpful() -> None:
    with pytest.raises(InvalidName, match=r"expected <frequency>_<YYYYMMDDTHHMMSSZ>_<8 hex>"):
        BackupName.parse("../../etc/passwd")


def test_backup_name_checks_its_fields() -> None:
    with pytest.raises(InvalidName):
        BackupName("15-day", datetime(2026, 1, 1), "3f9a1c2b", True)  # naive
    with pytest.raises(InvalidName):
        BackupName("15-day", datetime(2026, 1, 1, tzinfo=UTC), "../..", True)
    with pytest.raises(InvalidName):
        BackupName("15-day", datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=UTC), "3f9a1c2b", True)


@pytest.mark.parametrize("tenant", ["a", "acme", "acme-2", "0", "a" * 63, "x-1-y"])
def test_good_tenant_ids(tenant: str) -> None:
    assert validate_tenant_id(tenant) == tenant


@pytest.mark.parametrize(
    "tenant",
    ["", "-acme", "acme-", "Acme", "ac_me", "a" * 64, "../x", "a/b", "a.b", "acme\n", "é"],
)
def test_bad_tenant_ids(tenant: str) -> None:
    with pytest.raises(InvalidName):
        validate_tenant_id(tenant)


def test_notes() -> None:
    assert validate_note(None) is None
    assert validate_note("  before the import  ") == "before the import"
    assert validate_note("   ") is None
    assert validate_note("Vor dem Import – ✓") == "Vor dem Import – ✓"
    assert validate_note("x" * 200) == "x" * 200
    for bad in ("x" * 201, "a\nb", "a\rb", "tab\t", "nul\x00", "esc\x1b[31m"):
        with pytest.raises(InvalidName):
            validate_note(bad)
