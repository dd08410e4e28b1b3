"""The mongodump archive format: a framing writer and a streaming, validating reader.

The bytes are exactly what ``mongodump --archive`` writes (see
``shared/reference/mongodump-archive.md``)::

    magic  Header  CollectionMetadata*  TERM  ( NamespaceHeader  doc*  TERM )*

- ``magic`` is the little-endian uint32 ``0x8199e26d``; ``TERM`` is the int32 ``-1``.
- A namespace's data comes in segments (``{db, collection, EOF: false, CRC: 0}`` docs TERM),
  which may interleave with other namespaces' segments, and ends with an EOF block
  (``{db, collection, EOF: true, CRC: <int64>}`` TERM) carrying the CRC-64/XZ of the
  concatenated raw bytes of every document of that namespace.

Documents pass through as raw BSON bytes: neither side decodes them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

import bson
from bson import json_util
from bson.int64 import Int64
from bson.json_util import JSONMode, JSONOptions

from daai_backup.errors import ArchiveCorrupt
from daai_backup.mongo.crc64 import Crc64, to_signed

MAGIC = 0x8199E26D
MAGIC_BYTES = struct.pack("<I", MAGIC)
TERMINATOR = -1
TERMINATOR_BYTES = struct.pack("<i", TERMINATOR)
MIN_DOCUMENT_SIZE = 5
MAX_DOCUMENT_SIZE = 16 * 1024 * 1024
ARCHIVE_VERSION = "0.1"

#: Canonical Extended JSON v2, the encoding of a metadata string.
CANONICAL_JSON = JSONOptions(json_mode=JSONMode.CANONICAL)

CollectionType = Literal["collection", "view", "timeseries"]

_INT32 = struct.Struct("<i")
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveHeader:
    """The first document of an archive."""

    server_version: str
    tool_version: str
    concurrent_collections: int = 1
    version: str = ARCHIVE_VERSION


@dataclass(frozen=True)
class CollectionMetadata:
    """One collection, view or time-series collection described in the archive's prelude."""

    db: str
    collection: str
    type: CollectionType = "collection"
    options: Mapping[str, Any] = field(default_factory=dict)
    indexes: Sequence[Mapping[str, Any]] = ()
    uuid: str | None = None
    size: int = 0

    @property
    def data_collection(self) -> str:
        """The namespace that carries the documents (buckets for time-series)."""
        if self.type == "timeseries":
            return f"system.buckets.{self.collection}"
        return self.collection

    @property
    def kind(self) -> CollectionType:
        """What it is: also "timeseries" for a time-series collection a server lists as a
        collection with ``timeseries`` options (SecantusDB does)."""
        if self.type == "collection" and "timeseries" in self.options:
            return "timeseries"
        return self.type

    @property
    def index_names(self) -> tuple[str, ...]:
        """The names of its indexes, in the archive's order."""
        return tuple(str(index.get("name", "")) for index in self.indexes)

    def metadata_json(self) -> str:
        """The ``metadata`` string: canonical Extended JSON v2, keys in mongodump's order."""
        meta: dict[str, Any] = {}
        if self.options:
            meta["options"] = self.options
        meta["indexes"] = list(self.indexes)
        if self.uuid:
            meta["uuid"] = self.uuid
        meta["collectionName"] = self.collection
        meta["type"] = self.type
        return json_util.dumps(meta, json_options=CANONICAL_JSON, separators=(",", ":"))

    def to_document(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "collection": self.collection,
            "metadata": self.metadata_json(),
            "size": self.size,
            "type": self.type,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> CollectionMetadata:
        try:
            db, collection, text = doc["db"], doc["collection"], doc["metadata"]
            if not (isinstance(db, str) and isinstance(collection, str) and isinstance(text, str)):
                raise TypeError("db, collection and metadata must be strings")
            meta = json_util.loads(text, json_options=CANONICAL_JSON) if text else {}
            raw_kind = doc.get("type") or meta.get("type") or "collection"
            kind: CollectionType
            if raw_kind == "view":
                kind = "view"
            elif raw_kind == "timeseries":
                kind = "timeseries"
            elif raw_kind == "collection":
                kind = "collection"
            else:
                raise ValueError(f"unknown collection type {raw_kind!r}")
            options = meta.get("options") or {}
            indexes = meta.get("indexes") or []
            uuid = meta.get("uuid")
            size = doc.get("size", 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveCorrupt(
                f"archive has an unreadable collection metadata entry: {exc}"
            ) from exc
        return cls(
            db=db,
            collection=collection,
            type=kind,
            options=options,
            indexes=indexes,
            uuid=uuid if isinstance(uuid, str) else None,
            size=int(size) if isinstance(size, int) else 0,
        )


@dataclass(frozen=True)
class DocumentBatch:
    """Consecutive raw documents of one namespace, in archive order."""

    db: str
    collection: str
    documents: list[bytes]
    nbytes: int


@dataclass(frozen=True)
class NamespaceEnd:
    """A namespace's EOF block, after its CRC was checked against the documents read."""

    db: str
    collection: str
    documents: int
    nbytes: int
    crc: int  # the stored signed int64


ArchiveEvent = ArchiveHeader | CollectionMetadata | DocumentBatch | NamespaceEnd


class ArchiveWriter:
    """Writes the framing of an archive around raw BSON supplied by the caller.

    The writer never buffers: each call writes straight to ``sink``.
    """

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self.bytes_written = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._sink.write(data)
        self.bytes_written += len(data)

    def write_prelude(
        self, header: ArchiveHeader, collections: Sequence[CollectionMetadata]
    ) -> None:
        """Magic, header document, one metadata document per collection, terminator."""
        self._write(MAGIC_BYTES)
        self._write(
            bson.encode(
                {
                    "concurrent_collections": header.concurrent_collections,
                    "version": header.version,
                    "server_version": header.server_version,
                    "tool_version": header.tool_version,
                }
            )
        )
        for meta in collections:
            self._write(bson.encode(meta.to_document()))
        self._write(TERMINATOR_BYTES)

    def write_segment(self, db: str, collection: str, documents: bytes | memoryview) -> None:
        """One data segment: namespace header, the concatenated raw documents, terminator."""
        self._write(
            bson.encode({"db": db, "collection": collection, "EOF": False, "CRC": Int64(0)})
        )
        if documents:
            self._write(documents)
        self._write(TERMINATOR_BYTES)

    def write_eof(self, db: str, collection: str, crc: int) -> None:
        """The EOF block of a namespace; ``crc`` is the unsigned CRC-64/XZ of its documents."""
        self._write(
            bson.encode(
                {"db": db, "collection": collection, "EOF": True, "CRC": Int64(to_signed(crc))}
            )
        )
        self._write(TERMINATOR_BYTES)


class _Input:
    """Exact reads over a file-like, with the offset kept for error messages."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._buf = b""
        self._pos = 0
        self.offset = 0

    def _fill(self, want: int) -> bool:
        """Make ``want`` bytes available; False if the source ends first."""
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        while have < want:
            chunk = self._source.read(max(want - have, _READ_CHUNK))
            if not chunk:
                self._buf, self._pos = b"".join(parts), 0
                return False
            parts.append(chunk)
            have += len(chunk)
        self._buf, self._pos = b"".join(parts), 0
        return True

    def at_end(self) -> bool:
        return self._pos >= len(self._buf) and not self._fill(1)

    def read(self, n: int) -> bytes:
        if len(self._buf) - self._pos < n and not self._fill(n):
            raise ArchiveCorrupt(
                f"archive is truncated: it ends at byte {self.offset + len(self._buf) - self._pos}"
                f" in the middle of a {n}-byte item"
            )
        start = self._pos
        self._pos += n
        self.offset += n
        return self._buf[start : self._pos]

    def read_int32(self) -> int:
        value: int = _INT32.unpack(self.read(4))[0]
        return value


class ArchiveReader:
    """A streaming, validating parser of an uncompressed mongodump archive.

    Construction reads the prelude (magic, header, metadata up to the first terminator), so
    ``header`` and ``collections`` are available at once; iterating yields
    :class:`DocumentBatch` and :class:`NamespaceEnd` events. Every namespace's CRC is checked
    at its EOF block, and the stream must end cleanly with an EOF block for every namespace,
    otherwise :class:`ArchiveCorrupt` is raised. Memory is bounded by ``batch_bytes``.
    """

    def __init__(
        self, source: BinaryIO, *, batch_bytes: int = 8 * 1024 * 1024, batch_documents: int = 1000
    ) -> None:
        self._in = _Input(source)
        self._batch_bytes = batch_bytes
        self._batch_documents = batch_documents
        magic = self._in.read(4)
        if magic != MAGIC_BYTES:
            raise ArchiveCorrupt(
                f"not a mongodump archive: magic is {magic.hex()}, expected {MAGIC_BYTES.hex()}"
            )
        header = self._read_bson(self._read_length(allow_terminator=False), "header")
        self.header = ArchiveHeader(
            server_version=str(header.get("server_version", "")),
            tool_version=str(header.get("tool_version", "")),
            concurrent_collections=int(header.get("concurrent_collections", 1) or 1),
            version=str(header.get("version", "")),
        )
        collections: list[CollectionMetadata] = []
        while True:
            length = self._read_length(allow_terminator=True)
            if length == TERMINATOR:
                break
            collections.append(
                CollectionMetadata.from_document(self._read_bson(length, "metadata"))
            )
        self.collections = collections
        self._consumed = False

    def _read_length(self, *, allow_terminator: bool) -> int:
        at = self._in.offset
        length = self._in.read_int32()
        if length == TERMINATOR and allow_terminator:
            return length
        if not MIN_DOCUMENT_SIZE <= length <= MAX_DOCUMENT_SIZE:
            what = "an unexpected terminator" if length == TERMINATOR else f"length {length}"
            raise ArchiveCorrupt(
                f"archive is corrupt at byte {at}: {what} where a BSON document "
                f"({MIN_DOCUMENT_SIZE}..{MAX_DOCUMENT_SIZE} bytes) was expected"
            )
        return length

    def _read_document(self, length: int) -> bytes:
        at = self._in.offset - 4
        body = self._in.read(length - 4)
        if body[-1] != 0:
            raise ArchiveCorrupt(
                f"archive is corrupt at byte {at}: a document does not end in 0x00"
            )
        return _INT32.pack(length) + body

    def _read_bson(self, length: int, what: str) -> dict[str, Any]:
        raw = self._read_document(length)
        try:
            return bson.decode(raw)
        except Exception as exc:  # bson raises several types for malformed input
            raise ArchiveCorrupt(f"archive has an unreadable {what} document: {exc}") from exc

    def __iter__(self) -> Iterator[DocumentBatch | NamespaceEnd]:
        if self._consumed:
            raise RuntimeError("an ArchiveReader can be iterated only once")
        self._consumed = True
        return self._events()

    def _events(self) -> Iterator[DocumentBatch | NamespaceEnd]:
        crcs: dict[tuple[str, str], Crc64] = {}
        counts: dict[tuple[str, str], list[int]] = {}
        ended: set[tuple[str, str]] = set()
        while not self._in.at_end():
            at = self._in.offset
            length = self._in.read_int32()
            if length == TERMINATOR:
                raise ArchiveCorrupt(f"archive is corrupt at byte {at}: two terminators in a row")
            if not MIN_DOCUMENT_SIZE <= length <= MAX_DOCUMENT_SIZE:
                raise ArchiveCorrupt(
                    f"archive is corrupt at byte {at}: namespace header length {length} "
                    "is out of range"
                )
            head = self._read_bson(length, "namespace header")
            db, collection, eof = head.get("db"), head.get("collection"), head.get("EOF")
            if (
                not isinstance(db, str)
                or not isinstance(collection, str)
                or not isinstance(eof, bool)
            ):
                raise ArchiveCorrupt(
                    f"archive is corrupt at byte {at}: bad namespace header {head!r}"
                )
            ns = (db, collection)
            if ns in ended:
                raise ArchiveCorrupt(
                    f"archive is corrupt: data for {db}.{collection} after its EOF block"
                )
            crc = crcs.setdefault(ns, Crc64())
            count = counts.setdefault(ns, [0, 0])
            if eof:
                term_at = self._in.offset
                if self._in.read_int32() != TERMINATOR:
                    raise ArchiveCorrupt(
                        f"archive is corrupt at byte {term_at}: the EOF block of "
                        f"{db}.{collection} is not followed by a terminator"
                    )
                stored = head.get("CRC")
                if not isinstance(stored, int) or to_signed(stored) != crc.signed:
                    raise ArchiveCorrupt(
                        f"CRC mismatch for namespace {db}.{collection}: the archive says "
                        f"{stored}, its documents give {crc.signed}"
                    )
                ended.add(ns)
                yield NamespaceEnd(db, collection, count[0], count[1], crc.signed)
                continue
            batch: list[bytes] = []
            batch_bytes = 0
            while True:
                length = self._read_length(allow_terminator=True)
                if length == TERMINATOR:
                    break
                doc = self._read_document(length)
                crc.update(doc)
                batch.append(doc)
                batch_bytes += length
                count[0] += 1
                count[1] += length
                if batch_bytes >= self._batch_bytes or len(batch) >= self._batch_documents:
                    yield DocumentBatch(db, collection, batch, batch_bytes)
                    batch, batch_bytes = [], 0
            if batch:
                yield DocumentBatch(db, collection, batch, batch_bytes)
        expected = {(m.db, m.data_collection) for m in self.collections} | set(crcs)
        missing = sorted(f"{db}.{c}" for db, c in expected - ended)
        if missing:
            raise ArchiveCorrupt(
                f"archive is truncated: no EOF block for {', '.join(missing[:5])}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            )


def read_archive(source: BinaryIO) -> Iterator[ArchiveEvent]:
    """Every event of an archive in order: header, metadata, then batches and EOFs."""
    reader = ArchiveReader(source)
    yield reader.header
    yield from reader.collections
    yield from reader
