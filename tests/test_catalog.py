"""The backup list as a DataFrame, JSON records, artifact rows and a terminal table."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from rich.console import Console

from daai_backup.errors import ConfigError
from daai_backup.repository.catalog import (
    COLUMNS,
    BackupEntry,
    human_size,
    render_table,
    to_artifact_rows,
    to_dataframe,
    to_json_records,
)
from daai_backup.repository.names import BackupName
from daai_backup.repository.verification import VerificationRecord


def entry(
    when: datetime,
    frequency: str = "15-day",
    size: int = 12_400_000,
    encrypted: bool = True,
    note: str | None = None,
    held: bool = False,
    verified: VerificationRecord | None = None,
) -> BackupEntry:
    name = BackupName(frequency, when, "3f9a1c2b", encrypted)
    return BackupEntry.from_name(name, size, note=note, held=held, verified=verified)


def test_dataframe_columns_and_values_in_kolkata() -> None:
    old = entry(datetime(2026, 11, 12, 1, tzinfo=UTC), "manual", 512, False, note="pre-upgrade")
    at = datetime(2026, 11, 27, 20, tzinfo=UTC)
    ok = VerificationRecord("15-day_20261127T010000Z_3f9a1c2b.gz.enc", at, True, None, 12_400_000)
    new = entry(datetime(2026, 11, 27, 1, tzinfo=UTC), held=True, verified=ok)
    df = to_dataframe([old, new], "Asia/Kolkata")
    assert list(df.columns) == list(COLUMNS)
    assert list(df.columns) == [
        "Date / Time",
        "Frequency",
        "Size",
        "Encrypted",
        "File",
        "Note",
        "Held",
        "Verified",
    ]
    first, second = df.to_dict("records")
    assert first == {
        "Date / Time": "2026-11-27 06:30 IST",
        "Frequency": "15-day",
        "Size": "12.4 MB",
        "Encrypted": "🔒 yes",
        "File": "15-day_20261127T010000Z_3f9a1c2b.gz.enc",
        "Note": "",
        "Held": "📌 yes",
        "Verified": "✅ 2026-11-28",  # the day it was verified, in the tenant's zone
    }
    assert second["Date / Time"] == "2026-11-12 06:30 IST"
    assert second["Encrypted"] == "🔓 legacy"
    assert second["File"].endswith(".gz")
    assert second["Note"] == "pre-upgrade"
    assert second["Held"] == ""
    assert second["Verified"] == ""
    assert second["Size"] == "512 B"


def test_empty_list_still_has_the_columns() -> None:
    df = to_dataframe([], "Asia/Kolkata")
    assert list(df.columns) == list(COLUMNS)
    assert df.empty


def test_dst_switch_in_berlin() -> None:
    # Summer time starts 2026-03-29 at 01:00 UTC (02:00 CET -> 03:00 CEST).
    before = entry(datetime(2026, 3, 29, 0, 30, tzinfo=UTC))
    after = entry(datetime(2026, 3, 29, 1, 30, tzinfo=UTC))
    rows = to_artifact_rows([before, after], "Europe/Berlin")
    assert [r["Date / Time"] for r in rows] == ["2026-03-29 03:30 CEST", "2026-03-29 01:30 CET"]
    records = to_json_records([before, after], "Europe/Berlin")
    assert [r["taken_at"] for r in records] == [
        "2026-03-29T03:30:00+02:00",
        "2026-03-29T01:30:00+01:00",
    ]


def test_repeated_hour_in_new_york_is_told_apart() -> None:
    # Summer time ends 2026-11-01 at 06:00 UTC: 01:30 local happens twice.
    first = entry(datetime(2026, 11, 1, 5, 30, tzinfo=UTC))
    second = entry(datetime(2026, 11, 1, 6, 30, tzinfo=UTC))
    rows = to_artifact_rows([first, second], "America/New_York")
    assert [r["Date / Time"] for r in rows] == ["2026-11-01 01:30 EST", "2026-11-01 01:30 EDT"]
    records = to_json_records([first, second], "America/New_York")
    assert [r["taken_at"] for r in records] == [
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T01:30:00-04:00",
    ]


def test_a_verification_shows_only_while_the_size_is_the_one_verified() -> None:
    when = datetime(2026, 11, 27, 1, tzinfo=UTC)
    bad = VerificationRecord("f", when, False, "bad tag", 42)
    assert to_artifact_rows([entry(when, size=42, verified=bad)], "UTC")[0]["Verified"] == (
        "❌ BAD 2026-11-27"
    )
    assert to_artifact_rows([entry(when, size=43, verified=bad)], "UTC")[0]["Verified"] == ""


def test_json_records() -> None:
    when = datetime(2026, 11, 27, 1, tzinfo=UTC)
    ok = VerificationRecord("f", when, True, None, 42)
    e = entry(when, "manual", 42, note="n", held=True, verified=ok)
    assert to_json_records([e], "Asia/Kolkata") == [
        {
            "file": "manual_20261127T010000Z_3f9a1c2b.gz.enc",
            "taken_at": "2026-11-27T06:30:00+05:30",
            "frequency": "manual",
            "size_bytes": 42,
            "encrypted": True,
            "note": "n",
            "held": True,
            "verified": {"ok": True, "at": "2026-11-27T06:30:00+05:30"},
            "consistency": None,
            "consistent_at": None,
            "actor": None,
        }
    ]


def test_newest_first_everywhere() -> None:
    times = [datetime(2026, m, 1, tzinfo=UTC) for m in (3, 1, 2)]
    entries = [entry(t) for t in times]
    expected = ["2026-03-01", "2026-02-01", "2026-01-01"]
    assert [r["taken_at"][:10] for r in to_json_records(entries, "UTC")] == expected  # type: ignore[index]
    assert [r["Date / Time"][:10] for r in to_artifact_rows(entries, "UTC")] == expected
    assert list(to_dataframe(entries, "UTC")["Date / Time"].str[:10]) == expected


def test_rich_table_renders() -> None:
    table = render_table(
        [entry(datetime(2026, 11, 27, 1, tzinfo=UTC), note="hello")], "Asia/Kolkata"
    )
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for fragment in ("Date / Time", "2026-11-27 06:30 IST", "12.4 MB", "hello", "🔒 yes"):
        assert fragment in text


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (12_400_000, "12.4 MB"),
        (999_960_000, "1.0 GB"),
        (1_234_000_000_000, "1.2 TB"),
    ],
)
def test_human_size(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_unknown_time_zone() -> None:
    with pytest.raises(ConfigError, match="unknown time zone"):
        to_dataframe([], "Mars/Olympus")


def test_render_lines_keeps_every_file_name_whole_for_narrow_terminals() -> None:
    from datetime import UTC, datetime

    from daai_backup.repository.catalog import BackupEntry, render_lines

    entries = [
        BackupEntry(
            "15-day_20261120T193000Z_1234abcd.gz",
            "15-day",
            datetime(2026, 11, 20, 19, 30, tzinfo=UTC),
            2_240_000,
            False,
            None,
            True,
        ),
        BackupEntry(
            "manual_20261127T194619Z_53dfb34b.gz.enc",
            "manual",
            datetime(2026, 11, 27, 19, 46, tzinfo=UTC),
            22_400,
            True,
            "first try",
            False,
        ),
    ]
    newest, older = render_lines(entries, "Asia/Kolkata")
    assert newest.startswith("2026-11-28 01:16 IST")
    assert "manual_20261127T194619Z_53dfb34b.gz.enc" in newest
    assert newest.endswith("- first try")
    assert "🔓 legacy" in older
    assert older.endswith("15-day_20261120T193000Z_1234abcd.gz  held")
