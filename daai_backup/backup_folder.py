"""One tenant's backups: a view of a storage backend that cannot leave the tenant's root.

Layout under the tenant root (``<storage url>/<tenant id>`` by default, or the tenant's own
``storage_url``)::

    db-backups/<backup file>                 the retention pool
    db-backups/<backup file>.meta.json       its note and facts recorded after writing
                                             ({"note": "...", "consistency": "snapshot", ...})
    db-backups/held/<backup file>            held (pinned) backups, outside the pool
    db-backups/held/<backup file>.meta.json

Every method takes a backup *file name*, never a key: the name is parsed by
:meth:`BackupName.parse` (which accepts only canonical names, no '/' at all) and joined to
this tenant's prefix here, so no input can reach another tenant's objects. Listing uses the
tenant prefix with a trailing '/', so tenant ``acme`` never sees ``acme-2``.

Notes live in a small side file rather than in object metadata: an S3 listing does not
return metadata, so reading notes from metadata would cost one HEAD per backup, while side
files come back in the same listing pages and only backups that have a note cost one GET.

Ordering rules that keep a crash harmless:

- write: the note side file first, then the backup; a backup is never visible without its
  note, and a note without a backup is ignored.
- hold/release: copy (note, then backup) to the other place, then delete the original
  (backup, then note). After a crash between the steps the backup exists in both places;
  it is then listed once, as held (the safe side), and running hold or release again
  finishes the move.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import BinaryIO

from daai_backup.catalog import BackupEntry, newest_first
from daai_backup.errors import InvalidName, ObjectNotFound, StorageError
from daai_backup.names import BackupName, validate_note, validate_tenant_id
from daai_backup.storage import (
    ObjectInfo,
    Storage,
    join_key,
    put_bytes,
    read_bytes,
    storage_from_url,
    total_size,
    validate_key,
)

BACKUPS_DIR = "db-backups"
HELD_DIR = "held"
SIDECAR_SUFFIX = ".meta.json"


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

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def url(self) -> str:
        """Where this tenant's backups live, for messages."""
        return f"{self._storage.url.rstrip('/')}/{self._pool}"

    def __repr__(self) -> str:
        return f"BackupFolder({self.url!r})"

    # --- keys -------------------------------------------------------------------------

    def _key(self, filename: str, held: bool = False) -> str:
        name = BackupName.parse(filename)
        return join_key(self._held if held else self._pool, name.filename)

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
        if note is not None:
            put_bytes(self._storage, self._sidecar(key), json.dumps({"note": note}).encode())
        try:
            return self._storage.put_stream(key, source, metadata)
        except BaseException:
            if note is not None:
                with contextlib.suppress(StorageError):
                    self._storage.delete(self._sidecar(key))
            raise

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
        # The backup first, its note after: a listed backup never loses its note.
        self._storage.delete(key)
        self._storage.delete(self._sidecar(key))

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
        # Copy first, delete after: at every instant the backup exists somewhere.
        with contextlib.suppress(ObjectNotFound):
            self._storage.copy(self._sidecar(src), self._sidecar(dst))
        self._storage.copy(src, dst)
        self._storage.delete(src)
        self._storage.delete(self._sidecar(src))

    def usage_bytes(self) -> int:
        """Bytes used under the tenant's whole root (all backups, held ones, side files)."""
        return total_size(self._storage, self._root + "/" if self._root else "")


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
