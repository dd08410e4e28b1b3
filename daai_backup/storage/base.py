"""The storage contract: a few data operations that every backend implements the same way.

A backend stores *objects* under *keys* inside its own root (a folder, an S3 bucket/prefix,
an in-memory store). The rules below are the contract; ``tests/storage/test_conformance.py``
runs the same suite against every backend to hold each one to it.

Keys
    A key is a relative, '/'-separated path such as ``acme/db-backups/x.gz.enc``. Every
    segment is non-empty, is not ``.`` or ``..``, does not start with ``.`` (names starting
    with a dot are reserved for a backend's temporary files and side data), and holds no
    backslash, NUL or other control character. A backend refuses any other key with
    :class:`~daai_backup.errors.InvalidName` before it touches anything.

Atomic writes
    An object MUST be complete before a reader or lister can see it. A write that fails part
    way (the source raises, the disk fills, the network drops) leaves no object and nothing a
    lister reports; a write over an existing key replaces it as a whole.

Errors
    Backends translate OS and botocore errors at their edge into the hierarchy of
    :mod:`daai_backup.errors`: a missing object is :class:`ObjectNotFound`; a failure that
    may pass (network, throttling, 5xx) is :class:`TransientStorageError`; anything permanent
    (access denied, no such bucket, disk full) is :class:`StorageError` with a one-line
    message that says what to do. An exception raised by a caller's *source* stream is not a
    storage error and propagates unchanged. Backends do not retry whole operations
    themselves (the S3 client retries single requests); retrying is the caller's layer.

Leftovers of unfinished writes
    A write killed part way (``kill -9``, a lost machine) cannot clean up after itself: a
    backend may then hold bytes no lister reports (a local temporary file, an orphan
    metadata side file, the parts of an S3 multipart upload). :meth:`Storage.space_used`
    counts them, so a quota sees what the storage really holds, and
    :meth:`Storage.remove_incomplete` removes them. Neither touches a complete object.

Memory
    Every operation streams: memory use does not grow with the size of an object (the
    in-memory backend, by its nature, keeps what it stores).

Multi-step operations (read everything, write bytes) are free functions over the interface,
at the end of this module, not methods.
"""

from __future__ import annotations

import io
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import BinaryIO

from daai_backup.errors import InvalidName, StorageError

#: Chunk size used when a backend copies a stream (1 MiB: large enough for throughput,
#: small enough that memory stays flat).
CHUNK_SIZE = 1024 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_METADATA_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_METADATA_MAX_BYTES = 2048


@dataclass(frozen=True)
class ObjectInfo:
    """What a backend knows about one stored object.

    ``key`` is relative to the backend's root; ``modified`` is timezone-aware (UTC).
    ``metadata`` is filled by :meth:`Storage.stat` and :meth:`Storage.put_stream`;
    :meth:`Storage.list` leaves it empty, because an S3 listing does not carry it and
    fetching it would cost one request per object.
    """

    key: str
    size: int
    modified: datetime
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is an acceptable object key, else raise InvalidName."""
    if not isinstance(key, str) or not key:
        raise InvalidName("an object key must be a non-empty string")
    if len(key.encode("utf-8")) > 900:
        raise InvalidName(f"object key is too long ({len(key)} characters): keep it under 900")
    if "\\" in key:
        raise InvalidName(f"object key {key!r} contains a backslash: use '/' between parts")
    if _CONTROL.search(key):
        raise InvalidName(f"object key {key!r} contains a control character")
    if key.startswith("/"):
        raise InvalidName(f"object key {key!r} is absolute: keys are relative to the root")
    for segment in key.split("/"):
        if not segment:
            raise InvalidName(f"object key {key!r} has an empty part ('//' or a trailing '/')")
        if segment.startswith("."):
            raise InvalidName(
                f"object key {key!r} has a part starting with '.' ('..' or a reserved name)"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it may be listed: empty, or a key that may end with '/'."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") and len(prefix) > 1 else prefix)
    return prefix


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Check user metadata: lowercase ASCII keys, printable ASCII values, 2 KiB in all.

    These are the limits S3 puts on user metadata (sent as HTTP headers); every backend
    applies them so that code tested on one backend works on all.
    """
    result: dict[str, str] = {}
    total = 0
    for k, v in (metadata or {}).items():
        if not _METADATA_KEY.fullmatch(k):
            raise InvalidName(f"metadata key {k!r} must be 1-64 of a-z, 0-9 and '-'")
        if not v.isascii() or not v.isprintable():
            raise InvalidName(f"metadata value for {k!r} must be printable ASCII")
        total += len(k) + len(v)
        result[k] = v
    if total > _METADATA_MAX_BYTES:
        raise InvalidName(f"metadata is {total} bytes: keep it under {_METADATA_MAX_BYTES}")
    return result


class Storage(ABC):
    """One place objects are kept. See the module docstring for the rules all methods follow."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL this backend was made from (no secrets), for messages and logs."""

    @abstractmethod
    def put_stream(
        self, key: str, source: BinaryIO, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """Store everything ``source.read()`` returns under ``key``, atomically.

        Reads ``source`` in bounded chunks until it returns ``b""``. The object appears only
        once it is complete; on any failure nothing is left (no object, no temporary a
        lister reports, no incomplete multipart upload). Replaces an existing object.
        Returns the new object's info, metadata included.
        """

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """Open ``key`` for streaming reads; use it as a context manager.

        Raises ObjectNotFound if there is no such object. Reads are idempotent, so a caller
        may simply open again after a transient failure.
        """

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size, modification time and metadata of ``key``; ObjectNotFound if missing."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every complete object whose key starts with ``prefix`` (a plain string prefix).

        Lists recursively, through as many pages as it takes; order is not specified.
        Temporary objects of unfinished writes never appear. ``metadata`` is empty.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``. Idempotent: deleting a missing object is not an error."""

    @abstractmethod
    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        """Copy ``src_key`` (data and metadata) to ``dst_key``, atomically like put_stream.

        ObjectNotFound if ``src_key`` is missing.
        """

    def move(self, src_key: str, dst_key: str) -> ObjectInfo:
        """Put ``src_key`` (data and metadata) in place of ``dst_key`` and remove ``src_key``.

        ``dst_key`` changes atomically, like :meth:`put_stream`: readers see the old object
        or the complete new one. A crash in between may leave ``src_key`` as well (a copy,
        never a partial object); the caller removes it. This default copies (server side on
        S3) and then deletes; a backend that can rename overrides it.
        """
        info = self.copy(src_key, dst_key)
        self.delete(src_key)
        return info

    @abstractmethod
    def space_used(self, prefix: str = "") -> int:
        """Every byte the backend holds for keys starting with ``prefix``.

        Complete objects, and also what :meth:`list` never reports: temporaries of
        unfinished writes, metadata side files, parts of incomplete multipart uploads. A
        leftover counts under the key its write was for. This is the number a quota is
        checked against.
        """

    @abstractmethod
    def remove_incomplete(self, prefix: str = "") -> int:
        """Remove what unfinished writes for keys starting with ``prefix`` left; return bytes freed.

        The caller MUST hold the exclusive right to write under ``prefix`` (the tenant's
        lease), so a backend that cannot tell a live write from a dead one MAY remove every
        unfinished write it finds (S3 aborts every multipart upload under the prefix). A
        backend that can tell (the local one, by a lock the writing process holds until it
        exits) MUST NOT remove a live write's temporaries. Never touches a complete object.
        """

    @abstractmethod
    def ping(self) -> None:
        """Check that the storage is reachable and usable; StorageError says why not."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


# --- free functions over the interface -------------------------------------------------


def put_bytes(
    storage: Storage, key: str, data: bytes, metadata: Mapping[str, str] | None = None
) -> ObjectInfo:
    """Store a small byte string (a sidecar, a marker) under ``key``."""
    return storage.put_stream(key, io.BytesIO(data), metadata)


def read_bytes(storage: Storage, key: str, limit: int = 1024 * 1024) -> bytes:
    """Read a small object whole; refuses objects larger than ``limit`` bytes."""
    with storage.open_read(key) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise StorageError(f"object {key!r} is larger than {limit} bytes; read it as a stream")
    return data


def total_size(storage: Storage, prefix: str = "") -> int:
    """Bytes of the complete objects under ``prefix`` (see also :meth:`Storage.space_used`)."""
    return sum(info.size for info in storage.list(prefix))


def join_key(*parts: str) -> str:
    """Join key parts with '/', ignoring empty parts (an empty root prefix)."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))
