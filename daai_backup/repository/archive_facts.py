"""What a backup holds, as manifest facts: from the dump that wrote it, or from its archive.

Both sources give the same :class:`~daai_backup.repository.manifest.NamespaceFacts` for the
same archive (namespaces in name order, index names in the archive's order, the options
digest of the options as the archive stores them), which is what lets ``verify`` hold a
stored manifest against the archive it describes (:func:`differences`).

Reading an archive streams it once (:class:`FactsCollector` is fed the reader's events):
memory is one batch of documents plus one small record per namespace, whatever the size.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, cast

from daai_backup.errors import ArchiveCorrupt, NotAnArchive
from daai_backup.format.compression import open_gzip_reader
from daai_backup.format.dbk1 import GZIP_MAGIC
from daai_backup.format.dbk1 import MAGIC as DBK1_MAGIC
from daai_backup.mongo.archive_format import (
    ArchiveEvent,
    ArchiveHeader,
    ArchiveReader,
    CollectionMetadata,
    NamespaceEnd,
)
from daai_backup.repository.manifest import Kind, Manifest, NamespaceFacts, options_digest
from daai_backup.streams import CountingReader

if TYPE_CHECKING:
    from daai_backup.mongo.dump import DumpResult


_KINDS: dict[str, Kind] = {"view": "view", "timeseries": "timeseries"}


def facts_from_dump(dump: DumpResult) -> tuple[NamespaceFacts, ...]:
    """The namespaces of a dump, as its archive holds them."""
    return tuple(
        sorted(
            (
                NamespaceFacts(
                    name=c.name,
                    kind=_KINDS.get(c.kind, "collection"),
                    documents=c.documents,
                    data_bytes=c.bytes,
                    indexes=c.indexes,
                    options_digest=c.options_digest,
                    crc64=c.crc,
                )
                for c in dump.collections
            ),
            key=lambda n: n.name,
        )
    )


@dataclass(frozen=True)
class ArchiveFacts:
    """What one read of an uncompressed mongodump archive found."""

    server_version: str
    databases: frozenset[str]
    namespaces: tuple[NamespaceFacts, ...]
    plain_bytes: int

    @property
    def documents(self) -> int:
        return sum(n.documents for n in self.namespaces)

    @property
    def data_bytes(self) -> int:
        return sum(n.data_bytes for n in self.namespaces)


class FactsCollector:
    """Fed every event of one archive in order; :meth:`facts` once the archive ended."""

    def __init__(self) -> None:
        self.server_version = ""
        self._metas: list[CollectionMetadata] = []
        self._ends: dict[tuple[str, str], NamespaceEnd] = {}

    def feed(self, event: ArchiveEvent) -> None:
        if isinstance(event, ArchiveHeader):
            self.server_version = event.server_version
        elif isinstance(event, CollectionMetadata):
            self._metas.append(event)
        elif isinstance(event, NamespaceEnd):
            self._ends[(event.db, event.collection)] = event

    def facts(self, plain_bytes: int) -> ArchiveFacts:
        namespaces: dict[str, NamespaceFacts] = {}
        described: set[tuple[str, str]] = set()
        for meta in self._metas:
            end = self._ends.get((meta.db, meta.data_collection))
            described.add((meta.db, meta.data_collection))
            namespaces[meta.collection] = NamespaceFacts(
                name=meta.collection,
                kind=meta.kind,
                documents=end.documents if end else 0,
                data_bytes=end.nbytes if end else 0,
                indexes=meta.index_names,
                options_digest=options_digest(meta.options),
                crc64=end.crc if end else 0,
            )
        for (db, collection), end in self._ends.items():
            if (db, collection) not in described:  # data without metadata: a bare collection
                namespaces[collection] = NamespaceFacts(
                    collection,
                    "collection",
                    end.documents,
                    end.nbytes,
                    (),
                    options_digest({}),
                    end.crc,
                )
        return ArchiveFacts(
            server_version=self.server_version,
            databases=frozenset({m.db for m in self._metas} | {db for db, _ in self._ends}),
            namespaces=tuple(namespaces[name] for name in sorted(namespaces)),
            plain_bytes=plain_bytes,
        )


def read_facts(plain: BinaryIO) -> ArchiveFacts:
    """Read an uncompressed archive to its end (every CRC checked) and return its facts.

    Raises ``ArchiveCorrupt`` for anything that is not a complete, valid archive.
    """
    counted = CountingReader(plain)
    reader = ArchiveReader(counted)  # type: ignore[arg-type]
    collector = FactsCollector()
    collector.feed(reader.header)
    for meta in reader.collections:
        collector.feed(meta)
    for event in reader:
        collector.feed(event)
    return collector.facts(counted.count)


def differences(stored: Manifest, actual: Manifest, *, limit: int = 3) -> list[str]:
    """How ``stored`` (a manifest read from storage) disagrees with ``actual`` (built from
    the archive it describes), one short phrase each, at most ``limit`` plus a count.

    Only what the archive itself shows is compared: the namespaces and their facts, the
    totals, the plain and stored sizes and the key fingerprint; not who took it or why.
    """
    found: list[str] = []
    for what in ("stored_bytes", "plain_bytes", "key_fingerprint"):
        mine, theirs = getattr(stored, what), getattr(actual, what)
        if mine != theirs:
            found.append(f"{what} {mine} in the manifest, {theirs} in the backup")
    names = {n.name for n in stored.namespaces} | {n.name for n in actual.namespaces}
    for name in sorted(names):
        a, b = stored.namespace(name), actual.namespace(name)
        if a is None:
            found.append(f"{name!r} is in the backup but not in the manifest")
        elif b is None:
            found.append(f"{name!r} is in the manifest but not in the backup")
        elif a != b:
            fields = [f for f in _FIELDS if getattr(a, f) != getattr(b, f)]
            found.append(f"{name!r} differs ({', '.join(fields)})")
    if not found:
        for what in ("documents", "data_bytes"):
            if getattr(stored, what) != getattr(actual, what):
                found.append(f"total {what} differs")
    if len(found) > limit:
        found = [*found[:limit], f"and {len(found) - limit} more"]
    return found


_FIELDS: Iterable[str] = ("kind", "documents", "data_bytes", "crc64", "indexes", "options_digest")


def check_one_database(facts: ArchiveFacts, what: str) -> None:
    """Refuse an archive of several databases (a tenant backup holds one), or of none: an
    archive without a single collection or view would, restored, empty the workspace."""
    if not facts.namespaces:
        raise ArchiveCorrupt(
            f"{what} holds no collection or view: nothing to import (restored, it would "
            "empty the workspace); check that the dump named the right database"
        )
    if len(facts.databases) > 1:
        raise ArchiveCorrupt(
            f"{what} holds several databases ({', '.join(sorted(facts.databases))}): dump one "
            "database (`mongodump --db NAME --archive`) and import that"
        )


class _Prefixed(io.RawIOBase):
    """``head`` (bytes already read from ``source``), then the rest of ``source``."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._source.read(len(view))
        view[: len(data)] = data
        return len(data)


class TeeReader(io.RawIOBase):
    """Reads ``source`` and writes every byte read to ``copy``: one pass, two consumers."""

    def __init__(self, source: BinaryIO, copy: BinaryIO) -> None:
        super().__init__()
        self._source = source
        self._copy = copy

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        if data:
            self._copy.write(data)
        return len(data)


def open_mongodump(source: BinaryIO, what: str) -> BinaryIO:
    """The uncompressed archive bytes of a file ``mongodump --archive`` wrote, gzipped or not.

    Detected by content: gzip (``1f 8b``) is decompressed, anything else is passed on for
    the archive reader to check its magic. A daai-backup file (``DBK1``) or an empty file is
    refused with ``NotAnArchive`` naming ``what``.
    """
    head = source.read(4)
    if not head:
        raise NotAnArchive(f"{what} is empty: it is not a mongodump archive")
    if head == DBK1_MAGIC:
        raise NotAnArchive(
            f"{what} is an encrypted daai-backup file, not a mongodump archive: it is already "
            "a backup (`daai-backup decrypt` turns it into one, for another tenant)"
        )
    rest = cast(BinaryIO, io.BufferedReader(_Prefixed(head, source)))
    if head[:2] == GZIP_MAGIC:
        return open_gzip_reader(rest)
    return rest
