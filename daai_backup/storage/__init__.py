"""Storage backends behind one contract, and the one place that maps URLs to them.

``storage_from_url`` is the only code that knows the schemes:

- ``file:///absolute/path`` -> :class:`LocalStorage`
- ``s3://bucket/optional/prefix`` -> :class:`S3Storage` (``s3_endpoint_url`` for S3-compatible
  servers such as MinIO or moto)
- ``memory://name/optional/prefix`` -> :class:`MemoryStorage`, shared process-wide by name

One place has many spellings (``file:///srv/b//acme/``, ``file:///srv/b/./acme``,
``file:///srv/b%2Facme``, a symlink to it). ``canonical_location`` turns each into the one
spelling of the place itself, and ``storage_from_url`` builds every backend from that, so
the place compared when tenants' folders are checked for overlap is the place then used:

- file: percent-decoded; empty and ``.`` segments dropped; ``..`` refused; symlinks
  resolved (``os.path.realpath``); no trailing '/': ``file:///srv/b/acme``.
- s3: ``s3://bucket/prefix``, the prefix percent-decoded and a valid key (no empty, ``.``
  or ``..`` segments); no trailing '/'.
- memory: ``memory://name/prefix``, the same rules as s3.

A place lies inside another exactly when its canonical location starts with the other's
followed by '/' (the file system root ``file:///`` holds every file location). A query or
fragment (``?``, ``#``) is refused rather than ignored.

The S3 backend (boto3, ~0.6 s to import) is imported only when an ``s3://`` URL is opened
or ``S3Storage`` is named, so that commands on local storage start quickly.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any
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

if TYPE_CHECKING:
    from daai_backup.storage.s3 import S3Storage

__all__ = [
    "LocalStorage",
    "MemoryStorage",
    "ObjectInfo",
    "S3Storage",
    "Storage",
    "canonical_location",
    "clear_memory_store",
    "join_key",
    "put_bytes",
    "read_bytes",
    "storage_from_url",
    "total_size",
    "validate_key",
]


def __getattr__(name: str) -> Any:
    """``S3Storage`` on first use: importing it imports boto3."""
    if name == "S3Storage":
        from daai_backup.storage.s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _prefix(path: str, url: str) -> str:
    prefix = unquote(path).strip("/")
    if prefix:
        try:
            validate_key(prefix)
        except InvalidName as exc:
            raise ConfigError(f"storage URL {url!r} has an unacceptable path: {exc}") from exc
    return prefix


def _location(url: str) -> tuple[str, str, str]:
    """Parse a storage URL into ``(scheme, place, prefix)``; ConfigError if it is bad.

    ``place`` is the real absolute path (file), the bucket (s3) or the store name (memory);
    ``prefix`` is the key prefix inside it (always empty for file).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise ConfigError(
            f"storage URL {url!r} has a query or fragment ('?', '#'): write '%3F' or '%23' "
            "for those characters in a name"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"storage URL {url!r} must name an absolute folder: file:///absolute/path"
            )
        path = unquote(parts.path)
        segments = [s for s in path.split("/") if s not in ("", ".")]
        if not path.startswith("/") or ".." in segments or "\x00" in path:
            raise ConfigError(f"storage URL {url!r} must be an absolute path without '..' (or NUL)")
        return "file", os.path.realpath("/" + "/".join(segments)), ""
    if scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ConfigError(
                f"storage URL {url!r} has no valid bucket name: use s3://bucket/optional/prefix"
            )
        return "s3", bucket, _prefix(parts.path, url)
    if scheme == "memory":
        try:
            validate_key(parts.netloc)
        except InvalidName:
            raise ConfigError(f"storage URL {url!r} needs a store name: memory://name") from None
        return "memory", parts.netloc, _prefix(parts.path, url)
    raise ConfigError(
        f"storage URL {url!r} has an unknown scheme: use file:///path, s3://bucket/prefix "
        "or memory://name"
    )


def canonical_location(url: str) -> str:
    """The one spelling of the place a storage URL names (see the module docstring).

    Two URLs name the same place exactly when their canonical locations are equal.
    ConfigError for a URL ``storage_from_url`` would refuse.
    """
    scheme, place, prefix = _location(url)
    if scheme == "file":
        return f"file://{place}"
    return f"{scheme}://{join_key(place, prefix)}"


def storage_from_url(
    url: str, *, s3_endpoint_url: str | None = None, object_lock: str | None = None
) -> Storage:
    """Make the backend a storage URL names, rooted at its canonical location.

    ConfigError says what is wrong with a bad URL.
    """
    scheme, place, prefix = _location(url)
    if scheme == "file":
        return LocalStorage(place)
    if scheme == "s3":
        from daai_backup.storage.s3 import S3Storage

        return S3Storage(place, prefix, endpoint_url=s3_endpoint_url, object_lock=object_lock)
    return MemoryStorage(place, prefix)
