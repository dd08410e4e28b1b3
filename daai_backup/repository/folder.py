"""One tenant's backups: a view of a storage backend that cannot leave the tenant's root.

Layout under the tenant root (``<storage url>/<tenant id>`` by default, or the tenant's own
``storage_url``); every name and pattern is in :mod:`daai_backup.repository.layout`, and
``docs/format.md`` ("The tenant folder") specifies them::

    db-backups/<backup file>                      the backups (they never move)
    db-backups/<backup file>.manifest             what each holds (encrypted)
    db-backups/index.enc                          the listing index (encrypted cache)
    db-backups/holds/<backup file>.hold           hold markers
    db-backups/verified/<backup file>.<when>.<size>.ok|bad    verification results
    legacy, still read: <backup file>.meta.json side files (notes), held/<backup file>
    (backups held by moving them), verified/<backup file>.json records
    <tenant root>/db-changes/<segment>.chg.enc    change capture's segments and gap
                                                  records, beside db-backups so the backup
                                                  listing never pages through them
                                                  (:mod:`daai_backup.capture.segments`)

Every method takes a backup *file name*, never a key: the name is parsed by
:meth:`BackupName.parse` (which accepts only canonical names, no '/' at all) and joined to
this tenant's prefix here, so no input can reach another tenant's objects. Listing uses the
tenant prefix with a trailing '/', so tenant ``acme`` never sees ``acme-2``.

**Listing costs O(1) requests** (:meth:`BackupFolder.listing`): one storage listing of
``db-backups/`` (its pages) says which backups exist, which are held (markers), which were
verified, when and with what result (record names), and which have a manifest; what a list
shows from the manifests (notes, counts) comes from the listing index, one GET. Only a
backup the index does not know yet costs one GET of its manifest (or of its legacy side
file), after which the index is rewritten. Looking one backup up by name is one HEAD
(:meth:`BackupFolder.lookup`).

Ordering rules that keep a crash harmless (each step is one atomic storage write or
delete; a crash stops the sequence between two steps):

- Everything that describes a backup (manifest, side file, hold marker, verification
  record) is written only after the backup exists and deleted only after it is gone. So one
  whose backup is gone is garbage of a killed operation: readers ignore it, the list reports
  it, and :meth:`BackupFolder.remove_leftovers` deletes it. A crash may leave a backup
  without its manifest or note, never the reverse.
- write: the backup, then the side file with the note (the manifest is put after both).
- hold: put the marker; release: delete it. A backup held the legacy way (moved to
  ``held/``) is migrated by its next hold or release: copy it (and its side file) back to
  the pool unless already there, put or delete the marker, then delete the ``held/`` copy
  and its side file. Until the last step it is still listed once, as held (the safe side),
  and running hold or release again finishes it.
- delete (refused while held): the backup, its side file, its manifest, its records.

:meth:`BackupFolder.remove_leftovers` also asks the storage to remove what killed writes
left (:meth:`Storage.remove_incomplete`); like every write here, it is called while holding
the tenant's lease, so no live write of this tenant is under way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast

from daai_backup.errors import (
    ArchiveCorrupt,
    DaaiBackupError,
    InvalidName,
    ObjectLocked,
    ObjectNotFound,
    StorageError,
)
from daai_backup.format.keys import Keyring
from daai_backup.repository import index as listing_index
from daai_backup.repository import layout
from daai_backup.repository.catalog import BackupEntry, newest_first
from daai_backup.repository.index import IndexEntry
from daai_backup.repository.layout import BACKUPS_DIR, HELD_DIR, Kind
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

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = layout.SIDECAR_SUFFIX
SIDE_FILE_LIMIT = 64 * 1024
#: A verification record dated further ahead than this is not believed (see ``_scan``).
RECORD_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Stray:
    """An object in ``db-backups`` that is not a backup, or a backup's part that is broken."""

    name: str
    """Relative to ``db-backups/``."""
    size: int
    problem: str
    remedy: str
    removable: bool
    """An orphan of a kind daai-backup writes: :meth:`BackupFolder.remove_leftovers`
    deletes it. Unknown objects are never removable."""
    backup: str | None = None

    def describe(self) -> str:
        return f"{self.name}: {self.problem}; {self.remedy}"


@dataclass(frozen=True)
class FolderListing:
    """A tenant's ``db-backups`` as one listing saw it, with the list's facts resolved."""

    entries: list[BackupEntry]
    strays: list[Stray] = field(default_factory=list)
    without_manifest: list[str] = field(default_factory=list)
    """Backups that have no manifest (written before manifests, or a write cut short)."""
    notes_need_key: bool = False
    """Some backups have notes, but no key was given to read them."""
    index_problem: str | None = None
    """Why the listing index could not be used (it is rebuilt), if it could not."""
    reads: int = 0
    """Objects read beyond the listing (the index, manifests and side files it lacked)."""
    index_written: bool = False
    summaries: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Each backup's manifest summary (``Manifest.summary()``) as the index holds it."""


@dataclass
class _Scan:
    """One listing of the tenant's ``db-backups`` folder, sorted by kind."""

    pool: dict[str, ObjectInfo] = field(default_factory=dict)
    legacy_held: dict[str, ObjectInfo] = field(default_factory=dict)
    manifests: dict[str, ObjectInfo] = field(default_factory=dict)
    changes: dict[str, ObjectInfo] = field(default_factory=dict)
    sidecars: dict[str, ObjectInfo] = field(default_factory=dict)
    held_sidecars: dict[str, ObjectInfo] = field(default_factory=dict)
    holds: dict[str, ObjectInfo] = field(default_factory=dict)
    records: dict[str, list[tuple[str, VerificationRecord, int]]] = field(default_factory=dict)
    legacy_records: dict[str, ObjectInfo] = field(default_factory=dict)
    index: ObjectInfo | None = None
    unknown: list[tuple[str, int]] = field(default_factory=list)

    @property
    def backups(self) -> set[str]:
        return set(self.pool) | set(self.legacy_held)

    def newest_record(self, backup: str) -> tuple[str, VerificationRecord] | None:
        best: tuple[str, VerificationRecord] | None = None
        for name, record, _ in self.records.get(backup, []):
            if best is None or record.newer_than(best[1]):
                best = (name, record)
        return best


#: Change capture's folder, a sibling of ``db-backups`` under the tenant root.
CHANGES_DIR = "db-changes"


class BackupFolder:
    """The backups of one tenant, under ``root_prefix`` inside ``storage``.

    ``tenant_id`` and ``keyring`` let the folder read manifests and keep the encrypted
    listing index; without them (or without any key in the keyring) the list comes from
    names and sizes alone (:attr:`FolderListing.notes_need_key`).
    """

    def __init__(
        self,
        storage: Storage,
        root_prefix: str = "",
        *,
        tenant_id: str | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        root = root_prefix.strip("/")
        if root:
            validate_key(root)
        self._storage = storage
        self._root = root
        self._pool = join_key(root, BACKUPS_DIR)
        self._held = join_key(self._pool, HELD_DIR)
        self._tenant_id = None if tenant_id is None else validate_tenant_id(tenant_id)
        self._keyring = keyring

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
        """Storage key of the tenant's ``db-changes`` folder (change capture's
        segments and gap records, :mod:`daai_backup.capture.segments`)."""
        return join_key(self._root, CHANGES_DIR)

    # --- keys -------------------------------------------------------------------------

    def _key(self, filename: str, held: bool = False) -> str:
        name = BackupName.parse(filename)
        return join_key(self._held if held else self._pool, name.filename)

    def _obj(self, name: str) -> str:
        """The key of an object named relative to ``db-backups/`` (names from ``layout``)."""
        return join_key(self._pool, name)

    @staticmethod
    def _sidecar(key: str) -> str:
        return key + SIDECAR_SUFFIX

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

    def _can_read(self) -> bool:
        ring = self._keyring
        return (
            self._tenant_id is not None
            and ring is not None
            and (ring.current is not None or bool(ring.previous))
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
        until = self._retain_until(name)
        if until is not None:
            info: ObjectInfo = cast(Any, self._storage).put_stream(
                key, source, metadata, retain_until=until
            )
        else:
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

    @property
    def object_lock(self) -> str | None:
        """The S3 Object Lock mode backups are written with here (None: not locked)."""
        mode = getattr(self._storage, "object_lock", None)
        return mode if isinstance(mode, str) else None

    def _retain_until(self, name: BackupName) -> datetime | None:
        if self.object_lock is None:
            return None
        from daai_backup.policy.lock import retain_until

        return retain_until(name.frequency, name.taken_at)

    def lock_of(self, filename: str) -> tuple[datetime | None, bool]:
        """``(retain-until, legal hold)`` of a backup under Object Lock; ``(None, False)``
        when this folder does not lock backups."""
        if self.object_lock is None:
            return None, False
        result: tuple[datetime | None, bool] = cast(Any, self._storage).lock_of(self._key(filename))
        return result

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

    def lookup(self, filename: str) -> BackupEntry:
        """One backup by name, from one HEAD request (a second for a legacy held one).

        The entry has the backup's name, size and encryption; ``held`` is only known for a
        backup held the legacy way, and the note is not read: :meth:`listing` has both.
        ``ObjectNotFound`` if there is no such backup.
        """
        name = BackupName.parse(filename)
        for held in (False, True):
            with contextlib.suppress(ObjectNotFound):
                info = self._storage.stat(self._key(filename, held))
                return BackupEntry.from_name(name, info.size, held=held)
        raise self._not_found(filename)

    def entries(self) -> list[BackupEntry]:
        """Every backup of the tenant, newest first, held ones included and marked."""
        return self.listing().entries

    def listing(self) -> FolderListing:
        """The backup list with everything it shows, and what is there that is not a backup.

        One storage listing (its pages), plus one GET of the listing index when a key is
        given; a backup the index does not know yet costs one GET of its manifest (or of
        its legacy side file), and the index is then rewritten. See the module docstring.
        """
        scan = self._scan()
        strays = self._orphans(scan)
        strays.extend(
            Stray(
                name,
                size,
                "not a name daai-backup writes",
                "daai-backup never reads, changes or deletes it: move it out of db-backups",
                removable=False,
            )
            for name, size in scan.unknown
        )
        records, reads = self._records(scan, with_errors=False)
        notes: dict[str, str | None] = {}
        summaries: dict[str, Mapping[str, Any]] = {}
        index_problem: str | None = None
        written = False
        notes_need_key = False
        if self._can_read():
            cached, index_problem = self._read_index(scan)
            reads += scan.index is not None
            fresh: dict[str, IndexEntry] = {}
            for backup in scan.backups:
                entry, read = self._index_entry(scan, backup, cached.get(backup))
                reads += read
                if entry is None:
                    continue
                fresh[backup] = entry
                notes[backup] = entry.note
                if entry.source == "manifest" and entry.summary is not None:
                    summaries[backup] = entry.summary
                if entry.error is not None:
                    strays.append(
                        Stray(
                            manifest_name(backup),
                            scan.manifests[backup].size,
                            f"manifest cannot be read ({entry.error})",
                            "verify the backup to check it and rebuild its manifest: "
                            f"`daai-backup verify --tenant {self._tenant_id} --file {backup}`",
                            removable=False,
                            backup=backup,
                        )
                    )
            if fresh != cached or (scan.index is None and fresh):
                written = self._write_index(fresh)
            elif scan.index is not None and not fresh:  # nothing left to cache
                with contextlib.suppress(DaaiBackupError):
                    self._storage.delete(self._obj(layout.INDEX_NAME))
        else:
            notes_need_key = any(
                b in scan.manifests or b in scan.sidecars or b in scan.held_sidecars
                for b in scan.backups
            )
        entries = []
        for backup in scan.backups:
            legacy = backup in scan.legacy_held
            info = scan.legacy_held[backup] if legacy else scan.pool[backup]
            listed = BackupEntry.from_name(
                BackupName.parse(backup),
                info.size,
                note=notes.get(backup),
                held=legacy or backup in scan.holds,
                verified=records.get(backup),
            )
            if (summary := summaries.get(backup)) is not None:
                # Older manifests: a snapshot is consistent at its cluster time.
                at = summary.get("consistent_at") or (
                    summary.get("cluster_time")
                    if summary.get("consistency") == "snapshot"
                    else None
                )
                listed = dataclasses.replace(
                    listed,
                    consistency=summary.get("consistency"),
                    consistent_at=(int(at[0]), int(at[1])) if at else None,
                    actor=summary.get("actor"),
                )
            entries.append(listed)
        return FolderListing(
            entries=newest_first(entries),
            strays=sorted(strays, key=lambda s: s.name),
            without_manifest=sorted(b for b in scan.backups if b not in scan.manifests),
            notes_need_key=notes_need_key,
            index_problem=index_problem,
            reads=reads,
            index_written=written,
            summaries=summaries,
        )

    def _read_index(self, scan: _Scan) -> tuple[dict[str, IndexEntry], str | None]:
        if scan.index is None:
            return {}, None
        assert self._keyring is not None
        assert self._tenant_id is not None
        try:
            with self._storage.open_read(self._obj(layout.INDEX_NAME)) as source:
                return listing_index.unseal(source, self._keyring, self._tenant_id), None
        except ObjectNotFound:
            return {}, None
        except DaaiBackupError as exc:
            logger.warning("%s: listing index not used (%s); rebuilding it", self.url, exc)
            return {}, f"listing index not used ({exc}); it is rebuilt"

    def _index_entry(
        self, scan: _Scan, backup: str, cached: IndexEntry | None
    ) -> tuple[IndexEntry | None, int]:
        """(what the index should hold for ``backup``, objects read to know it)."""
        if backup in scan.manifests:
            size = scan.manifests[backup].size
            if cached is not None and cached.source == "manifest" and cached.bytes == size:
                return cached, 0
            return self._read_manifest_summary(backup, size), 1
        sidecars = scan.held_sidecars if backup in scan.legacy_held else scan.sidecars
        if backup not in sidecars:
            return None, 0
        size = sidecars[backup].size
        if cached is not None and cached.source == "sidecar" and cached.bytes == size:
            return cached, 0
        key = self._sidecar(self._key(backup, held=backup in scan.legacy_held))
        note = self._read_sidecar(key).get("note")
        return IndexEntry("sidecar", size, {"note": note if isinstance(note, str) else None}), 1

    def _read_manifest_summary(self, backup: str, size: int) -> IndexEntry | None:
        from daai_backup.repository.manifest import unseal

        assert self._keyring is not None
        assert self._tenant_id is not None
        try:
            with self.open_manifest(backup) as source:
                manifest = unseal(source, self._keyring, self._tenant_id, backup)
        except ArchiveCorrupt as exc:  # the manifest itself is bad: remember why
            return IndexEntry("manifest", size, None, " ".join(str(exc).split())[:300])
        except DaaiBackupError as exc:  # a key or storage problem: try again next time
            logger.warning("%s: manifest of %s not read: %s", self.url, backup, exc)
            return None
        return IndexEntry("manifest", size, manifest.summary())

    def _write_index(self, entries: Mapping[str, IndexEntry]) -> bool:
        ring = self._keyring
        if ring is None or ring.current is None or self._tenant_id is None:
            return False
        if not entries:
            with contextlib.suppress(DaaiBackupError):
                self._storage.delete(self._obj(layout.INDEX_NAME))
            return False
        sealed = listing_index.seal(entries, ring.current, self._tenant_id, datetime.now(UTC))
        try:
            put_bytes(self._storage, self._obj(layout.INDEX_NAME), sealed)
        except DaaiBackupError as exc:  # a cache: a reader may have read-only credentials
            logger.warning("%s: listing index not rewritten: %s", self.url, exc)
            return False
        return True

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
        until = self._retain_until(BackupName.parse(filename))
        if until is not None:
            cast(Any, self._storage).put_stream(
                self._manifest_key(filename), io.BytesIO(sealed), retain_until=until
            )
            return
        put_bytes(self._storage, self._manifest_key(filename), sealed)

    def put_changes(self, filename: str, sealed: bytes) -> None:
        """Store the sealed change events of an existing backup's dump (``<file>.changes``).

        Written after its backup and before its manifest, deleted with it (:meth:`delete`).
        """
        if not any(self._exists(self._key(filename, held)) for held in (False, True)):
            raise self._not_found(filename)
        put_bytes(self._storage, join_key(self._pool, layout.changes_name(filename)), sealed)

    def open_changes(self, filename: str) -> BinaryIO:
        """The sealed change events of a backup's dump; ``ObjectNotFound`` if it has none."""
        return self._storage.open_read(join_key(self._pool, layout.changes_name(filename)))

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
            data = json.loads(read_bytes(self._storage, sidecar, limit=SIDE_FILE_LIMIT))
        except (ObjectNotFound, ValueError, StorageError):
            return {}
        return data if isinstance(data, dict) else {}

    def note(self, filename: str) -> str | None:
        """The note of one backup, or None."""
        for held in (True, False):
            key = self._key(filename, held)
            if self._exists(key):
                return self._read_note(self._sidecar(key))
        raise self._not_found(filename)

    def is_held(self, filename: str) -> bool:
        """Whether a backup is held (a hold marker, or a legacy copy in ``held/``)."""
        return self._exists(self._obj(layout.hold_name(filename))) or self._exists(
            self._key(filename, held=True)
        )

    def delete(self, filename: str) -> None:
        """Delete a backup; idempotent. A held backup is refused: release it first."""
        name = BackupName.parse(filename).filename
        if self.is_held(name):
            raise StorageError(
                f"backup {filename!r} is held: release it (`daai-backup release`) before "
                "deleting it"
            )
        # The backup first, what describes it after: a listed backup never loses its note.
        key = self._key(name)
        until, legal_hold = self.lock_of(name) if self._exists(key) else (None, False)
        if legal_hold or (until is not None and until > datetime.now(UTC)):
            why = f"until {until.isoformat(timespec='seconds')}" if until else "by a legal hold"
            raise ObjectLocked(
                f"backup {filename!r} is under S3 Object Lock {why}: it is kept; retention "
                "deletes it after that date"
            )
        self._storage.delete(key)
        self._storage.delete(self._sidecar(key))
        self._storage.delete(self._manifest_key(name))
        self._storage.delete(join_key(self._pool, layout.changes_name(name)))
        for record in self._record_keys(name):
            self._storage.delete(record)

    def _record_keys(self, filename: str) -> list[str]:
        """Keys of every verification record of ``filename`` (one listing)."""
        prefix = self._obj(layout.records_prefix(filename))
        base = self._pool + "/"
        found = []
        for info in self._storage.list(prefix):
            classified = layout.classify(info.key[len(base) :])
            if classified.backup == filename and classified.kind in (
                Kind.RECORD,
                Kind.LEGACY_RECORD,
            ):
                found.append(info.key)
        return found

    def hold(self, filename: str) -> None:
        """Pin a backup: retention never deletes it. Idempotent and safe to re-run."""
        self._set_hold(filename, held=True)

    def release(self, filename: str) -> None:
        """Unpin a held backup: retention applies again. Idempotent and safe to re-run."""
        self._set_hold(filename, held=False)

    def _set_hold(self, filename: str, held: bool) -> None:
        name = BackupName.parse(filename).filename
        pool, legacy = self._key(name), self._key(name, held=True)
        in_pool, in_legacy = self._exists(pool), self._exists(legacy)
        if not (in_pool or in_legacy):
            raise self._not_found(filename)
        marker = self._obj(layout.hold_name(name))
        if in_legacy:  # held the old way: bring it back to the pool for good
            if not in_pool:
                self._storage.copy(legacy, pool)
            try:
                self._storage.copy(self._sidecar(legacy), self._sidecar(pool))
            except ObjectNotFound:
                # No side file to move; a stale one there would lend the backup a wrong note.
                self._storage.delete(self._sidecar(pool))
        if held:
            if in_legacy or not self._exists(marker):
                body = {"file": name, "held_at": datetime.now(UTC).isoformat()}
                put_bytes(self._storage, marker, json.dumps(body).encode())
            if self.object_lock is not None:  # after the marker: a crash leaves it held
                cast(Any, self._storage).set_legal_hold(pool, True)
        else:
            if self.object_lock is not None:
                cast(Any, self._storage).set_legal_hold(pool, False)
            self._storage.delete(marker)
        if in_legacy:
            self._storage.delete(legacy)
            self._storage.delete(self._sidecar(legacy))

    def usage_bytes(self) -> int:
        """Bytes the tenant's whole root takes, leftovers of killed writes included."""
        return self._storage.space_used(self._root_prefix())

    def _root_prefix(self) -> str:
        return self._root + "/" if self._root else ""

    # --- verification records ---------------------------------------------------------

    def record_verification(self, filename: str, record: VerificationRecord) -> None:
        """Keep what verify found about a backup (held or not); supersedes older records.

        ObjectNotFound if the backup does not exist: a record is written only after its
        backup, so one without a backup is always garbage.
        """
        name = BackupName.parse(filename).filename
        if record.file != name:
            raise InvalidName(f"verification record of {record.file!r} given for {filename!r}")
        if not (self._exists(self._key(name)) or self._exists(self._key(name, held=True))):
            raise self._not_found(filename)
        new_key = self._obj(record.object_name)
        put_bytes(self._storage, new_key, record.body())
        base = self._pool + "/"
        for key in self._record_keys(name):
            if key == new_key:
                continue
            other = VerificationRecord.from_name(key[len(base) :])
            # Legacy, superseded (an older result, or one of the same second: this one was
            # written last), or dated ahead by a skewed clock (never believed, see _scan).
            # A newer result is kept: a slow verify finishing late never wins over it.
            if (
                other is None
                or other.verified_at <= record.verified_at
                or other.verified_at > (datetime.now(UTC) + RECORD_CLOCK_SKEW)
            ):
                self._storage.delete(key)

    def verifications(self, *, with_errors: bool = False) -> dict[str, VerificationRecord]:
        """The newest verification record of every existing backup that has one, by file.

        One listing: the result, time and size are in the records' names. ``with_errors``
        also reads the error of each failed record (one GET each). A legacy JSON record
        costs one GET, once: it is converted to the new form when read.
        """
        records, _ = self._records(self._scan(), with_errors=with_errors)
        return records

    def _records(
        self, scan: _Scan, *, with_errors: bool
    ) -> tuple[dict[str, VerificationRecord], int]:
        found: dict[str, VerificationRecord] = {}
        reads = 0
        for backup in scan.backups:
            newest = scan.newest_record(backup)
            if newest is not None:
                name, record = newest
                if with_errors and not record.ok:
                    reads += 1
                    with contextlib.suppress(ObjectNotFound):
                        body = read_bytes(self._storage, self._obj(name), limit=SIDE_FILE_LIMIT)
                        record = VerificationRecord.from_name(name, body) or record
                found[backup] = record
            elif backup in scan.legacy_records:
                reads += 1
                legacy = self._convert_legacy_record(backup)
                if legacy is not None:
                    found[backup] = legacy
        return found, reads

    def _convert_legacy_record(self, backup: str) -> VerificationRecord | None:
        """Read a legacy JSON record and store it in the new form (best effort)."""
        key = self._obj(layout.legacy_record_name(backup))
        try:
            record = VerificationRecord.from_json(
                read_bytes(self._storage, key, limit=SIDE_FILE_LIMIT)
            )
        except (ObjectNotFound, ValueError, StorageError):
            return None
        if record.file != backup:
            return None
        try:
            # New form first, legacy removed after: a crash leaves both, and the new wins.
            put_bytes(self._storage, self._obj(record.object_name), record.body())
            self._storage.delete(key)
        except DaaiBackupError as exc:
            logger.warning("%s: verification record of %s not converted: %s", self.url, backup, exc)
        return record

    # --- leftovers --------------------------------------------------------------------

    def _orphans(self, scan: _Scan) -> list[Stray]:
        """Objects of kinds daai-backup writes whose backup is gone (from one listing)."""
        remedy = "left by an interrupted operation: the next retention run removes it"
        orphans: list[Stray] = []

        def add(items: Iterable[tuple[str, str, int]], what: str, gone: set[str]) -> None:
            for name, backup, size in items:
                if backup not in gone:
                    orphans.append(
                        Stray(
                            name, size, f"{what} of {backup}, which is gone", remedy, True, backup
                        )
                    )

        existing = scan.backups
        add(
            ((manifest_name(b), b, i.size) for b, i in scan.manifests.items()),
            "manifest",
            existing,
        )
        add(
            ((layout.changes_name(b), b, i.size) for b, i in scan.changes.items()),
            "change events",
            existing,
        )
        add(((layout.hold_name(b), b, i.size) for b, i in scan.holds.items()), "hold", existing)
        add(
            ((n, b, size) for b, rs in scan.records.items() for n, _, size in rs),
            "verification record",
            existing,
        )
        add(
            ((layout.legacy_record_name(b), b, i.size) for b, i in scan.legacy_records.items()),
            "verification record",
            existing,
        )
        add(
            ((layout.sidecar_name(b), b, i.size) for b, i in scan.sidecars.items()),
            "side file",
            set(scan.pool),
        )
        add(
            ((layout.sidecar_name(b, True), b, i.size) for b, i in scan.held_sidecars.items()),
            "side file",
            set(scan.legacy_held),
        )
        return orphans

    def remove_leftovers(self) -> int:
        """Remove what killed operations left in the tenant's root; return the bytes freed.

        Unfinished writes (:meth:`Storage.remove_incomplete` over the whole root); manifests,
        side files, hold markers and verification records whose backup is gone (each checked
        again just before it is deleted); and verification records superseded by a newer
        one. Objects daai-backup does not know are never touched. Call it holding the
        tenant's lease.
        """
        freed = self._storage.remove_incomplete(self._root_prefix())
        scan = self._scan()
        for stray in self._orphans(scan):
            assert stray.backup is not None
            legacy_side = stray.name.startswith(HELD_DIR + "/")
            if stray.name == layout.sidecar_name(stray.backup):
                still = self._exists(self._key(stray.backup))
            elif legacy_side:
                still = self._exists(self._key(stray.backup, held=True))
            else:
                still = self._exists(self._key(stray.backup)) or self._exists(
                    self._key(stray.backup, held=True)
                )
            if not still:
                self._storage.delete(self._obj(stray.name))
                freed += stray.size
        for backup in scan.backups:
            newest = scan.newest_record(backup)
            if newest is None:
                continue
            for name, _, size in scan.records.get(backup, []):
                if name != newest[0]:
                    self._storage.delete(self._obj(name))
                    freed += size
            if backup in scan.legacy_records:
                self._storage.delete(self._obj(layout.legacy_record_name(backup)))
                freed += scan.legacy_records[backup].size
        return freed

    def _scan(self) -> _Scan:
        """One listing of the tenant's ``db-backups`` folder, sorted by kind."""
        base = self._pool + "/"
        scan = _Scan()
        future = datetime.now(UTC) + RECORD_CLOCK_SKEW
        for info in self._storage.list(base):
            rel = info.key[len(base) :]
            found = layout.classify(rel)
            backup = found.backup
            if found.kind is Kind.INDEX:
                scan.index = info
            elif backup is None:
                scan.unknown.append((rel, info.size))
            elif found.kind is Kind.RECORD:
                record = VerificationRecord.from_name(rel)
                assert record is not None
                if record.verified_at > future:
                    # A record dated ahead (a skewed clock, a hand-made name) would outrank
                    # every real verification for as long as it is ahead: never counted,
                    # reported (doctor) instead.
                    scan.unknown.append((rel, info.size))
                    continue
                scan.records.setdefault(backup, []).append((rel, record, info.size))
            else:
                place = {
                    Kind.BACKUP: scan.pool,
                    Kind.LEGACY_HELD: scan.legacy_held,
                    Kind.MANIFEST: scan.manifests,
                    Kind.CHANGES: scan.changes,
                    Kind.SIDECAR: scan.sidecars,
                    Kind.LEGACY_HELD_SIDECAR: scan.held_sidecars,
                    Kind.HOLD: scan.holds,
                    Kind.LEGACY_RECORD: scan.legacy_records,
                }[found.kind]
                place[backup] = info
        return scan


def folder_for_tenant(
    tenant_id: str,
    tenant_storage_url: str | None,
    default_storage_url: str,
    s3_endpoint_url: str | None = None,
    keyring: Keyring | None = None,
    object_lock: str | None = None,
) -> BackupFolder:
    """The tenant's folder: its own ``storage_url`` as root, else ``<default>/<tenant id>``.

    With ``keyring`` the folder reads manifests and keeps the listing index.
    """
    validate_tenant_id(tenant_id)
    url = tenant_storage_url or default_storage_url
    if object_lock is not None and not url.startswith("s3://"):
        from daai_backup.errors import ConfigError

        raise ConfigError(
            f"DAAI_BACKUP_S3_OBJECT_LOCK is {object_lock} but tenant {tenant_id}'s storage "
            f"{url} is not S3: Object Lock exists on S3 only; set it to off"
        )
    if tenant_storage_url:
        storage = storage_from_url(
            tenant_storage_url, s3_endpoint_url=s3_endpoint_url, object_lock=object_lock
        )
        return BackupFolder(storage, tenant_id=tenant_id, keyring=keyring)
    storage = storage_from_url(
        default_storage_url, s3_endpoint_url=s3_endpoint_url, object_lock=object_lock
    )
    return BackupFolder(storage, tenant_id, tenant_id=tenant_id, keyring=keyring)
