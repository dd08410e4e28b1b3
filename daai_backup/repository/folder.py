"""One tenant's backups: a view of a storage backend that cannot leave the tenant's root.

Layout under the tenant root (``<storage url>/<tenant id>`` by default, or the tenant's own
``storage_url``)::

    db-backups/<backup file>                 the retention pool
    db-backups/<backup file>.meta.json       its note and facts recorded after writing
                                             ({"note": "...", "consistency": "snapshot", ...})
    db-backups/held/<backup file>            held (pinned) backups, outside the pool
    db-backups/held/<backup file>.meta.json
    db-backups/verified/<backup file>.json   what verify found (held or not; see
                                             :mod:`daai_backup.repository.verification`)
    db-backups/changes/<segment>.chg.enc     change capture's segments and gap records
                                             (:mod:`daai_backup.capture.segments`); the
                                             backup list and leftovers never touch them

Every method takes a backup *file name*, never a key: the name is parsed by
:meth:`BackupName.parse` (which accepts only canonical names, no '/' at all) and joined to
this tenant's prefix here, so no input can reach another tenant's objects. Listing uses the
tenant prefix with a trailing '/', so tenant ``acme`` never sees ``acme-2``.

Notes live in a small side file rather than in object metadata: an S3 listing does not
return metadata, so reading notes from metadata would cost one HEAD per backup, while side
files come back in the same listing pages and only backups that have a note cost one GET.

Ordering rules that keep a crash harmless (each step is one atomic storage write or
delete; a crash stops the sequence between two steps):

- A side file and a verification record MUST be written only after their backup exists,
  and deleted only after it is gone. So a side file whose backup is not in the same place,
  or a record whose backup is in neither place, is always garbage of a killed operation:
  readers ignore it and :meth:`BackupFolder.remove_leftovers` deletes it. A crash may
  leave a backup without its side file (its note and facts), never the reverse.
- write: the backup, then the side file with the note; :meth:`BackupFolder.annotate`
  merges the facts into that side file later. If the note cannot be written the backup is
  deleted again and the error raised, so a retry does not leave a second backup.
- hold/release: copy the backup, then its side file, to the other place; then delete the
  original backup, then the original side file. After a crash between the steps the backup
  exists in both places; it is then listed once, as held (the safe side), and running hold
  or release again finishes the move.
- delete: the backup, then its side file, then its verification record.

:meth:`BackupFolder.remove_leftovers` also asks the storage to remove what killed writes
left (:meth:`Storage.remove_incomplete`); like every write here, it is called while holding
the tenant's lease, so no live write of this tenant is under way.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from daai_backup.errors import InvalidName, ObjectNotFound, StorageError
from daai_backup.repository.catalog import BackupEntry, newest_first
from daai_backup.repository.manifest import manifest_name
from daai_backup.repository.names import BackupName, validate_note, validate_tenant_id
from daai_backup.repository.verification import VerificationRecord
from daai_backup.storage import (
    ObjectInfo,
    Storage,
    join_key,
    put_bytes,
    read_bytes,
    storage_from_url,
    validate_key,
)

BACKUPS_DIR = "db-backups"
HELD_DIR = "held"
VERIFIED_DIR = "verified"
SIDECAR_SUFFIX = ".meta.json"
RECORD_SUFFIX = ".json"
CHANGES_DIR = "changes"


class BackupFolder:
    """The backups of one tenant, under ``root_prefix`` inside ``storage``."""

    def __init__(self, storage: Storage, root_prefix: str = "") -> None:
        root = root_prefix.strip("/")
        if root:
            validate_key(root)
        self._storage = storage
        self._root = root
        self._pool = join_key(root, BACKUPS_DIR)
        self._held = join_key(self._pool, HELD_DIR)
        self._verified = join_key(self._pool, VERIFIED_DIR)

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def url(self) -> str:
        """Where this tenant's backups live, for messages."""
        return f"{self._storage.url.rstrip('/')}/{self._pool}"

    def __repr__(self) -> str:
        return f"BackupFolder({self.url!r})"

    @property
    def changes_prefix(self) -> str:
        """Storage key of the tenant's ``db-backups/changes`` folder (change capture's
        segments and gap records, :mod:`daai_backup.capture.segments`)."""
        return join_key(self._pool, CHANGES_DIR)

    # --- keys -------------------------------------------------------------------------

    def _key(self, filename: str, held: bool = False) -> str:
        name = BackupName.parse(filename)
        return join_key(self._held if held else self._pool, name.filename)

    @staticmethod
    def _sidecar(key: str) -> str:
        return key + SIDECAR_SUFFIX

    def _record(self, filename: str) -> str:
        return join_key(self._verified, BackupName.parse(filename).filename + RECORD_SUFFIX)

    def _exists(self, key: str) -> bool:
        try:
            self._storage.stat(key)
        except ObjectNotFound:
            return False
        return True

    def _not_found(self, filename: str) -> ObjectNotFound:
        return ObjectNotFound(
            f"no backup {filename!r} in {self.url}: see `daai-backup list` for the file names"
        )

    # --- operations -------------------------------------------------------------------

    def write(
        self,
        name: BackupName,
        source: BinaryIO,
        note: str | None = None,
        extra_metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store a new backup (atomically) with an optional note; returns the object's info."""
        note = validate_note(note)
        key = self._key(name.filename)
        metadata = {
            "frequency": name.frequency,
            "taken-at": name.taken_at.isoformat(),
            **(extra_metadata or {}),
        }
        info = self._storage.put_stream(key, source, metadata)
        if note is not None:
            try:
                put_bytes(self._storage, self._sidecar(key), json.dumps({"note": note}).encode())
            except BaseException:
                # All or nothing for the caller: a retry must not leave a second backup.
                with contextlib.suppress(StorageError):
                    self._storage.delete(key)
                raise
        return info

    def open(self, filename: str) -> BinaryIO:
        """Open a backup (held or not) for streaming reads."""
        for held in (False, True):
            with contextlib.suppress(ObjectNotFound):
                return self._storage.open_read(self._key(filename, held))
        raise self._not_found(filename)

    def stat(self, filename: str) -> ObjectInfo:
        """The stored object's info (size, time, metadata) of a backup, held or not."""
        for held in (False, True):
            with contextlib.suppress(ObjectNotFound):
                return self._storage.stat(self._key(filename, held))
        raise self._not_found(filename)

    def entries(self) -> list[BackupEntry]:
        """Every backup of the tenant, newest first, held ones included and marked."""
        pool_prefix = self._pool + "/"
        held_prefix = HELD_DIR + "/"
        found: dict[str, tuple[BackupName, int, bool]] = {}
        sidecars: set[str] = set()
        for info in self._storage.list(pool_prefix):
            rel = info.key[len(pool_prefix) :]
            held = rel.startswith(held_prefix)
            filename = rel[len(held_prefix) :] if held else rel
            if "/" in filename:
                continue
            if filename.endswith(SIDECAR_SUFFIX):
                sidecars.add(info.key)
                continue
            try:
                name = BackupName.parse(filename)
            except InvalidName:
                continue  # anything else in the folder is not a backup
            if filename in found and found[filename][2] and not held:
                continue  # mid-move: the held copy wins
            found[filename] = (name, info.size, held)
        entries = []
        for filename, (name, size, held) in found.items():
            sidecar = self._sidecar(self._key(filename, held))
            note = self._read_note(sidecar) if sidecar in sidecars else None
            entries.append(BackupEntry.from_name(name, size, note=note, held=held))
        return newest_first(entries)

    def _manifest_key(self, filename: str) -> str:
        # Always in the pool folder, wherever the backup lives: a hold never moves it.
        return join_key(self._pool, manifest_name(filename))

    def put_manifest(self, filename: str, sealed: bytes) -> None:
        """Store the sealed manifest of an existing backup (``repository.manifest.seal``).

        Written after its backup and deleted after it (:meth:`delete`), like a side file, so
        a manifest without its backup is garbage of a killed operation.
        """
        if not any(self._exists(self._key(filename, held)) for held in (False, True)):
            raise self._not_found(filename)
        put_bytes(self._storage, self._manifest_key(filename), sealed)

    def open_manifest(self, filename: str) -> BinaryIO:
        """The sealed manifest object of a backup; ``ObjectNotFound`` if it has none."""
        return self._storage.open_read(self._manifest_key(filename))

    def _read_note(self, sidecar: str) -> str | None:
        note = self._read_sidecar(sidecar).get("note")
        return note if isinstance(note, str) else None

    def annotate(self, filename: str, details: Mapping[str, object]) -> None:
        """Record facts learned while writing (consistency, counts) in the side file.

        Merged into the side file next to the note; read back with :meth:`details`. A crash
        before this runs leaves a complete backup without these facts, never the reverse.
        """
        key = self._key(filename)
        if not self._exists(key):
            raise self._not_found(filename)
        sidecar = self._sidecar(key)
        current = self._read_sidecar(sidecar)
        current.update({k: v for k, v in details.items() if k != "note"})
        put_bytes(self._storage, sidecar, json.dumps(current, sort_keys=True).encode())

    def details(self, filename: str) -> dict[str, object]:
        """Everything the side file records about one backup (empty if it has none)."""
        for held in (True, False):
            key = self._key(filename, held)
            if self._exists(key):
                return self._read_sidecar(self._sidecar(key))
        raise self._not_found(filename)

    def _read_sidecar(self, sidecar: str) -> dict[str, object]:
        try:
            data = json.loads(read_bytes(self._storage, sidecar, limit=64 * 1024))
        except (ObjectNotFound, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def note(self, filename: str) -> str | None:
        """The note of one backup, or None."""
        for held in (True, False):
            key = self._key(filename, held)
            if self._exists(key):
                return self._read_note(self._sidecar(key))
        raise self._not_found(filename)

    def delete(self, filename: str) -> None:
        """Delete a backup from the pool; idempotent. A held backup is refused: release it."""
        key = self._key(filename)
        held_key = self._key(filename, held=True)
        if self._exists(held_key) and not self._exists(key):
            raise StorageError(
                f"backup {filename!r} is held: release it (`daai-backup release`) before "
                "deleting it"
            )
        # The backup first, what describes it after: a listed backup never loses its note.
        held_copy = self._exists(held_key)
        self._storage.delete(key)
        self._storage.delete(self._sidecar(key))
        if not held_copy:  # mid-move, the held copy keeps its record and manifest
            self._storage.delete(self._record(filename))
            self._storage.delete(self._manifest_key(filename))

    def hold(self, filename: str) -> None:
        """Move a backup out of the retention pool; idempotent and safe to re-run."""
        self._move(filename, to_held=True)

    def release(self, filename: str) -> None:
        """Put a held backup back into the retention pool; idempotent and safe to re-run."""
        self._move(filename, to_held=False)

    def _move(self, filename: str, to_held: bool) -> None:
        src = self._key(filename, held=not to_held)
        dst = self._key(filename, held=to_held)
        if not self._exists(src):
            if self._exists(dst):
                return  # already where it should be
            raise self._not_found(filename)
        # Copy first, delete after: at every instant the backup exists somewhere; each
        # side file follows its backup in (see the module docstring).
        self._storage.copy(src, dst)
        try:
            self._storage.copy(self._sidecar(src), self._sidecar(dst))
        except ObjectNotFound:
            # No side file to move; a stale one there would lend the backup a wrong note.
            self._storage.delete(self._sidecar(dst))
        self._storage.delete(src)
        self._storage.delete(self._sidecar(src))

    def usage_bytes(self) -> int:
        """Bytes the tenant's whole root takes, leftovers of killed writes included."""
        return self._storage.space_used(self._root_prefix())

    def _root_prefix(self) -> str:
        return self._root + "/" if self._root else ""

    # --- verification records ---------------------------------------------------------

    def record_verification(self, filename: str, record: VerificationRecord) -> None:
        """Keep what verify found about a backup (held or not); replaces an older record.

        ObjectNotFound if the backup does not exist: a record is written only after its
        backup, so one without a backup is always garbage.
        """
        if record.file != BackupName.parse(filename).filename:
            raise InvalidName(f"verification record of {record.file!r} given for {filename!r}")
        held_key = self._key(filename, held=True)
        if not (self._exists(self._key(filename)) or self._exists(held_key)):
            raise self._not_found(filename)
        put_bytes(self._storage, self._record(filename), record.to_json())

    def verifications(self) -> dict[str, VerificationRecord]:
        """The verification record of every existing backup that has one, by file name.

        One listing plus one small read per record. Records of backups that no longer exist
        are ignored, and so is a record that does not parse (its backup counts as not
        verified).
        """
        listing = self._scan()
        found: dict[str, VerificationRecord] = {}
        for filename in listing.records:
            if filename not in listing.backups:
                continue
            try:
                record = VerificationRecord.from_json(
                    read_bytes(self._storage, self._record(filename), limit=64 * 1024)
                )
            except (ObjectNotFound, ValueError):
                continue
            if record.file == filename:
                found[filename] = record
        return found

    # --- leftovers --------------------------------------------------------------------

    def remove_leftovers(self) -> int:
        """Remove what killed operations left in the tenant's root; return the bytes freed.

        Unfinished writes (:meth:`Storage.remove_incomplete` over the whole root), side
        files whose backup is not in their place, and verification records whose backup is
        in neither place. Call it holding the tenant's lease.
        """
        freed = self._storage.remove_incomplete(self._root_prefix())
        listing = self._scan()
        for (filename, held), size in listing.sidecars.items():
            key = self._key(filename, held)
            if (filename, held) not in listing.places and not self._exists(key):
                self._storage.delete(self._sidecar(key))
                freed += size
        for filename, size in listing.records.items():
            if filename in listing.backups or self._exists(self._key(filename)):
                continue
            if not self._exists(self._key(filename, held=True)):
                self._storage.delete(self._record(filename))
                freed += size
        return freed

    def _scan(self) -> _Listing:
        """One listing of the tenant's ``db-backups`` folder, sorted into its parts."""
        pool_prefix = self._pool + "/"
        listing = _Listing()
        for info in self._storage.list(pool_prefix):
            rel = info.key[len(pool_prefix) :]
            place, _, filename = rel.rpartition("/")
            held = place == HELD_DIR
            if place == VERIFIED_DIR and filename.endswith(RECORD_SUFFIX):
                kind, stem = "record", filename[: -len(RECORD_SUFFIX)]
            elif place in ("", HELD_DIR) and filename.endswith(SIDECAR_SUFFIX):
                kind, stem = "sidecar", filename[: -len(SIDECAR_SUFFIX)]
            elif place in ("", HELD_DIR):
                kind, stem = "backup", filename
            else:
                continue  # a sub-folder that is not ours
            try:
                BackupName.parse(stem)
            except InvalidName:
                continue  # not ours: left alone
            if kind == "record":
                listing.records[stem] = info.size
            elif kind == "sidecar":
                listing.sidecars[(stem, held)] = info.size
            else:
                listing.places.add((stem, held))
                listing.backups.add(stem)
        return listing


@dataclass
class _Listing:
    """A tenant's ``db-backups`` folder as one listing saw it (file names and sizes)."""

    backups: set[str] = field(default_factory=set)
    places: set[tuple[str, bool]] = field(default_factory=set)  # (file, held)
    sidecars: dict[tuple[str, bool], int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)


def folder_for_tenant(
    tenant_id: str,
    tenant_storage_url: str | None,
    default_storage_url: str,
    s3_endpoint_url: str | None = None,
) -> BackupFolder:
    """The tenant's folder: its own ``storage_url`` as root, else ``<default>/<tenant id>``."""
    validate_tenant_id(tenant_id)
    if tenant_storage_url:
        return BackupFolder(storage_from_url(tenant_storage_url, s3_endpoint_url=s3_endpoint_url))
    storage = storage_from_url(default_storage_url, s3_endpoint_url=s3_endpoint_url)
    return BackupFolder(storage, tenant_id)
