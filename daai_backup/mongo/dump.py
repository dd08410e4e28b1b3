"""Snapshot reader: one tenant database -> an uncompressed mongodump archive stream.

Every collection is read in one snapshot session when the server supports it, so the
archive is one point in time. Documents flow as raw BSON batches (``find_raw_batches``)
straight into the sink: nothing is decoded and no more than one server batch (at most
16 MiB) is held at a time. Collections are read one after another; see
``docs/decisions.md`` for why not in parallel.

Every batch's reply says the cluster time it answered at (the session's ``operation_time``
after the batch: a snapshot read's reply carries its ``atClusterTime`` as ``operationTime``).
The dump checks each against the snapshot's time: a server that answers a later read at a
later time (SecantusDB does, under concurrent writes) tears the snapshot, and such a dump is
never labelled ``snapshot`` (``DumpResult.torn``; the range of times in ``read_times``). So
does a dump that outlives ``snapshot_window`` seconds: the next collection is read in a fresh
snapshot session rather than one the server may have discarded (``SnapshotTooOld``). A torn
dump is made consistent by the caller with the change events of its whole read range
(``mongo/backup_changes.py``), the way ``mongodump --oplog`` makes a dump consistent.

A snapshot covers documents, not the catalog: the collections are listed before the reads
and again after. A restore that started swapping meanwhile, or by default any difference,
raises ``SnapshotChanged`` before the archive's last EOF block, so the partial archive never
reads as complete; with ``on_catalog_change="record"`` a difference is recorded in the result
instead and the dump completes, ``best-effort``.
"""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as _pkg_metadata
from typing import Any, BinaryIO, Literal

from bson.timestamp import Timestamp
from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from daai_backup.errors import DatabaseError, SnapshotChanged, SnapshotTooOld
from daai_backup.mongo.archive_format import ArchiveHeader, ArchiveWriter, CollectionMetadata
from daai_backup.mongo.crc64 import Crc64
from daai_backup.mongo.journal import pending_swap
from daai_backup.mongo.listing import (
    CatalogChange,
    catalog_diff,
    describe_changes,
    list_metadata,
)
from daai_backup.mongo.namespaces import check_collection_name
from daai_backup.mongo.translate import SNAPSHOT_TOO_OLD, translated
from daai_backup.repository.manifest import options_digest

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
    kind: str = "collection"  # "collection", "view" or "timeseries" (``CollectionMetadata.kind``)
    indexes: tuple[str, ...] = ()  # index names, as the dump listed them
    options_digest: str = ""  # ``repository.manifest.options_digest`` of its options


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
    """The outcome of :func:`dump_database`.

    ``catalog_changes``: the collections whose catalog entry changed while they were read,
    recorded with ``on_catalog_change="record"`` (the archive holds each as first listed,
    and ``consistency`` is then "best-effort"); always empty with "raise".

    ``cluster_time``: ``(t, i)`` of the cluster time the snapshot read at (the server's
    ``atClusterTime``, fixed by the first read), when the dump read in a snapshot session
    that read anything; None otherwise (best-effort, or no collection to read).
    ``plain_bytes``: the bytes of the uncompressed archive written to the sink.

    ``read_times``: the earliest and latest cluster time any read answered at (None when
    nothing was read in a session). ``torn``: the reads did not all answer at the snapshot's
    time (or the snapshot was renewed after ``snapshot_window``): ``consistency`` is then
    "best-effort" and ``cluster_time`` None, whatever the server claimed.
    """

    consistency: Literal["snapshot", "best-effort"]
    server_version: str
    collections: list[CollectionStats]
    total_documents: int
    total_bytes: int
    started_at: datetime
    finished_at: datetime
    catalog_changes: list[CatalogChange] = field(default_factory=list)
    cluster_time: tuple[int, int] | None = None
    plain_bytes: int = 0
    read_times: tuple[tuple[int, int], tuple[int, int]] | None = None
    torn: bool = False


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

    Every batch's answer time is checked against the snapshot's (``torn``); a session older
    than ``window`` seconds is replaced by a fresh one before the next collection (also
    ``torn``: the dump then spans two snapshots).
    """

    def __init__(self, client: MongoClient[Any], window: float | None = None) -> None:
        self._client = client
        self._window = window
        self.session: ClientSession | None = None
        self._opened = 0.0
        self._open()
        self.consistency: Literal["snapshot", "best-effort"] = (
            "snapshot" if self.session else "best-effort"
        )
        self._fixed = False
        self.cluster_time: tuple[int, int] | None = None
        self.torn = False
        self.earliest: tuple[int, int] | None = None
        self.latest: tuple[int, int] | None = None

    def _open(self) -> None:
        try:
            self.session = self._client.start_session(snapshot=True)
        except PyMongoError:
            self.session = None
        self._opened = time.monotonic()

    def renew_if_old(self) -> None:
        """Before a collection: a fresh snapshot session when this one outlived the window."""
        if self.session is None or not self._fixed or self._window is None:
            return
        if time.monotonic() - self._opened < self._window:
            return
        self.session.end_session()
        self._open()
        self._fixed = False
        self.torn = True

    def _answered(self) -> None:
        """Record the cluster time the last reply answered at; mark a read off the snapshot."""
        at = _ts_pair(self.session.operation_time if self.session else None)
        if at is None:
            return
        self.earliest = at if self.earliest is None else min(self.earliest, at)
        self.latest = at if self.latest is None else max(self.latest, at)
        fixed = _read_time(self.session)
        if fixed is not None and at != fixed:
            self.torn = True

    def _checked(self, batches: Iterator[bytes]) -> Iterator[bytes]:
        for batch in batches:
            self._answered()
            yield batch

    def batches(self, coll: Collection[Any]) -> Iterator[bytes]:
        batches: Iterator[bytes] = iter(
            coll.find_raw_batches({}, session=self.session, batch_size=BATCH_DOCUMENTS)
        )
        if self.session is None:
            return batches
        if self._fixed:
            return self._checked(batches)
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
        fixed = _read_time(self.session)
        if self.cluster_time is None:
            self.cluster_time = fixed
        elif fixed is not None and fixed != self.cluster_time:
            self.torn = True  # a renewed session reads at another time
        if self.session is not None:
            self._answered()
            batches = self._checked(batches)
        return batches if first is None else itertools.chain([first], batches)

    def close(self) -> None:
        if self.session is not None:
            self.session.end_session()
            self.session = None


def _ts_pair(at: object) -> tuple[int, int] | None:
    return (at.time, at.inc) if isinstance(at, Timestamp) else None


def _read_time(session: ClientSession | None) -> tuple[int, int] | None:
    """The cluster time a snapshot session reads at, once its first read fixed it.

    pymongo keeps the server's ``atClusterTime`` of the first read of a snapshot session in
    ``_snapshot_time`` (and every later read of the session sends it back); it is also the
    session's ``operation_time`` right after that read. Checked against SecantusDB:
    both hold the same ``Timestamp``, None before the first read.
    """
    if session is None:
        return None
    at = getattr(session, "_snapshot_time", None) or session.operation_time
    if isinstance(at, Timestamp):
        return (at.time, at.inc)
    return None


def _refuse_torn(db: Database[Any]) -> None:
    with translated(f"checking {db.name!r} for an interrupted restore"):
        interrupted = pending_swap(db) is not None
    if interrupted:
        raise DatabaseError(
            f"a restore of database {db.name!r} was interrupted while swapping collections "
            "in; run the same restore again to finish it, then back up"
        )


def _changes_since(
    db: Database[Any], listed: Sequence[CollectionMetadata]
) -> tuple[list[CatalogChange], bool]:
    """How the catalog moved since ``listed`` was taken, and whether a swap started."""
    changes = catalog_diff(listed, list_metadata(db))
    with translated(f"checking {db.name!r} for an interrupted restore"):
        swapping = pending_swap(db) is not None
    return changes, swapping


def _snapshot_changed(
    database: str, changes: list[CatalogChange], swapping: bool
) -> SnapshotChanged:
    phrases = describe_changes(changes)
    if swapping:
        phrases.append("a restore started swapping collections in")
    return SnapshotChanged(
        f"the collections of database {database!r} changed while it was being backed up "
        f"({'; '.join(phrases)}); the backup is retried from the start"
    )


def _check_catalog(
    db: Database[Any],
    listed: Sequence[CollectionMetadata],
    on_catalog_change: Literal["raise", "record"],
) -> list[CatalogChange]:
    """After the reads: raise ``SnapshotChanged`` for a swap that started, and for any change
    unless recording; the changes recorded otherwise."""
    changes, swapping = _changes_since(db, listed)
    if swapping or (changes and on_catalog_change == "raise"):
        raise _snapshot_changed(db.name, changes, swapping)
    return changes


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
    on_catalog_change: Literal["raise", "record"] = "raise",
    snapshot_window: float | None = None,
) -> DumpResult:
    """Write the uncompressed mongodump archive of every collection and view of ``database``.

    ``on_catalog_change`` says what a collection created, dropped, renamed or altered during
    the dump (its uuid, options or indexes: an app refreshing a collection with ``$out``
    changes its uuid every time) does: "raise" (the default) raises ``SnapshotChanged``,
    transient, so a retry takes a fresh listing; "record" completes the dump anyway, as
    mongodump would, with ``consistency="best-effort"`` and the changes in
    ``DumpResult.catalog_changes`` (for a caller's last attempt, so such an app cannot
    prevent every backup). Either way a restore that starts swapping during the dump, and a
    read that fails while the catalog changed, raise ``SnapshotChanged``.

    Raises ``TransientDatabaseError`` when the server cannot be reached, ``SnapshotTooOld``
    when the snapshot outlived the server's history window, ``SnapshotChanged`` (transient)
    as above, and ``DatabaseError`` otherwise: also, before writing anything, for a
    collection name a restore would refuse, and when a restore of ``database`` was
    interrupted mid-swap (its state is torn). A restore that is only staged is no obstacle:
    staging is never dumped.

    ``snapshot_window``: seconds after which the next collection is read in a fresh snapshot
    session (keep it below the server's ``minSnapshotHistoryWindowInSeconds``); the dump is
    then ``torn`` (see the module docstring). None: one session throughout.
    """
    if on_catalog_change not in ("raise", "record"):
        raise ValueError(
            f"on_catalog_change must be 'raise' or 'record', not {on_catalog_change!r}"
        )
    started = datetime.now(UTC)
    version = server_version(client)
    db = client.get_database(database)
    _refuse_torn(db)
    metas = list_metadata(db)
    for meta in metas:
        check_collection_name(database, meta.collection, timeseries=meta.type == "timeseries")
    reads = _SnapshotReads(client, snapshot_window)
    writer = ArchiveWriter(sink)
    writer.write_prelude(ArchiveHeader(server_version=version, tool_version=tool_version()), metas)
    stats: list[CollectionStats] = []
    recorded: list[CatalogChange] = []
    tally = _Tally(len(metas), progress)
    try:
        for done, meta in enumerate(metas):
            tally.start(meta.data_collection, done)
            if meta.type != "view":
                reads.renew_if_old()
            try:
                crc = _write_data(db, meta, reads, writer, tally.add)
            except DatabaseError as exc:
                # A read that failed because its collection went away is a changed catalog.
                if exc.transient or isinstance(exc, SnapshotTooOld):
                    raise
                changes, swapping = _changes_since(db, metas)
                if changes or swapping:
                    raise _snapshot_changed(database, changes, swapping) from exc
                raise
            # Checked before the last EOF block, so a partial archive reads as truncated.
            if done == len(metas) - 1:
                recorded = _check_catalog(db, metas, on_catalog_change)
            writer.write_eof(database, meta.data_collection, crc.value)
            stats.append(
                CollectionStats(
                    meta.collection,
                    meta.type,
                    tally.documents,
                    tally.bytes,
                    crc.signed,
                    kind=meta.kind,
                    indexes=meta.index_names,
                    options_digest=options_digest(meta.options),
                )
            )
        if not metas:
            recorded = _check_catalog(db, metas, on_catalog_change)
    finally:
        reads.close()
    snapshot = reads.consistency == "snapshot" and not reads.torn and not recorded
    read_times = (
        (reads.earliest, reads.latest)
        if reads.earliest is not None and reads.latest is not None
        else None
    )
    return DumpResult(
        consistency="snapshot" if snapshot else "best-effort",
        server_version=version,
        collections=stats,
        total_documents=tally.total_documents,
        total_bytes=tally.total_bytes,
        started_at=started,
        finished_at=datetime.now(UTC),
        catalog_changes=recorded,
        cluster_time=reads.cluster_time if snapshot else None,
        plain_bytes=writer.bytes_written,
        read_times=read_times,
        torn=reads.torn,
    )
