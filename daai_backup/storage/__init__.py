"""Storage backends behind one contract, and the one place that maps URLs to them.

``storage_from_url`` is the only code that knows the schemes:

- ``file:///absolute/path`` -> :class:`LocalStorage`
- ``s3://bucket/optional/prefix`` -> :class:`S3Storage` (``s3_endpoint_url`` for S3-compatible
  servers such as MinIO or moto)
- ``memory://name/optional/prefix`` -> :class:`MemoryStorage`, shared process-wide by name
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from daai_backup.errors import ConfigError, InvalidName
from daai_backup.storage.base import (
    ObjectInfo,
    Storage,
    join_key,
    put_bytes,
    read_bytes,
    total_size,
    validate_key,
)
from daai_backup.storage.local import LocalStorage
from daai_backup.storage.memory import MemoryStorage, clear_memory_store
from daai_backup.storage.s3 import S3Storage

__all__ = [
    "LocalStorage",
    "MemoryStorage",
    "ObjectInfo",
    "S3Storage",
    "Storage",
    "clear_memory_store",
    "join_key",
    "put_bytes",
    "read_bytes",
    "storage_from_url",
    "total_size",
    "validate_key",
]

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _prefix(path: str, url: str) -> str:
    prefix = unquote(path).strip("/")
    if prefix:
        try:
            validate_key(prefix)
        except InvalidName as exc:
            raise ConfigError(f"storage URL {url!r} has an unacceptable path: {exc}") from exc
    return prefix


def storage_from_url(url: str, *, s3_endpoint_url: str | None = None) -> Storage:
    """Make the backend a storage URL names; ConfigError says what is wrong with a bad one."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"storage URL {url!r} must name an absolute folder: file:///absolute/path"
            )
        path = unquote(parts.path)
        if not path.startswith("/") or ".." in path.split("/"):
            raise ConfigError(f"storage URL {url!r} must be an absolute path without '..'")
        return LocalStorage(path.rstrip("/") or "/")
    if scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ConfigError(
                f"storage URL {url!r} has no valid bucket name: use s3://bucket/optional/prefix"
            )
        return S3Storage(bucket, _prefix(parts.path, url), endpoint_url=s3_endpoint_url)
    if scheme == "memory":
        if not parts.netloc:
            raise ConfigError(f"storage URL {url!r} needs a store name: memory://name")
        return MemoryStorage(parts.netloc, _prefix(parts.path, url))
    raise ConfigError(
        f"storage URL {url!r} has an unknown scheme: use file:///path, s3://bucket/prefix "
        "or memory://name"
    )
