"""The backup list: entries and the ways the product shows them.

An entry comes from a backup's file name (label, time, encrypted or not), its size from the
listing, its note from its manifest (through the listing index; a legacy side file for older
backups), ``held`` from its hold marker and ``verified`` from the name of its newest
verification record (see :mod:`daai_backup.repository.folder`). Times are stored in UTC and
shown in the tenant's time zone, where daylight-saving changes are handled by ``zoneinfo``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.table import Table

from daai_backup.errors import ConfigError
from daai_backup.repository.names import BackupName
from daai_backup.repository.verification import VerificationRecord

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    "Date / Time",
    "Frequency",
    "Size",
    "Encrypted",
    "File",
    "Note",
    "Held",
    "Verified",
)
ENCRYPTED_YES = "🔒 yes"
ENCRYPTED_LEGACY = "🔓 legacy"
HELD_YES = "📌 yes"
VERIFIED_OK = "✅"
VERIFIED_BAD = "❌ BAD"


@dataclass(frozen=True)
class BackupEntry:
    """One backup in a tenant's folder."""

    file: str
    frequency: str
    taken_at: datetime
    size_bytes: int
    encrypted: bool
    note: str | None = None
    held: bool = False
    verified: VerificationRecord | None = None
    """Its newest verification (None: never verified). Counts only while ``size_bytes`` is
    the size it had then (:attr:`verification`)."""
    consistency: str | None = None
    """From its manifest: "snapshot", "consistent", "best-effort", "unknown"; None: no
    manifest read (written before manifests, or no key)."""
    consistent_at: tuple[int, int] | None = None
    """The cluster time a restore of it yields (its manifest's ``consistent_at``)."""
    actor: str | None = None
    """Who asked for it (a manual backup or import; a restore's safety backup)."""

    @classmethod
    def from_name(
        cls,
        name: BackupName,
        size_bytes: int,
        note: str | None = None,
        held: bool = False,
        verified: VerificationRecord | None = None,
    ) -> BackupEntry:
        return cls(
            file=name.filename,
            frequency=name.frequency,
            taken_at=name.taken_at,
            size_bytes=size_bytes,
            encrypted=name.encrypted,
            note=note,
            held=held,
            verified=verified,
        )

    @property
    def verification(self) -> VerificationRecord | None:
        """Its newest verification if it still applies (the file has the size verified)."""
        record = self.verified
        return record if record is not None and record.size_bytes == self.size_bytes else None


def zone(tz: str) -> ZoneInfo:
    """The IANA time zone ``tz``; ConfigError for an unknown one."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {tz!r}: use an IANA name such as Asia/Kolkata or Europe/Berlin"
        ) from None


def human_size(size_bytes: int) -> str:
    """Decimal units with one decimal: ``512 B``, ``12.4 MB``, ``1.2 GB``."""
    if size_bytes < 1000:
        return f"{size_bytes} B"
    value = float(size_bytes)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 999.95 or unit == "PB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def newest_first(entries: Iterable[BackupEntry]) -> list[BackupEntry]:
    return sorted(entries, key=lambda e: (e.taken_at, e.file), reverse=True)


def verified_text(entry: BackupEntry, tzinfo: ZoneInfo) -> str:
    """``✅ 2026-11-27`` / ``❌ BAD 2026-11-27`` (the day it was verified), or empty."""
    record = entry.verification
    if record is None:
        return ""
    day = record.verified_at.astimezone(tzinfo).strftime("%Y-%m-%d")
    return f"{VERIFIED_OK if record.ok else VERIFIED_BAD} {day}"


def _row(entry: BackupEntry, tzinfo: ZoneInfo) -> dict[str, str]:
    local = entry.taken_at.astimezone(tzinfo)
    return {
        "Date / Time": local.strftime("%Y-%m-%d %H:%M %Z"),
        "Frequency": entry.frequency,
        "Size": human_size(entry.size_bytes),
        "Encrypted": ENCRYPTED_YES if entry.encrypted else ENCRYPTED_LEGACY,
        "File": entry.file,
        "Note": entry.note or "",
        "Held": HELD_YES if entry.held else "",
        "Verified": verified_text(entry, tzinfo),
        "Consistency": consistency_text(entry, tzinfo),
        "Actor": entry.actor or "",
    }


def consistency_text(entry: BackupEntry, tzinfo: ZoneInfo) -> str:
    """``consistent at 2026-11-28 14:31:59 IST`` (the moment a restore yields), or the label."""
    if entry.consistency is None:
        return ""
    if entry.consistent_at is None:
        return entry.consistency
    at = datetime.fromtimestamp(entry.consistent_at[0], UTC).astimezone(tzinfo)
    return f"{entry.consistency} at {at:%Y-%m-%d %H:%M:%S %Z}"


def to_artifact_rows(entries: Iterable[BackupEntry], tz: str) -> list[dict[str, str]]:
    """Rows of display strings, newest first (for a Prefect table artifact)."""
    tzinfo = zone(tz)
    return [_row(e, tzinfo) for e in newest_first(entries)]


def to_dataframe(entries: Iterable[BackupEntry], tz: str) -> pd.DataFrame:
    """The backup list as the product shows it, newest first, times in ``tz``.

    pandas is imported here, not with the module: it takes a second to import and the CLI's
    ``list`` (which renders with rich) must start quickly.
    """
    import pandas as pd

    return pd.DataFrame(to_artifact_rows(entries, tz), columns=list(COLUMNS))


def to_json_records(entries: Iterable[BackupEntry], tz: str) -> list[dict[str, object]]:
    """Machine-readable rows, newest first; ``taken_at`` is ISO 8601 with the tz's offset."""
    tzinfo = zone(tz)
    return [
        {
            "file": e.file,
            "taken_at": e.taken_at.astimezone(tzinfo).isoformat(timespec="seconds"),
            "frequency": e.frequency,
            "size_bytes": e.size_bytes,
            "encrypted": e.encrypted,
            "note": e.note,
            "held": e.held,
            "verified": _verified_json(e, tzinfo),
            "consistency": e.consistency,
            "consistent_at": _moment_json(e.consistent_at, tzinfo),
            "actor": e.actor,
        }
        for e in newest_first(entries)
    ]


def _moment_json(at: tuple[int, int] | None, tzinfo: ZoneInfo) -> dict[str, object] | None:
    if at is None:
        return None
    local = datetime.fromtimestamp(at[0], UTC).astimezone(tzinfo).isoformat(timespec="seconds")
    return {"t": at[0], "i": at[1], "at": local}


def _verified_json(entry: BackupEntry, tzinfo: ZoneInfo) -> dict[str, object] | None:
    record = entry.verification
    if record is None:
        return None
    at = record.verified_at.astimezone(tzinfo).isoformat(timespec="seconds")
    return {"ok": record.ok, "at": at}


def render_table(entries: Sequence[BackupEntry], tz: str, title: str | None = None) -> Table:
    """A rich table for the terminal, newest first."""
    table = Table(title=title)
    for column in COLUMNS:
        # Only the free-text note wraps: the file name is copied into restore commands and
        # the short columns read badly broken over lines. Terminals too narrow for the
        # table get :func:`render_lines` instead.
        table.add_column(
            column,
            justify="right" if column == "Size" else "left",
            no_wrap=column != "Note",
        )
    for row in to_artifact_rows(entries, tz):
        table.add_row(*(row[c] for c in COLUMNS))
    return table


TABLE_MIN_WIDTH = 136
"""Below this many columns the table cannot show every column whole: use render_lines."""


def render_lines(entries: Sequence[BackupEntry], tz: str) -> list[str]:
    """One line per backup, newest first, for terminals narrower than the table."""
    lines = []
    for row in to_artifact_rows(entries, tz):
        extras = " ".join(
            x
            for x in (
                row["Held"] and "held",
                row["Verified"].startswith(VERIFIED_BAD) and "BAD",
                row["Note"] and f"- {row['Note']}",
            )
            if x
        )
        lines.append(
            f"{row['Date / Time']}  {row['Frequency']:<11} {row['Size']:>9}  "
            f"{row['Encrypted']:<9}  {row['File']}" + (f"  {extras}" if extras else "")
        )
    return lines
