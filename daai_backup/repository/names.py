"""Backup file names, tenant ids and notes: every user-given name is validated here.

A backup file is named ``<frequency>_<UTC timestamp>_<short id>.gz.enc``, for example
``15-day_20261127T010000Z_3f9a1c2b.gz.enc``; legacy plaintext backups end in ``.gz``. The
name alone carries what the catalog shows (label, time, encrypted or not), so listing needs
no request per object.

A file name from a user is accepted only if it parses *and* renders back to exactly the same
string, so nothing that could act as a path (``../x``, ``a/b``, ``/etc/passwd``,
``%2e%2e``, a NUL, another tenant's prefix) ever reaches a key.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from daai_backup.errors import InvalidName
from daai_backup.policy import FREQUENCIES

FREQUENCY_LABELS: tuple[str, ...] = tuple(FREQUENCIES)
"""Every frequency label, from :data:`daai_backup.policy.FREQUENCIES`."""

ENCRYPTED_SUFFIX = ".gz.enc"
LEGACY_SUFFIX = ".gz"
NOTE_MAX_CHARS = 200

_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(
    r"^(?P<frequency>[a-z0-9-]{1,20})_(?P<stamp>[0-9]{8}T[0-9]{6}Z)_(?P<id>[0-9a-f]{8})"
    r"(?P<suffix>\.gz\.enc|\.gz)$"
)
_TENANT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class BackupName:
    """The parts of a backup file name. ``taken_at`` is UTC, whole seconds."""

    frequency: str
    taken_at: datetime
    short_id: str
    encrypted: bool

    def __post_init__(self) -> None:
        if self.frequency not in FREQUENCY_LABELS:
            raise InvalidName(
                f"unknown frequency {self.frequency!r}: use one of {', '.join(FREQUENCY_LABELS)}"
            )
        if self.taken_at.tzinfo is None or self.taken_at.utcoffset() != UTC.utcoffset(None):
            raise InvalidName("a backup's taken_at must be a UTC datetime")
        if self.taken_at.microsecond:
            raise InvalidName("a backup's taken_at must be whole seconds")
        if not re.fullmatch(r"[0-9a-f]{8}", self.short_id):
            raise InvalidName(f"short id {self.short_id!r} must be 8 lowercase hex digits")

    @property
    def filename(self) -> str:
        suffix = ENCRYPTED_SUFFIX if self.encrypted else LEGACY_SUFFIX
        stamp = self.taken_at.strftime(_TIMESTAMP_FORMAT)
        return f"{self.frequency}_{stamp}_{self.short_id}{suffix}"

    @classmethod
    def parse(cls, filename: str) -> BackupName:
        """Parse a backup file name; InvalidName says why a name is refused."""
        if not isinstance(filename, str):
            raise InvalidName("a backup file name must be a string")
        shown = filename if len(filename) <= 120 else filename[:117] + "..."
        match = _NAME.fullmatch(filename)
        if match is None:
            raise InvalidName(
                f"{shown!r} is not a backup file name: expected "
                "<frequency>_<YYYYMMDDTHHMMSSZ>_<8 hex>.gz.enc, "
                "e.g. 15-day_20261127T010000Z_3f9a1c2b.gz.enc (see `daai-backup list`)"
            )
        try:
            taken_at = datetime.strptime(match["stamp"], _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise InvalidName(f"{shown!r} has an impossible timestamp {match['stamp']}") from None
        name = cls(
            frequency=match["frequency"],
            taken_at=taken_at,
            short_id=match["id"],
            encrypted=match["suffix"] == ENCRYPTED_SUFFIX,
        )
        if name.filename != filename:  # belt and braces: only canonical names pass
            raise InvalidName(f"{shown!r} is not a canonical backup file name")
        return name


def new_backup_name(
    frequency: str, now: datetime | None = None, encrypted: bool = True
) -> BackupName:
    """A fresh name for a backup of ``frequency`` taken at ``now`` (default: the current time)."""
    moment = datetime.now(UTC) if now is None else now
    if moment.tzinfo is None:
        raise InvalidName("new_backup_name needs a timezone-aware time")
    return BackupName(
        frequency=frequency,
        taken_at=moment.astimezone(UTC).replace(microsecond=0),
        short_id=secrets.token_hex(4),
        encrypted=encrypted,
    )


def validate_tenant_id(tenant_id: str) -> str:
    """Return ``tenant_id`` if it is 1-63 of a-z, 0-9, '-', not starting or ending with '-'."""
    if not isinstance(tenant_id, str) or not _TENANT_ID.fullmatch(tenant_id):
        shown = tenant_id if isinstance(tenant_id, str) and len(tenant_id) <= 80 else "(value)"
        raise InvalidName(
            f"tenant id {shown!r} is not valid: use 1-63 lowercase letters, digits and '-', "
            "not starting or ending with '-'"
        )
    return tenant_id


def validate_note(note: str | None) -> str | None:
    """Return a backup note if acceptable: at most 200 printable characters on one line."""
    if note is None:
        return None
    if not isinstance(note, str):
        raise InvalidName("a backup note must be text")
    if len(note) > NOTE_MAX_CHARS:
        raise InvalidName(f"a backup note is at most {NOTE_MAX_CHARS} characters (got {len(note)})")
    if not note.isprintable():
        raise InvalidName("a backup note must be one line of printable text (no tabs or newlines)")
    stripped = note.strip()
    return stripped or None
