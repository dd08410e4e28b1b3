"""A raw BSON document's ``_id``, found without decoding the document.

Diff and find look at every document of a snapshot, so the ``_id`` is read straight from
the raw bytes: MongoDB stores ``_id`` as the first element of every document (the server
moves it there on insert), which is checked first; any other position is found by skipping
elements by their type's size, still without decoding values.

The ``_id`` is kept as its *key*: the element's type byte followed by the value's bytes.
Two documents have the same key exactly when their ``_id`` values have the same BSON type
and bytes, which is how documents are matched between two snapshots of one database (a
restored or re-dumped document keeps its ``_id`` bytes). The key turns back into the value
(:func:`id_value`) and into the text a person types (:func:`show_id`).
"""

from __future__ import annotations

import struct
from typing import Any

import bson
from bson import json_util
from bson.objectid import ObjectId

from daai_backup.errors import ArchiveCorrupt

_INT32 = struct.Struct("<i")
_ID_ELEMENT = b"_id\x00"

#: Value sizes of the fixed-size BSON types.
_FIXED = {
    0x01: 8,  # double
    0x06: 0,  # undefined
    0x07: 12,  # ObjectId
    0x08: 1,  # bool
    0x09: 8,  # UTC datetime
    0x0A: 0,  # null
    0x10: 4,  # int32
    0x11: 8,  # timestamp
    0x12: 8,  # int64
    0x13: 16,  # decimal128
    0x7F: 0,  # max key
    0xFF: 0,  # min key
}
_LENGTH_PREFIXED = {0x02, 0x0D, 0x0E}  # string, code, symbol: int32 length + bytes
_EMBEDDED = {0x03, 0x04, 0x0F}  # document, array, code with scope: int32 total length


def _int32(raw: bytes, at: int) -> int:
    value: int = _INT32.unpack_from(raw, at)[0]
    return value


def _value_end(raw: bytes, kind: int, start: int) -> int:
    """Where the value of type ``kind`` starting at ``start`` ends."""
    fixed = _FIXED.get(kind)
    if fixed is not None:
        return start + fixed
    if kind in _LENGTH_PREFIXED:
        return start + 4 + _int32(raw, start)
    if kind in _EMBEDDED:
        return start + _int32(raw, start)
    if kind == 0x05:  # binary: int32 length, subtype byte, bytes
        return start + 5 + _int32(raw, start)
    if kind == 0x0B:  # regex: two C strings
        return raw.index(b"\x00", raw.index(b"\x00", start) + 1) + 1
    if kind == 0x0C:  # DBPointer: string, ObjectId
        return start + 4 + _int32(raw, start) + 12
    raise ValueError(f"unknown BSON type 0x{kind:02x}")


def id_key(raw: bytes) -> bytes:
    """The ``_id`` key of a raw document: its type byte and value bytes.

    ``ArchiveCorrupt`` for a document without ``_id`` or whose elements cannot be walked.
    """
    try:
        if raw[5:9] == _ID_ELEMENT:  # the usual case: _id first
            return raw[4:5] + raw[9 : _value_end(raw, raw[4], 9)]
        pos, end = 4, len(raw) - 1
        while pos < end:
            kind = raw[pos]
            name_end = raw.index(b"\x00", pos + 1)
            value_end = _value_end(raw, kind, name_end + 1)
            if raw[pos + 1 : name_end + 1] == _ID_ELEMENT:
                return raw[pos : pos + 1] + raw[name_end + 1 : value_end]
            pos = value_end
    except (IndexError, ValueError, struct.error) as exc:
        raise ArchiveCorrupt(f"a document cannot be read ({exc}): use another backup") from exc
    raise ArchiveCorrupt("a document has no _id: every MongoDB document has one")


def id_value(key: bytes) -> Any:
    """The ``_id`` value a key was made from (an ObjectId, an int, a str, ...)."""
    body = key[:1] + _ID_ELEMENT + key[1:]
    doc = _INT32.pack(len(body) + 5) + body + b"\x00"
    return bson.decode(doc)["_id"]


def show_value(value: Any, limit: int = 60) -> str:
    """A value as a person reads and types it: an ObjectId as its 24 hex digits, a string as
    it is, a number as written, anything else as Extended JSON; shortened past ``limit``."""
    if isinstance(value, ObjectId):
        text = str(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None:
        text = json_util.dumps(value)
    elif isinstance(value, int | float):
        text = repr(value)
    else:
        text = json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_id(key: bytes) -> str:
    """The ``_id`` of a key as a person types it (see :func:`show_value`)."""
    return show_value(id_value(key))
