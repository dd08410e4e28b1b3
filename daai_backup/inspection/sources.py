"""Snapshots to look inside: a stored backup, or the live database, read as a stream.

Both sides of a diff (and every snapshot ``find`` reads) look the same to the code above:

- ``collections``: each collection's, view's and time-series collection's metadata (kind,
  options, indexes), known as soon as the snapshot is open: an archive's prelude, or the
  live database's ``listCollections``/``listIndexes``;
- :meth:`Snapshot.events`: ``(collection, documents)`` pairs, ``documents`` a list of raw
  BSON documents (never decoded here), then ``(collection, None)`` once that collection has
  no more documents. Every listed collection ends exactly once, views with no documents.

A backup is read as a restore reads it: the tenant's folder, DBK1 (or legacy plaintext)
decryption that checks the name the file is stored under, gunzip, and the validating
archive reader (every namespace's CRC is checked at its end, a truncated archive fails).
Our archives hold one collection after another, in name order; a ``mongodump`` archive may
interleave collections. The live database is read collection by collection, in an order
the caller picks (the order of the other side, so that a diff holds one collection at a
time), without a snapshot session: each collection as it is when it is read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from daai_backup.errors import ArchiveCorrupt, ArchiveError, PermissionDenied
from daai_backup.format.compression import open_gzip_reader
from daai_backup.format.dbk1 import open_plaintext
from daai_backup.mongo.archive_format import ArchiveReader, CollectionMetadata, DocumentBatch

if TYPE_CHECKING:
    from pymongo.database import Database

    from daai_backup.operations import EngineContext
    from daai_backup.repository.catalog import BackupEntry
    from daai_backup.tenants import Tenant

_INT32 = struct.Struct("<i")

LIVE = "live"
"""The name that stands for the tenant's live database where a backup file name is expected."""

#: Documents per batch read from the live database (the server also caps a batch at 16 MiB).
LIVE_BATCH_DOCUMENTS = 500

Event = tuple[str, list[bytes] | None]
"""``(collection, raw documents)``, or ``(collection, None)`` when the collection ends."""


class Snapshot(Protocol):
    """One side of a diff, or one snapshot ``find`` reads."""

    label: str
    collections: dict[str, CollectionMetadata]

    def events(self) -> Iterator[Event]: ...


def require_reader(tenant: Tenant, actor: str | None) -> None:
    """Refuse unless ``actor`` holds ``restore`` on ``tenant``: reading a backup's contents
    shows the same data a restore would bring back, so it needs the same permission."""
    if not actor:
        raise PermissionDenied(
            f"an actor is needed to read the contents of tenant {tenant.id!r}'s backups: give "
            "the user's name with --actor (they need the 'restore' permission)"
        )
    if not tenant.can(actor, "restore"):
        raise PermissionDenied(
            f"{actor!r} may not read the contents of tenant {tenant.id!r}'s backups (it shows "
            "what a restore would): grant 'restore' to them under permissions in the tenants file"
        )


class ArchiveSnapshot:
    """A mongodump archive (uncompressed stream) as a :class:`Snapshot`.

    Collections are named by their user-visible name: a time-series collection's documents
    (its ``system.buckets.`` namespace) are reported under the collection's own name. An
    archive of several databases is refused: a tenant's backup holds one.
    """

    def __init__(self, stream: BinaryIO, label: str) -> None:
        self.label = label
        self._reader = ArchiveReader(stream)
        databases = sorted({m.db for m in self._reader.collections})
        if len(databases) > 1:
            raise ArchiveCorrupt(
                f"{label} holds several databases ({', '.join(databases[:5])}): a tenant's "
                "backup holds one; import it per database"
            )
        self.collections = {m.collection: m for m in self._reader.collections}
        self._names = {m.data_collection: m.collection for m in self._reader.collections}

    def events(self) -> Iterator[Event]:
        with named_errors(self.label):
            for event in self._reader:
                name = self._names.get(event.collection, event.collection)
                if isinstance(event, DocumentBatch):
                    yield name, event.documents
                else:
                    yield name, None


@contextmanager
def named_errors(filename: str) -> Iterator[None]:
    """Prefix an archive error's line with the file it is about (a diff reads two, a find
    many): ``<file>: <what is wrong>``, the same error class."""
    try:
        yield
    except ArchiveError as exc:
        if str(exc).startswith(filename):
            raise
        raise type(exc)(f"{filename}: {exc}") from exc


def split_raw_batch(batch: bytes) -> list[bytes]:
    """The documents of a raw batch (concatenated BSON documents, as the server sends them)."""
    out: list[bytes] = []
    pos, end = 0, len(batch)
    unpack = _INT32.unpack_from
    while pos < end:
        length = unpack(batch, pos)[0]
        out.append(batch[pos : pos + length])
        pos += length
    return out


class LiveSnapshot:
    """The tenant's live database as a :class:`Snapshot`, read collection by collection.

    ``order`` names the collections to read first, in that order (the other side's order);
    the rest follow by name. Collections are those a backup holds (``mongo.listing``).
    """

    def __init__(self, db: Database[Any], order: Sequence[str] = (), label: str = LIVE) -> None:
        from daai_backup.mongo.listing import list_metadata

        self.label = label
        self._db = db
        self.collections = {m.collection: m for m in list_metadata(db)}
        first = [n for n in dict.fromkeys(order) if n in self.collections]
        self._order = first + sorted(set(self.collections) - set(first))

    def events(self) -> Iterator[Event]:
        from daai_backup.mongo.translate import translated

        for name in self._order:
            meta = self.collections[name]
            if meta.type != "view":
                coll = self._db.get_collection(meta.data_collection)
                with translated(f"reading {self._db.name}.{meta.data_collection}"):
                    for batch in coll.find_raw_batches({}, batch_size=LIVE_BATCH_DOCUMENTS):
                        if batch:
                            yield name, split_raw_batch(batch)
            yield name, None


def open_backup(
    ctx: EngineContext, tenant: Tenant, entry: BackupEntry, stack: ExitStack
) -> ArchiveSnapshot:
    """One of the tenant's backups, opened for streaming; closed with ``stack``.

    ``entry`` comes from the tenant's own listing (``operations.describe_backup`` or
    ``list_backups``), so the file is in this tenant's folder. Refuses what a restore
    refuses: a file whose header names another file or tenant, a key that cannot read it,
    plain gzip under an encrypted name; a damaged file fails when read. Reads the archive's
    prelude (its collections) before returning.
    """
    with named_errors(entry.file):
        stored = stack.enter_context(ctx.folder(tenant).open(entry.file))
        plain = open_plaintext(
            stored, ctx.settings.keyring, tenant.id, name=entry.file, encrypted=entry.encrypted
        )
        archive = stack.enter_context(open_gzip_reader(plain))
        return ArchiveSnapshot(archive, label=entry.file)
