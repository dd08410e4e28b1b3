"""What verify found about one backup, kept next to it for retention to read.

The result is in the record's *name*, so one listing says which backups are good or bad and
since when, without reading any record
(:meth:`daai_backup.repository.folder.BackupFolder.record_verification`)::

    db-backups/verified/<backup file>.<YYYYMMDDTHHMMSSZ>.<size_bytes>.ok    (empty)
    db-backups/verified/<backup file>.<YYYYMMDDTHHMMSSZ>.<size_bytes>.bad   (the error, UTF-8)

The time is when it was verified (UTC, whole seconds), ``size_bytes`` the backup's size then.
A failed record's body is the one-line error; a passed record is empty. Of several records
of one backup the newest counts (at the same second, ``bad`` wins); older ones are removed
when a new one is written, or by the leftovers sweep.

Legacy records (still read, converted when read): one JSON object per verified backup,
``db-backups/verified/<backup file>.json``::

    {"file": "15-day_20261127T010000Z_3f9a1c2b.gz.enc",
     "verified_at": "2026-11-27T02:00:00+00:00",
     "ok": false, "error": "archive is truncated ...", "size_bytes": 123456}

``size_bytes`` is the backup's size when it was verified. ``error`` is one line (None when
``ok``), cut to :data:`MAX_ERROR_CHARS` so a record stays small.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from daai_backup.repository.layout import VERIFIED_DIR, record_parts

MAX_ERROR_CHARS = 500
_STAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class VerificationRecord:
    """The outcome of verifying one backup."""

    file: str
    verified_at: datetime
    ok: bool
    error: str | None
    size_bytes: int

    def __post_init__(self) -> None:
        if self.verified_at.tzinfo is None:
            raise ValueError("verified_at needs a time zone: use datetime.now(UTC)")
        if self.size_bytes < 0:
            raise ValueError(f"size_bytes must not be negative, not {self.size_bytes}")
        # Whole seconds: the time is part of the record's name.
        at = self.verified_at.astimezone(UTC).replace(microsecond=0)
        object.__setattr__(self, "verified_at", at)
        if self.error is not None:
            one_line = " ".join(self.error.split())
            object.__setattr__(self, "error", one_line[:MAX_ERROR_CHARS])

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "file": self.file,
                "verified_at": self.verified_at.isoformat(),
                "ok": self.ok,
                "error": self.error,
                "size_bytes": self.size_bytes,
            },
            sort_keys=True,
        ).encode()

    @property
    def object_name(self) -> str:
        """Its name relative to ``db-backups/``: the result and time are in it."""
        stamp = self.verified_at.strftime(_STAMP)
        result = "ok" if self.ok else "bad"
        return f"{VERIFIED_DIR}/{self.file}.{stamp}.{self.size_bytes}.{result}"

    def body(self) -> bytes:
        """The record object's bytes: the error of a failed verification, else nothing."""
        return b"" if self.ok else (self.error or "").encode("utf-8")

    def newer_than(self, other: VerificationRecord) -> bool:
        """Whether this record supersedes ``other`` (later; at the same second bad wins)."""
        return (self.verified_at, not self.ok) > (other.verified_at, not other.ok)

    @classmethod
    def from_name(cls, name: str, body: bytes | None = None) -> VerificationRecord | None:
        """The record a name says (``error`` from ``body`` if given); None if not one."""
        parts = record_parts(name)
        if parts is None:
            return None
        file, stamp, size, ok = parts
        at = datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
        error = None if ok or body is None else body.decode("utf-8", "replace") or None
        return cls(file, at, ok, error, size)

    @classmethod
    def from_json(cls, data: bytes) -> VerificationRecord:
        """Parse a stored record; ValueError if it is not one."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("a verification record is a JSON object")
        file, at, ok, error, size = (
            raw.get(k) for k in ("file", "verified_at", "ok", "error", "size_bytes")
        )
        if not (
            isinstance(file, str)
            and isinstance(at, str)
            and isinstance(ok, bool)
            and (error is None or isinstance(error, str))
            and isinstance(size, int)
            and not isinstance(size, bool)
        ):
            raise ValueError("a verification record needs file, verified_at, ok, error, size")
        return cls(file, datetime.fromisoformat(at), ok, error, size)
