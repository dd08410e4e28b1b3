"""Snapshot reader: one tenant database -> an uncompressed mongodump archive stream.

Every collection is read in one snapshot session when the server supports it, so the
archive is one point in time. Documents flow as raw BSON batches (``find_raw_batches``)
straight into the sink: nothing is decoded and no more than one server batch (at most
16 MiB) is held at a time. Collections are read one after another; see
``docs/decisions.md`` for why not in parallel.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as _pkg_metadata
from typing import Any, BinaryIO, Literal

from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from daai_backup.mongo.archive_format import ArchiveHeader, ArchiveWriter, CollectionMetadata
from daai_backup.mongo.crc64 import Crc64
from daai_backup.mongo.translate import SNAPSHOT_TOO_OLD, translated

#: Prefix of the restore's staging collections and journal; never backed up.
RESERVED_PREFIX = "__daai_restore."

_LENGTH = struct.Struct("<i")
#: Aim for server batches of about this size (the server caps them at 16 MiB): smaller
#: batches keep the process's peak memory flat as databases grow (bench/RESULTS.md).
BATCH_TARGET_BYTES = 4 * 1024 * 1024


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
    """The catalog of ``db`` as archive metadata, in name order, without system namespaces."""
    out: list[CollectionMetadata] = []
    with translated(f"listing the collections of {db.name!r}"):
        infos = sorted(db.list_collections(), key=lambda i: str(i["name"]))
        for info in infos:
            name = str(info["name"])
            if name.startswith(("system.", RESERVED_PREFIX)):
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


def _batch_size(db: Database[Any], name: str) -> int:
    """Documents per batch for about BATCH_TARGET_BYTES, from the average document size."""
    try:
        average = int(db.command("collStats", name).get("avgObjSize") or 0)
    except OperationFailure:
        average = 0  # collStats not allowed or not supported: let the server choose
    if average <= 0:
        return 0
    return max(1, min(100_000, BATCH_TARGET_BYTES // average))


def _open_snapshot(
    client: MongoClient[Any], db: Database[Any], metas: list[CollectionMetadata]
) -> ClientSession | None:
    """A snapshot session whose point in time is fixed, or None if the server refuses one."""
    try:
        session = client.start_session(snapshot=True)
    except PyMongoError:
        return None
    first = next((m for m in metas if m.type != "view"), None)
    if first is None:
        return session
    try:
        # The first read fixes the snapshot's point in time for every later read.
        for _ in db.get_collection(first.data_collection).find_raw_batches(
            {}, session=session, limit=1
        ):
            break
    except ConnectionFailure:
        session.end_session()
        raise
    except OperationFailure as exc:
        session.end_session()
        if exc.code == SNAPSHOT_TOO_OLD:
            raise
        return None
    return session


def dump_database(
    client: MongoClient[Any],
    database: str,
    sink: BinaryIO,
    *,
    progress: Callable[[DumpProgress], None] | None = None,
) -> DumpResult:
    """Write the uncompressed mongodump archive of every collection and view of ``database``.

    Raises ``TransientDatabaseError`` when the server cannot be reached, ``SnapshotTooOld``
    when the snapshot outlived the server's history window, ``DatabaseError`` otherwise.
    """
    started = datetime.now(UTC)
    version = server_version(client)
    db = client.get_database(database)
    metas = list_metadata(db)
    with translated(f"starting a snapshot read of {database!r}"):
        session = _open_snapshot(client, db, metas)
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
                    cursor = db.get_collection(name).find_raw_batches(
                        {}, session=session, batch_size=_batch_size(db, name)
                    )
                    for batch in cursor:
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
