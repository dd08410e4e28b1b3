"""An in-memory backend (``memory://name``) for fast tests of flows and tasks.

Stores of the same name are shared by the whole process, so a test and the flow it runs
see the same objects. It follows the storage contract exactly (the conformance suite runs
on it), except that it keeps what it stores in memory, so use it for small data only.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import BinaryIO

from daai_backup.errors import ObjectNotFound
from daai_backup.storage.base import (
    CHUNK_SIZE,
    ObjectInfo,
    Storage,
    join_key,
    validate_key,
    validate_metadata,
    validate_prefix,
)


@dataclass(frozen=True)
class _Blob:
    data: bytes
    modified: datetime
    metadata: Mapping[str, str]


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, _Blob] = {}


_STORES: dict[str, _Store] = {}
_STORES_LOCK = threading.Lock()


def _store(name: str) -> _Store:
    with _STORES_LOCK:
        return _STORES.setdefault(name, _Store())


def clear_memory_store(name: str) -> None:
    """Forget every object of the in-memory store ``name`` (for test isolation)."""
    with _STORES_LOCK:
        _STORES.pop(name, None)


class MemoryStorage(Storage):
    """Objects in the process-wide in-memory store ``name``, under an optional ``prefix``."""

    def __init__(self, name: str, prefix: str = "") -> None:
        validate_key(name)
        if prefix:
            validate_key(prefix.strip("/"))
        self._name = name
        self._prefix = prefix.strip("/")

    @property
    def url(self) -> str:
        return f"memory://{join_key(self._name, self._prefix)}"

    @property
    def _objects(self) -> dict[str, _Blob]:
        return _store(self._name).objects

    @property
    def _lock(self) -> threading.Lock:
        return _store(self._name).lock

    def _full(self, key: str) -> str:
        return join_key(self._prefix, validate_key(key))

    def _info(self, key: str, blob: _Blob, with_metadata: bool) -> ObjectInfo:
        metadata = blob.metadata if with_metadata else {}
        return ObjectInfo(key, len(blob.data), blob.modified, MappingProxyType(dict(metadata)))

    def put_stream(
        self, key: str, source: BinaryIO, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        full = self._full(key)
        meta = validate_metadata(metadata)
        buffer = io.BytesIO()
        while chunk := source.read(CHUNK_SIZE):
            buffer.write(chunk)
        # Only a complete object is ever published, in one step under the lock.
        blob = _Blob(buffer.getvalue(), datetime.now(UTC), MappingProxyType(meta))
        with self._lock:
            self._objects[full] = blob
        return self._info(key, blob, with_metadata=True)

    def _get(self, key: str) -> _Blob:
        full = self._full(key)
        with self._lock:
            blob = self._objects.get(full)
        if blob is None:
            raise ObjectNotFound(f"no object {key!r} in {self.url}")
        return blob

    def open_read(self, key: str) -> BinaryIO:
        return io.BytesIO(self._get(key).data)

    def stat(self, key: str) -> ObjectInfo:
        return self._info(key, self._get(key), with_metadata=True)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        root = f"{self._prefix}/" if self._prefix else ""
        with self._lock:
            snapshot = list(self._objects.items())
        for full, blob in snapshot:
            if full.startswith(root) and full[len(root) :].startswith(prefix):
                yield self._info(full[len(root) :], blob, with_metadata=False)

    def space_used(self, prefix: str = "") -> int:
        # Writes publish in one step, so there is never anything but complete objects.
        return sum(info.size for info in self.list(prefix))

    def remove_incomplete(self, prefix: str = "") -> int:
        validate_prefix(prefix)
        return 0  # an unfinished write leaves nothing here

    def delete(self, key: str) -> None:
        full = self._full(key)
        with self._lock:
            self._objects.pop(full, None)

    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        blob = self._get(src_key)
        full = self._full(dst_key)
        new = _Blob(blob.data, datetime.now(UTC), blob.metadata)
        with self._lock:
            self._objects[full] = new
        return self._info(dst_key, new, with_metadata=True)

    def ping(self) -> None:
        return None
