"""Snapshot reader: one tenant database -> an uncompressed mongodump archive stream.

Every collection is read in one snapshot session when the server supports it, so the
archive is one point in time. Documents flow as raw BSON batches (``find_raw_batches``)
straight into the sink: nothing is decoded and no more than one server batch (at most
16 MiB) is held at a time. Collections are read one after another; see
``docs/decisions.md`` for why not in parallel.

A snapshot covers documents, not the catalog: the collections are listed before the reads
and again after, and a difference (or a restore that started swapping meanwhile) raises
``SnapshotChanged`` before the archive's last EOF block, so the partial archive never reads
as complete.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as _pkg_metadata
from typing import Any, BinaryIO, Literal

from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from daai_backup.errors import DatabaseError, SnapshotChanged, SnapshotTooOld
from daai_backup.mongo.archive_format import ArchiveHeader, ArchiveWriter, CollectionMetadata
from daai_backup.mongo.crc64 import Crc64
from daai_backup.mongo.journal import pending_swap
from daai_backup.mongo.listing import catalog_changes, list_metadata
from daai_backup.mongo.namespaces import check_collection_name
from daai_backup.mongo.translate import SNAPSHOT_TOO_OLD, translated

_LENGTH = struct.Struct("<i")
#: Documents per server batch (the server also caps a batch at 16 MiB). Batches of a few MB
#: keep the process's peak memory flat as databases grow (bench/RESULTS.md); measuring the
#: average document size first (collStats, a sample) costs a scan on the test server.
BATCH_DOCUMENTS = 500


@dataclass(frozen=True)
class CollectionStats:
    """What one namespace contributed to the archive."""

    name: str
    type: str
    documents: int
    bytes: int
    crc: int  # the signed int64 written in the namespace's EOF block


@dataclass(frozen=True)
class DumpProgress:
    """Reported after every batch written."""

    collection: str
    documents: int  # of this collection so far
    bytes: int
    total_documents: int  # of the whole dump so far
    total_bytes: int
    collections_done: int
    collections_total: int


@dataclass(frozen=True)
class DumpResult:
    """The outcome of :func:`dump_database`."""

    consistency: Literal["snapshot", "best-effort"]
    server_version: str
    collections: list[CollectionStats]
    total_documents: int
    total_bytes: int
    started_at: datetime
    finished_at: datetime


def tool_version() -> str:
    try:
        return f"daai-backup {_pkg_metadata.version('daai-backup')}"
    except _pkg_metadata.PackageNotFoundError:
        return "daai-backup"


def server_version(client: MongoClient[Any]) -> str:
    """The server's ``x.y.z`` version, as ``buildInfo`` reports it."""
    with translated("asking the MongoDB server for its version"):
        info = client.admin.command("buildInfo")
    version = info.get("version")
    return version if isinstance(version, str) and version else "0.0.0"


def _count_documents(batch: bytes) -> int:
    """How many concatenated BSON documents a raw batch holds."""
    count = pos = 0
    end = len(batch)
    unpack = _LENGTH.unpack_from
    while pos < end:
        pos += unpack(batch, pos)[0]
        count += 1
    return count


class _SnapshotReads:
    """Raw batches of each collection in turn, all in one snapshot session if the server allows.

    The first read fixes the snapshot's point in time for all later ones. A server that
    refuses snapshot reads (a standalone) refuses that first one, before anything of it was
    written; the reads then go on without a session and the dump is ``best-effort``.
    """

    def __init__(self, client: MongoClient[Any]) -> None:
        self.session: ClientSession | None
        try:
            self.session = client.start_session(snapshot=True)
        except PyMongoError:
            self.session = None
        self.consistency: Literal["snapshot", "best-effort"] = (
            "snapshot" if self.session else "best-effort"
        )
        self._fixed = False

    def batches(self, coll: Collection[Any]) -> Iterator[bytes]:
        batches: Iterator[bytes] = iter(
            coll.find_raw_batches({}, session=self.session, batch_size=BATCH_DOCUMENTS)
        )
        if self.session is None or self._fixed:
            return batches
        try:
            first = next(batches, None)
        except OperationFailure as exc:
            if exc.code == SNAPSHOT_TOO_OLD:
                raise
            self.close()
            self.consistency = "best-effort"
            batches = iter(coll.find_raw_batches({}, batch_size=BATCH_DOCUMENTS))
            first = next(batches, None)
        self._fixed = True
        return batches if first is None else itertools.chain([first], batches)

    def close(self) -> None:
        if self.session is not None:
            self.session.end_session()
            self.session = None


def _refuse_torn(db: Database[Any]) -> None:
    with translated(f"checking {db.name!r} for an interrupted restore"):
        interrupted = pending_swap(db) is not None
    if interrupted:
        raise DatabaseError(
            f"a restore of database {db.name!r} was interrupted while swapping collections "
            "in; run the same restore again to finish it, then back up"
        )


def _changes_since(db: Database[Any], listed: Sequence[CollectionMetadata]) -> list[str]:
    """How the catalog moved since ``listed`` was taken, including a swap that started."""
    changes = catalog_changes(listed, list_metadata(db))
    with translated(f"checking {db.name!r} for an interrupted restore"):
        if pending_swap(db) is not None:
            changes.append("a restore started swapping collections in")
    return changes


def _snapshot_changed(database: str, changes: list[str]) -> SnapshotChanged:
    return SnapshotChanged(
        f"the collections of database {database!r} changed while it was being backed up "
        f"({'; '.join(changes)}); the backup is retried from the start"
    )


@dataclass
class _Tally:
    """Counts of the namespace being read and of the whole dump; reports progress."""

    collections_total: int
    progress: Callable[[DumpProgress], None] | None
    collection: str = ""
    collections_done: int = 0
    documents: int = 0
    bytes: int = 0
    total_documents: int = 0
    total_bytes: int = 0

    def start(self, collection: str, done: int) -> None:
        self.collection, self.collections_done = collection, done
        self.documents = self.bytes = 0

    def add(self, documents: int, nbytes: int) -> None:
        self.documents += documents
        self.bytes += nbytes
        self.total_documents += documents
        self.total_bytes += nbytes
        if self.progress:
            self.progress(
                DumpProgress(
                    self.collection,
                    self.documents,
                    self.bytes,
                    self.total_documents,
                    self.total_bytes,
                    self.collections_done,
                    self.collections_total,
                )
            )


def _write_data(
    db: Database[Any],
    meta: CollectionMetadata,
    reads: _SnapshotReads,
    writer: ArchiveWriter,
    on_batch: Callable[[int, int], None],
) -> Crc64:
    """Write one namespace's data segments (at least one, maybe empty); return their CRC."""
    name = meta.data_collection
    crc = Crc64()
    wrote_segment = False
    if meta.type != "view":
        with translated(f"reading {db.name}.{name}"):
            for batch in reads.batches(db.get_collection(name)):
                if not batch:
                    continue
                writer.write_segment(db.name, name, batch)
                wrote_segment = True
                crc.update(batch)
                on_batch(_count_documents(batch), len(batch))
    if not wrote_segment:
        writer.write_segment(db.name, name, b"")
    return crc


def dump_database(
    client: MongoClient[Any],
    database: str,
    sink: BinaryIO,
    *,
    progress: Callable[[DumpProgress], None] | None = None,
) -> DumpResult:
    """Write the uncompressed mongodump archive of every collection and view of ``database``.

    Raises ``TransientDatabaseError`` when the server cannot be reached, ``SnapshotTooOld``
    when the snapshot outlived the server's history window, ``SnapshotChanged`` (transient)
    when collections were created, dropped, renamed or altered during the dump, and
    ``DatabaseError`` otherwise: also, before writing anything, for a collection name a
    restore would refuse, and when a restore of ``database`` was interrupted mid-swap (its
    state is torn). A restore that is only staged is no obstacle: staging is never dumped.
    """
    started = datetime.now(UTC)
    version = server_version(client)
    db = client.get_database(database)
    _refuse_torn(db)
    metas = list_metadata(db)
    for meta in metas:
        check_collection_name(database, meta.collection, timeseries=meta.type == "timeseries")
    reads = _SnapshotReads(client)
    writer = ArchiveWriter(sink)
    writer.write_prelude(ArchiveHeader(server_version=version, tool_version=tool_version()), metas)
    stats: list[CollectionStats] = []
    tally = _Tally(len(metas), progress)
    try:
        for done, meta in enumerate(metas):
            tally.start(meta.data_collection, done)
            try:
                crc = _write_data(db, meta, reads, writer, tally.add)
            except DatabaseError as exc:
                # A read that failed because its collection went away is a changed catalog.
                if exc.transient or isinstance(exc, SnapshotTooOld):
                    raise
                if changes := _changes_since(db, metas):
                    raise _snapshot_changed(database, changes) from exc
                raise
            # Checked before the last EOF block, so a partial archive reads as truncated.
            if done == len(metas) - 1 and (changes := _changes_since(db, metas)):
                raise _snapshot_changed(database, changes)
            writer.write_eof(database, meta.data_collection, crc.value)
            stats.append(
                CollectionStats(
                    meta.collection, meta.type, tally.documents, tally.bytes, crc.signed
                )
            )
        if not metas and (changes := _changes_since(db, metas)):
            raise _snapshot_changed(database, changes)
    finally:
        reads.close()
    return DumpResult(
        consistency=reads.consistency,
        server_version=version,
        collections=stats,
        total_documents=tally.total_documents,
        total_bytes=tally.total_bytes,
        started_at=started,
        finished_at=datetime.now(UTC),
    )
