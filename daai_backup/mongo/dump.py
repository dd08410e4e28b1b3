"""Snapshot reader: one tenant database -> an uncompressed mongodump archive stream.

Every collection is read in one snapshot session when the server supports it, so the
archive is one point in time. Documents flow as raw BSON batches (``find_raw_batches``)
straight into the sink: nothing is decoded and no more than one server batch (at most
16 MiB) is held at a time. Collections are read one after another; see
``docs/decisions.md`` for why not in parallel.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as _pkg_metadata
from typing import Any, BinaryIO, Literal

from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from daai_backup.errors import DatabaseError
from daai_backup.mongo.archive_format import ArchiveHeader, ArchiveWriter, CollectionMetadata
from daai_backup.mongo.crc64 import Crc64
from daai_backup.mongo.journal import pending_swap
from daai_backup.mongo.namespaces import check_collection_name, is_backed_up
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


def _kind(info: Mapping[str, Any]) -> Literal["collection", "view", "timeseries"]:
    kind = info.get("type", "collection")
    if kind == "view":
        return "view"
    if kind == "timeseries":
        return "timeseries"
    return "collection"


def list_metadata(db: Database[Any]) -> list[CollectionMetadata]:
    """The catalog of ``db`` as archive metadata, in name order, only what is backed up."""
    out: list[CollectionMetadata] = []
    with translated(f"listing the collections of {db.name!r}"):
        infos = sorted(db.list_collections(), key=lambda i: str(i["name"]))
        for info in infos:
            name = str(info["name"])
            if not is_backed_up(name):
                continue
            kind = _kind(info)
            indexes = [] if kind == "view" else list(db.get_collection(name).list_indexes())
            raw_uuid = (info.get("info") or {}).get("uuid")
            uuid = bytes(raw_uuid).hex() if isinstance(raw_uuid, bytes) else None
            out.append(
                CollectionMetadata(
                    db=db.name,
                    collection=name,
                    type=kind,
                    options=info.get("options") or {},
                    indexes=indexes,
                    uuid=uuid,
                )
            )
    return out


def _count_documents(batch: bytes) -> int:
    """How many concatenated BSON documents a raw batch holds."""
    count = pos = 0
    end = len(batch)
    unpack = _LENGTH.unpack_from
    while pos < end:
        pos += unpack(batch, pos)[0]
        count += 1
    return count


def _start_snapshot(client: MongoClient[Any]) -> ClientSession | None:
    try:
        return client.start_session(snapshot=True)
    except PyMongoError:
        return None


def dump_database(
    client: MongoClient[Any],
    database: str,
    sink: BinaryIO,
    *,
    progress: Callable[[DumpProgress], None] | None = None,
) -> DumpResult:
    """Write the uncompressed mongodump archive of every collection and view of ``database``.

    Raises ``TransientDatabaseError`` when the server cannot be reached, ``SnapshotTooOld``
    when the snapshot outlived the server's history window, ``DatabaseError`` otherwise:
    also, before writing anything, for a collection name a restore would refuse, and when a
    restore of ``database`` was interrupted mid-swap (its state is torn).
    """
    started = datetime.now(UTC)
    version = server_version(client)
    db = client.get_database(database)
    with translated(f"checking {database!r} for an interrupted restore"):
        interrupted = pending_swap(db) is not None
    if interrupted:
        raise DatabaseError(
            f"a restore of database {database!r} was interrupted while swapping collections "
            "in; run the same restore again to finish it, then back up"
        )
    metas = list_metadata(db)
    for meta in metas:
        check_collection_name(database, meta.collection, timeseries=meta.type == "timeseries")
    session = _start_snapshot(client)
    snapshot_fixed = False
    consistency: Literal["snapshot", "best-effort"] = "snapshot" if session else "best-effort"
    writer = ArchiveWriter(sink)
    writer.write_prelude(ArchiveHeader(server_version=version, tool_version=tool_version()), metas)
    stats: list[CollectionStats] = []
    total_docs = total_bytes = 0
    try:
        for done, meta in enumerate(metas):
            name = meta.data_collection
            crc = Crc64()
            docs = nbytes = 0
            wrote_segment = False
            if meta.type != "view":
                with translated(f"reading {database}.{name}"):
                    coll = db.get_collection(name)
                    batches = iter(
                        coll.find_raw_batches({}, session=session, batch_size=BATCH_DOCUMENTS)
                    )
                    if session is not None and not snapshot_fixed:
                        # The first read fixes the snapshot's point in time for all later
                        # ones; a server that refuses snapshot reads refuses this one.
                        try:
                            first = next(batches, None)
                        except OperationFailure as exc:
                            if exc.code == SNAPSHOT_TOO_OLD:
                                raise
                            session.end_session()
                            session, consistency = None, "best-effort"
                            batches = iter(coll.find_raw_batches({}, batch_size=BATCH_DOCUMENTS))
                            first = next(batches, None)
                        snapshot_fixed = True
                        if first is not None:
                            batches = itertools.chain([first], batches)
                    for batch in batches:
                        if not batch:
                            continue
                        writer.write_segment(database, name, batch)
                        wrote_segment = True
                        crc.update(batch)
                        n = _count_documents(batch)
                        docs += n
                        nbytes += len(batch)
                        total_docs += n
                        total_bytes += len(batch)
                        if progress:
                            progress(
                                DumpProgress(
                                    name, docs, nbytes, total_docs, total_bytes, done, len(metas)
                                )
                            )
            if not wrote_segment:
                writer.write_segment(database, name, b"")
            writer.write_eof(database, name, crc.value)
            stats.append(CollectionStats(meta.collection, meta.type, docs, nbytes, crc.signed))
    finally:
        if session is not None:
            session.end_session()
    return DumpResult(
        consistency=consistency,
        server_version=version,
        collections=stats,
        total_documents=total_docs,
        total_bytes=total_bytes,
        started_at=started,
        finished_at=datetime.now(UTC),
    )
