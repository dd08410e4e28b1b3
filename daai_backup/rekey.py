"""Key rotation: re-encrypt a tenant's DBK1 objects made under previous keys to the current key.

What is rewritten (every object whose DBK1 header names a key other than the current one):
backups (``db-backups/*.gz.enc``, legacy ``held/`` ones too), their manifests, change segments
(``db-changes/*.chg.enc``) and the listing index (not rewritten: deleted and rebuilt, it is a
cache). Legacy plain ``.gz`` backups have no key and stay as they are.

One object, step by step (each step one atomic storage write, move or delete)::

    old  --decrypt (every tag)--> plaintext --encrypt (current key)--> db-rekey/<same path>
    db-rekey/<same path> --decrypt with the current key only (every tag), hash compared with
         the old plaintext's, for a backup also the archive read whole (every CRC)
    db-rekey/<same path> --move--> old path  (local: one rename; S3: server-side copy + delete)

The new file carries the same object name in its header (the name binding holds under the same
name), the same tenant, content type and creation time, and the old object's storage metadata.
Nothing else of the tenant changes: names, labels, ``taken_at``, notes, holds and verification
records are other objects. A backup's manifest records the backup's key fingerprint and size:
it is re-sealed after its backup with both brought up to date (also when the manifest itself
was already under the current key), so verify keeps agreeing with it.

Crash safety: the temporary copy lives under ``<tenant root>/db-rekey/``, outside the folders
readers list, and its header name makes it invalid anywhere but its final name. A crash leaves
at most that copy (removed at the start of the next run) and every object either old (still
readable with the previous key) or new (skipped by the next run, which reads headers). So a
re-run completes the rotation, nothing is lost and no file is ever listed under two names.

Memory: one object at a time, streamed (a segment of ciphertext and one read chunk).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Final, cast

from daai_backup.errors import ArchiveCorrupt, DaaiBackupError, ObjectNotFound, WrongKey
from daai_backup.format.compression import open_gzip_reader
from daai_backup.format.dbk1 import (
    ArchiveHeader,
    ContentType,
    EncryptingWriter,
    open_plaintext,
    read_header,
)
from daai_backup.format.keys import Keyring, MasterKey
from daai_backup.repository import layout
from daai_backup.repository.folder import CHANGES_DIR, BackupFolder
from daai_backup.repository.layout import BACKUPS_DIR, Kind
from daai_backup.repository.manifest import Manifest
from daai_backup.storage import ObjectInfo, Storage, join_key

logger = logging.getLogger(__name__)

REKEY_DIR: Final = "db-rekey"
"""Temporary copies of a rekey in progress, under the tenant root (never listed as backups)."""
CHUNK: Final = 1024 * 1024
SEGMENT_SUFFIX: Final = ".chg.enc"

Progress = Callable[[int, int], None]
"""``progress(objects_done, objects_total)`` after each object is dealt with."""


@dataclass(frozen=True)
class StoredObject:
    """One DBK1 object of a tenant: its storage key, its name and what its header says."""

    key: str
    name: str
    kind: str
    """``backup``, ``manifest``, ``change-segment`` or ``listing-index``."""
    header: ArchiveHeader
    size: int
    backup: str | None = None
    """For a manifest: the backup it describes."""


@dataclass(frozen=True)
class KeyCensus:
    """How many of a tenant's encrypted objects need each key fingerprint."""

    tenant_id: str
    by_key: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    """fingerprint -> kind -> count."""
    plain: int = 0
    """Legacy plain gzip backups (no key)."""
    unreadable: list[str] = field(default_factory=list)
    """Objects whose header cannot be read (damaged): one line each."""


@dataclass
class RekeyOutcome:
    """What one tenant's rekey did."""

    tenant_id: str
    rewritten: dict[str, int] = field(default_factory=dict)
    """kind -> objects re-encrypted (the index counts when it was rebuilt)."""
    already_current: int = 0
    bytes_rewritten: int = 0
    leftovers_removed: int = 0
    remaining: dict[str, int] = field(default_factory=dict)
    """fingerprint -> objects still under it afterwards (empty when complete)."""
    unreadable: list[str] = field(default_factory=list)
    """Objects whose header cannot be read (damaged), left as they are: one line each."""

    @property
    def total_rewritten(self) -> int:
        return sum(self.rewritten.values())

    def summary(self) -> str:
        parts = ", ".join(f"{n} {k}(s)" for k, n in sorted(self.rewritten.items()) if n)
        done = f"re-encrypted {parts}" if parts else "nothing to re-encrypt"
        damaged = (
            f"; {len(self.unreadable)} file(s) with a damaged header left as they are "
            "(`daai-backup doctor --keys` lists them)"
            if self.unreadable
            else ""
        )
        return (
            f"tenant {self.tenant_id}: {done}; {self.already_current} already under the "
            f"current key{damaged}"
        )


def _kind(rel_root: str) -> tuple[str, str, str | None] | None:
    """``(kind, name, backup)`` of a tenant-root-relative key holding a DBK1 object, or None."""
    top, _, rest = rel_root.partition("/")
    if top == BACKUPS_DIR:
        found = layout.classify(rest)
        name = rest.rpartition("/")[2]
        if found.kind in (Kind.BACKUP, Kind.LEGACY_HELD) and name.endswith(".gz.enc"):
            return "backup", name, found.backup
        if found.kind is Kind.MANIFEST:
            return "manifest", name, found.backup
        if found.kind is Kind.INDEX:
            return "listing-index", name, None
        return None
    if top == CHANGES_DIR and "/" not in rest and rest.endswith(SEGMENT_SUFFIX):
        return "change-segment", rest, None
    return None


def _root(folder: BackupFolder) -> str:
    return folder.changes_prefix[: -len(CHANGES_DIR)]


def read_object_header(storage: Storage, key: str) -> ArchiveHeader | None:
    """The DBK1 header of one stored object (its first bytes only); None for plain gzip."""
    with storage.open_read(key) as stream:
        return read_header(stream)


def inventory(folder: BackupFolder) -> tuple[list[StoredObject], int, list[str]]:
    """Every DBK1 object of the tenant with its header (one header read per object).

    Returns ``(objects, plain gzip backups, unreadable lines)``.
    """
    storage, root = folder.storage, _root(folder)
    objects: list[StoredObject] = []
    plain = 0
    unreadable: list[str] = []
    for top in (BACKUPS_DIR, CHANGES_DIR):
        for info in storage.list(join_key(root, top) + "/"):
            rel = info.key[len(root) :]
            found = _kind(rel)
            if found is None:
                if top == BACKUPS_DIR and layout.classify(rel.partition("/")[2]).kind in (
                    Kind.BACKUP,
                    Kind.LEGACY_HELD,
                ):
                    plain += 1
                continue
            kind, name, backup = found
            try:
                header = read_object_header(storage, info.key)
            except ObjectNotFound:
                continue  # deleted since the listing
            except DaaiBackupError as exc:
                if isinstance(exc, ArchiveCorrupt) or not exc.transient:
                    unreadable.append(f"{rel}: {exc}")
                    continue
                raise
            if header is None:
                plain += 1
                continue
            objects.append(StoredObject(info.key, name, kind, header, info.size, backup))
    return objects, plain, unreadable


def census(folder: BackupFolder, tenant_id: str) -> KeyCensus:
    """Per key fingerprint, how many of the tenant's encrypted objects need it."""
    objects, plain, unreadable = inventory(folder)
    by_key: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    for obj in objects:
        fingerprint = obj.header.key_fingerprint
        by_key[fingerprint] += 1
        by_kind.setdefault(fingerprint, Counter())[obj.kind] += 1
    return KeyCensus(tenant_id, dict(by_key), by_kind, plain, unreadable)


class _HashingReader(io.RawIOBase):
    """Reads through ``source``, hashing and counting what passes."""

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self._source = source
        self.digest = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        data = self._source.read(len(out))
        out[: len(data)] = data
        self.digest.update(data)
        self.count += len(data)
        return len(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _Sink:
    """An in-memory sink the re-encrypting reader empties as it is read (bounded)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        return None


class _Reencrypting(io.RawIOBase):
    """The DBK1 bytes of ``plain`` under a new key, produced as they are read (pull, no thread)."""

    def __init__(self, plain: BinaryIO, writer_factory: Callable[[_Sink], EncryptingWriter]):
        super().__init__()
        self._plain = _HashingReader(plain)
        self._sink = _Sink()
        self._writer = writer_factory(self._sink)
        self._eof = False

    @property
    def digest(self) -> str:
        return self._plain.digest.hexdigest()

    @property
    def plain_bytes(self) -> int:
        return self._plain.count

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        while len(self._sink.buffer) < len(out) and not self._eof:
            chunk = self._plain.read(CHUNK)
            if chunk:
                self._writer.write(chunk)
            else:
                self._writer.close()
                self._eof = True
        n = min(len(out), len(self._sink.buffer))
        out[:n] = self._sink.buffer[:n]
        del self._sink.buffer[:n]
        return n


def _temp_key(folder: BackupFolder, key: str) -> str:
    root = _root(folder)
    return join_key(root, REKEY_DIR, key[len(root) :])


def remove_temporaries(folder: BackupFolder) -> int:
    """Delete what an interrupted rekey left under ``db-rekey/``; the number removed."""
    storage = folder.storage
    prefix = join_key(_root(folder), REKEY_DIR) + "/"
    removed = 0
    for info in list(storage.list(prefix)):
        storage.delete(info.key)
        removed += 1
    return removed


def _verify_new(
    storage: Storage,
    tmp: str,
    obj: StoredObject,
    current: MasterKey,
    tenant_id: str,
    digest: str,
    plain_bytes: int,
) -> None:
    """Read the new copy back with the current key only: every tag, the same plaintext, and
    for a backup the archive whole (every CRC). ``ArchiveCorrupt`` when anything differs."""
    from daai_backup.repository.archive_facts import read_facts

    with storage.open_read(tmp) as stream:
        plain = open_plaintext(
            stream,
            Keyring(current),
            tenant_id,
            name=obj.name,
            encrypted=True,
            content_type=obj.header.content_type,
        )
        hashed = _HashingReader(plain)
        if obj.header.content_type is ContentType.BACKUP_ARCHIVE:
            read_facts(open_gzip_reader(hashed))  # type: ignore[arg-type]
        hashed.drain()
    if hashed.digest.hexdigest() != digest or hashed.count != plain_bytes:
        raise ArchiveCorrupt(
            f"the re-encrypted copy of {obj.name!r} does not read back as the original "
            "(plaintext differs): the original is kept; check the storage and run rekey again"
        )


def reencrypt_object(
    folder: BackupFolder,
    obj: StoredObject,
    keyring: Keyring,
    tenant_id: str,
    *,
    transform: Callable[[bytes], bytes] | None = None,
) -> ObjectInfo:
    """Re-encrypt one object to the current key: temporary copy, full check, atomic move.

    ``transform`` (for small objects: manifests) changes the plaintext on the way.
    """
    storage = folder.storage
    current = keyring.require_current()
    tmp = _temp_key(folder, obj.key)
    metadata = storage.stat(obj.key).metadata
    locked: tuple[Any, bool] = (None, False)
    if folder.object_lock is not None and obj.kind in ("backup", "manifest"):
        locked = cast(Any, storage).lock_of(obj.key)

    def writer(sink: _Sink) -> EncryptingWriter:
        return EncryptingWriter(
            sink,  # type: ignore[arg-type]
            current,
            tenant_id,
            obj.header.created_at,
            name=obj.name,
            content_type=obj.header.content_type,
        )

    with storage.open_read(obj.key) as stream:
        plain: BinaryIO = open_plaintext(
            stream,
            keyring,
            tenant_id,
            name=obj.name,
            encrypted=True,
            content_type=obj.header.content_type,
        )
        if transform is not None:
            plain = io.BytesIO(transform(plain.read()))
        source = _Reencrypting(plain, writer)
        try:
            storage.put_stream(tmp, io.BufferedReader(source, CHUNK), metadata)  # type: ignore[arg-type]
        except BaseException:
            with contextlib.suppress(DaaiBackupError):
                storage.delete(tmp)
            raise
    try:
        _verify_new(storage, tmp, obj, current, tenant_id, source.digest, source.plain_bytes)
    except BaseException:
        with contextlib.suppress(DaaiBackupError):
            storage.delete(tmp)
        raise
    info = storage.move(tmp, obj.key)
    # Object Lock: the new version keeps the old one's date and legal hold (the old version
    # stays too, locked, until that date: the old key must be kept until then).
    until, held = locked
    if until is not None:
        cast(Any, storage).set_retention(obj.key, until)
    if held:
        cast(Any, storage).set_legal_hold(obj.key, True)
    return info


def _manifest_update(fingerprint: str | None, stored_bytes: int) -> Callable[[bytes], bytes]:
    def apply(body: bytes) -> bytes:
        data = json.loads(body)
        manifest = Manifest.from_json(data)
        updated = replace(manifest, key_fingerprint=fingerprint, stored_bytes=stored_bytes)
        return json.dumps(updated.to_json(), separators=(",", ":")).encode("utf-8")

    return apply


def _manifest_body(
    folder: BackupFolder, obj: StoredObject, keyring: Keyring, tenant: str
) -> Manifest:
    with folder.storage.open_read(obj.key) as stream:
        plain = open_plaintext(
            stream,
            keyring,
            tenant,
            name=obj.name,
            encrypted=True,
            content_type=ContentType.MANIFEST,
        )
        return Manifest.from_json(json.loads(plain.read()))


def check_keys_present(objects: list[StoredObject], keyring: Keyring, tenant_id: str) -> None:
    """``WrongKey`` (one line: fingerprints and counts) when some object needs an unknown key."""
    known = set(keyring.fingerprints)
    missing = Counter(
        o.header.key_fingerprint for o in objects if o.header.key_fingerprint not in known
    )
    if missing:
        needs = ", ".join(f"{fp} ({n} file(s))" for fp, n in sorted(missing.items()))
        raise WrongKey(
            f"tenant {tenant_id}: files need keys that are not configured: {needs}; add them "
            "to BACKUP_ENCRYPTION_PREVIOUS_KEYS and run rekey again (nothing was changed)"
        )


def _ordered(objects: list[StoredObject]) -> Iterator[StoredObject]:
    """Backups first, each followed by its manifest; then change segments; the index last."""
    manifests = {o.backup: o for o in objects if o.kind == "manifest"}
    for obj in sorted((o for o in objects if o.kind == "backup"), key=lambda o: o.key):
        yield obj
        if (m := manifests.pop(obj.backup, None)) is not None:
            yield m
    yield from sorted(manifests.values(), key=lambda o: o.key)
    yield from sorted((o for o in objects if o.kind == "change-segment"), key=lambda o: o.key)
    yield from (o for o in objects if o.kind == "listing-index")


def rekey_folder(
    folder: BackupFolder,
    keyring: Keyring,
    tenant_id: str,
    *,
    progress: Progress | None = None,
) -> RekeyOutcome:
    """Re-encrypt every object of one tenant made under a previous key (see the module).

    The caller MUST hold the tenant's lease. Refuses (``WrongKey``, nothing changed) when an
    object needs a key that is not configured.
    """
    current = keyring.require_current()
    outcome = RekeyOutcome(tenant_id)
    outcome.leftovers_removed = remove_temporaries(folder)
    objects, _, outcome.unreadable = inventory(folder)
    check_keys_present(objects, keyring, tenant_id)
    backup_headers = {o.backup: o for o in objects if o.kind == "backup"}
    ordered = list(_ordered(objects))
    rebuild_index = False
    for done, obj in enumerate(ordered, start=1):
        old = obj.header.key_fingerprint != current.fingerprint
        if obj.kind == "listing-index":
            if old or outcome.total_rewritten:
                folder.storage.delete(obj.key)
                rebuild_index = True
        elif obj.kind == "manifest":
            backup = backup_headers.get(obj.backup)
            fingerprint = current.fingerprint if backup is not None else None
            size = folder.storage.stat(backup.key).size if backup is not None else None
            stale = False
            if backup is not None:
                body = _manifest_body(folder, obj, keyring, tenant_id)
                stale = body.key_fingerprint != fingerprint or body.stored_bytes != size
            if old or stale:
                transform = (
                    _manifest_update(fingerprint, size)
                    if backup is not None and size is not None
                    else None
                )
                info = reencrypt_object(folder, obj, keyring, tenant_id, transform=transform)
                outcome.rewritten["manifest"] = outcome.rewritten.get("manifest", 0) + 1
                outcome.bytes_rewritten += info.size
            else:
                outcome.already_current += 1
        elif old:
            info = reencrypt_object(folder, obj, keyring, tenant_id)
            outcome.rewritten[obj.kind] = outcome.rewritten.get(obj.kind, 0) + 1
            outcome.bytes_rewritten += info.size
        else:
            outcome.already_current += 1
        if progress is not None:
            progress(done, len(ordered))
    if rebuild_index or outcome.total_rewritten:
        folder.listing()  # writes a fresh index under the current key
        if rebuild_index:
            outcome.rewritten["listing-index"] = 1
    left = census(folder, tenant_id)
    outcome.remaining = {fp: n for fp, n in left.by_key.items() if fp != current.fingerprint}
    return outcome
