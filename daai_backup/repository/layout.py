"""The names of every object in a tenant's ``db-backups`` folder, and what each name is.

This module is the folder's grammar in code; ``docs/format.md`` ("The tenant folder")
specifies it in words. Names are relative to ``<tenant root>/db-backups/``; ``<backup>`` is
a backup file name (:class:`~daai_backup.repository.names.BackupName`, ``.gz.enc`` or
legacy ``.gz``)::

    <backup>                                   a backup (the retention pool; never moves)
    <backup>.manifest                          its manifest (DBK1, content type 2)
    <backup>.changes                           the change events of its dump (DBK1, type 3)
    index.enc                                  the listing index (DBK1, content type 4)
    holds/<backup>.hold                        a hold marker: the backup is held
    verified/<backup>.<YYYYMMDDTHHMMSSZ>.<size>.ok    a verification that passed (empty)
    verified/<backup>.<YYYYMMDDTHHMMSSZ>.<size>.bad   one that failed (body: the error)
    -- legacy, still read --
    <backup>.meta.json                         side file: {"note": ..., facts}
    held/<backup>                              a backup held by moving it (before markers)
    held/<backup>.meta.json                    its side file
    verified/<backup>.json                     a verification record as JSON

:func:`classify` maps a name to its :class:`Kind` and the backup it belongs to; anything
else is :data:`Kind.UNKNOWN` and is reported, never read, written or deleted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from daai_backup.errors import InvalidName
from daai_backup.repository.names import BackupName

BACKUPS_DIR: Final = "db-backups"
INDEX_NAME: Final = "index.enc"
MANIFEST_SUFFIX: Final = ".manifest"
CHANGES_SUFFIX: Final = ".changes"
SIDECAR_SUFFIX: Final = ".meta.json"
HOLDS_DIR: Final = "holds"
HOLD_SUFFIX: Final = ".hold"
HELD_DIR: Final = "held"
VERIFIED_DIR: Final = "verified"
LEGACY_RECORD_SUFFIX: Final = ".json"

_RECORD = re.compile(
    r"^(?P<file>.+)\.(?P<stamp>[0-9]{8}T[0-9]{6}Z)\.(?P<size>0|[1-9][0-9]{0,18})\."
    r"(?P<result>ok|bad)$"
)


class Kind(Enum):
    """What an object in ``db-backups`` is."""

    BACKUP = "backup"
    MANIFEST = "manifest"
    CHANGES = "change events of a backup's dump"
    INDEX = "listing index"
    HOLD = "hold marker"
    RECORD = "verification record"
    SIDECAR = "side file"
    LEGACY_HELD = "held backup (legacy held/ folder)"
    LEGACY_HELD_SIDECAR = "side file of a held backup (legacy held/ folder)"
    LEGACY_RECORD = "verification record (legacy JSON)"
    UNKNOWN = "not a daai-backup object"


@dataclass(frozen=True)
class Classified:
    """One object name, what it is, and the backup it belongs to (None: none)."""

    name: str
    kind: Kind
    backup: str | None = None


def _backup(name: str) -> str | None:
    try:
        return BackupName.parse(name).filename
    except InvalidName:
        return None


def _strip(name: str, suffix: str) -> str | None:
    return _backup(name[: -len(suffix)]) if name.endswith(suffix) else None


def classify(name: str) -> Classified:
    """What the object ``name`` (relative to ``db-backups/``) is; UNKNOWN for anything else."""
    place, _, base = name.rpartition("/")
    found: tuple[Kind, str | None] = (Kind.UNKNOWN, None)
    if place == "":
        if base == INDEX_NAME:
            found = (Kind.INDEX, None)
        elif (file := _backup(base)) is not None:
            found = (Kind.BACKUP, file)
        elif (file := _strip(base, MANIFEST_SUFFIX)) is not None:
            found = (Kind.MANIFEST, file)
        elif (file := _strip(base, CHANGES_SUFFIX)) is not None:
            found = (Kind.CHANGES, file)
        elif (file := _strip(base, SIDECAR_SUFFIX)) is not None:
            found = (Kind.SIDECAR, file)
    elif place == HOLDS_DIR:
        if (file := _strip(base, HOLD_SUFFIX)) is not None:
            found = (Kind.HOLD, file)
    elif place == HELD_DIR:
        if (file := _backup(base)) is not None:
            found = (Kind.LEGACY_HELD, file)
        elif (file := _strip(base, SIDECAR_SUFFIX)) is not None:
            found = (Kind.LEGACY_HELD_SIDECAR, file)
    elif place == VERIFIED_DIR:
        if (match := _RECORD.fullmatch(base)) and (file := _backup(match["file"])):
            found = (Kind.RECORD, file)
        elif (file := _strip(base, LEGACY_RECORD_SUFFIX)) is not None:
            found = (Kind.LEGACY_RECORD, file)
    return Classified(name, found[0], found[1])


def manifest_name(backup: str) -> str:
    return BackupName.parse(backup).filename + MANIFEST_SUFFIX


def changes_name(backup: str) -> str:
    return BackupName.parse(backup).filename + CHANGES_SUFFIX


def hold_name(backup: str) -> str:
    return f"{HOLDS_DIR}/{BackupName.parse(backup).filename}{HOLD_SUFFIX}"


def sidecar_name(backup: str, legacy_held: bool = False) -> str:
    base = BackupName.parse(backup).filename + SIDECAR_SUFFIX
    return f"{HELD_DIR}/{base}" if legacy_held else base


def legacy_held_name(backup: str) -> str:
    return f"{HELD_DIR}/{BackupName.parse(backup).filename}"


def legacy_record_name(backup: str) -> str:
    return f"{VERIFIED_DIR}/{BackupName.parse(backup).filename}{LEGACY_RECORD_SUFFIX}"


def records_prefix(backup: str) -> str:
    """Every verification record of ``backup`` (new and legacy) starts with this."""
    return f"{VERIFIED_DIR}/{BackupName.parse(backup).filename}."


def record_parts(name: str) -> tuple[str, str, int, bool] | None:
    """``(backup, stamp, size, ok)`` of a verification record's name; None if not one."""
    _, _, base = name.rpartition("/")
    match = _RECORD.fullmatch(base)
    if match is None or _backup(match["file"]) is None:
        return None
    return match["file"], match["stamp"], int(match["size"]), match["result"] == "ok"


__all__ = [
    "BACKUPS_DIR",
    "HELD_DIR",
    "HOLDS_DIR",
    "INDEX_NAME",
    "Classified",
    "Kind",
    "changes_name",
    "classify",
    "hold_name",
    "legacy_held_name",
    "legacy_record_name",
    "manifest_name",
    "record_parts",
    "records_prefix",
    "sidecar_name",
]
