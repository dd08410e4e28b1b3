"""An independent builder of mongodump archive bytes, written from the reference document.

It shares no code with ``daai_backup.mongo``: its own CRC-64/XZ (bitwise, from the
polynomial), its own framing with ``struct``. Only ``bson.encode`` is borrowed, to produce
BSON documents. Tests use it to feed the reader and the restore with archives shaped like
``mongodump --archive`` output (metadata strings as mongodump writes them, interleaved
segments, EOF blocks with signed CRCs), and to make broken ones on purpose.
"""

from __future__ import annotations

import struct
from typing import Any

import bson
from bson.int64 import Int64

MAGIC = struct.pack("<I", 0x8199E26D)
TERM = struct.pack("<i", -1)
_POLY = 0xC96C5795D7870F42


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def crc64_xz(data: bytes, crc: int = 0) -> int:
    """Go's crc64.Update with the ECMA table: all-ones in, all-ones out (slow; small data)."""
    crc ^= 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def metadata_string(
    collection: str,
    *,
    indexes: str = '[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}]',
    options: str | None = None,
    uuid: str | None = "0123456789abcdef0123456789abcdef",
    kind: str = "collection",
) -> str:
    """A metadata string spelled by hand as mongodump's canonical Extended JSON."""
    parts = []
    if options is not None:
        parts.append(f'"options":{options}')
    parts.append(f'"indexes":{indexes}')
    if uuid is not None:
        parts.append(f'"uuid":"{uuid}"')
    parts.append(f'"collectionName":"{collection}"')
    parts.append(f'"type":"{kind}"')
    return "{" + ",".join(parts) + "}"


class ArchiveBuilder:
    """Append framing pieces in order; ``bytes()`` gives the archive."""

    def __init__(self, db: str, server_version: str = "7.0.14") -> None:
        self.db = db
        self.out = bytearray(MAGIC)
        self.out += bson.encode(
            {
                "concurrent_collections": 4,
                "version": "0.1",
                "server_version": server_version,
                "tool_version": "100.10.0",
            }
        )
        self._crc: dict[str, int] = {}

    def metadata(self, collection: str, metadata: str, kind: str = "collection") -> ArchiveBuilder:
        self.out += bson.encode(
            {
                "db": self.db,
                "collection": collection,
                "metadata": metadata,
                "size": 0,
                "type": kind,
            }
        )
        return self

    def term(self) -> ArchiveBuilder:
        self.out += TERM
        return self

    def segment(self, collection: str, docs: list[dict[str, Any]] | list[bytes]) -> ArchiveBuilder:
        """A data segment: header, documents, TERM; the CRC runs on."""
        self.out += bson.encode(
            {"db": self.db, "collection": collection, "EOF": False, "CRC": Int64(0)}
        )
        crc = self._crc.get(collection, 0)
        for doc in docs:
            raw = doc if isinstance(doc, bytes) else bson.encode(doc)
            self.out += raw
            crc = crc64_xz(raw, crc)
        self._crc[collection] = crc
        self.out += TERM
        return self

    def eof(self, collection: str, crc: int | None = None) -> ArchiveBuilder:
        """The EOF block; ``crc`` overrides the computed (unsigned) CRC to make a bad one."""
        value = self._crc.get(collection, 0) if crc is None else crc
        self.out += bson.encode(
            {"db": self.db, "collection": collection, "EOF": True, "CRC": Int64(signed64(value))}
        )
        self.out += TERM
        return self

    def raw(self, data: bytes) -> ArchiveBuilder:
        self.out += data
        return self

    def build(self) -> bytes:
        return bytes(self.out)
