"""What verify found about one backup, kept next to it for retention to read.

One small JSON object per verified backup, ``db-backups/verified/<backup file>.json``
(:meth:`daai_backup.repository.folder.BackupFolder.record_verification`)::

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

MAX_ERROR_CHARS = 500


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
        object.__setattr__(self, "verified_at", self.verified_at.astimezone(UTC))
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
