"""The listing index: what the backup list shows of each backup, in one encrypted object.

``db-backups/index.enc`` is JSON (UTF-8) sealed in a DBK1 version 2 file with content type
``LISTING_INDEX`` (4), the tenant's key and the object name ``index.enc`` in its header::

    {"schema": 1, "tenant": "acme-hr", "written_at": "2026-11-27T02:00:00+00:00",
     "backups": {
       "manual_20261127T010000Z_3f9a1c2b.gz.enc":
         {"from": "manifest", "bytes": 1234, "summary": {<Manifest.summary()>}, "error": null},
       "15-day_20250101T010000Z_0badcafe.gz":
         {"from": "sidecar", "bytes": 42, "summary": {"note": "before the import"},
          "error": null}}}

It is a cache, never the truth: the storage listing says which backups exist. An entry
counts only while its backup is listed and the object it was read from (``from``: the
backup's manifest, or for a backup without one its legacy side file) is listed with the
same size (``bytes``); for ``sidecar`` also only while the backup has no manifest. Anything
else is read again and the index rewritten. ``error`` keeps why a manifest could not be read
(``summary`` is then null), so a broken manifest is not read again on every listing either.

Manifests never change once written, so a cached summary cannot go stale while its backup
exists. Any reader that had to read something rewrites the whole index (no lock: two
writers racing both write a valid cache of what they listed, and the last one wins; an
entry it lacks is simply read again next time).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Final, Literal, cast

from daai_backup.errors import ArchiveCorrupt
from daai_backup.format.dbk1 import ContentType, EncryptingWriter, open_plaintext
from daai_backup.format.keys import Keyring, MasterKey
from daai_backup.repository.layout import INDEX_NAME

SCHEMA: Final = 1
MAX_BYTES: Final = 64 * 1024 * 1024

Source = Literal["manifest", "sidecar"]


@dataclass(frozen=True)
class IndexEntry:
    """What the index keeps of one backup."""

    source: Source
    bytes: int
    summary: Mapping[str, Any] | None = None
    error: str | None = None

    @property
    def note(self) -> str | None:
        note = (self.summary or {}).get("note")
        return note if isinstance(note, str) else None

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "bytes": self.bytes,
            "summary": None if self.summary is None else dict(self.summary),
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IndexEntry:
        source = data["from"]
        if source not in ("manifest", "sidecar"):
            raise ValueError(f"unknown source {source!r}")
        summary = data["summary"]
        if summary is not None and not isinstance(summary, dict):
            raise ValueError("summary is not an object")
        error = data["error"]
        return cls(
            source=cast(Source, source),
            bytes=int(data["bytes"]),
            summary=summary,
            error=None if error is None else str(error),
        )


def seal(
    entries: Mapping[str, IndexEntry], master: MasterKey, tenant_id: str, now: datetime
) -> bytes:
    """The index object's bytes."""
    body = json.dumps(
        {
            "schema": SCHEMA,
            "tenant": tenant_id,
            "written_at": now.isoformat(),
            "backups": {f: e.to_json() for f, e in sorted(entries.items())},
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    sink = io.BytesIO()
    with EncryptingWriter(
        sink,
        master,
        tenant_id,
        created_at=now,
        name=INDEX_NAME,
        content_type=ContentType.LISTING_INDEX,
    ) as writer:
        writer.write(body)
    return sink.getvalue()


def unseal(source: BinaryIO, keyring: Keyring, tenant_id: str) -> dict[str, IndexEntry]:
    """The entries of an index object; raises what ``open_plaintext`` raises, and
    ``ArchiveCorrupt`` for an index that is not schema 1 of this tenant."""
    plain = open_plaintext(
        source,
        keyring,
        tenant_id,
        name=INDEX_NAME,
        encrypted=True,
        content_type=ContentType.LISTING_INDEX,
    )
    body = plain.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise ArchiveCorrupt(f"the listing index is larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(body)
        if data.get("schema") != SCHEMA or data.get("tenant") != tenant_id:
            raise ValueError("not a schema 1 index of this tenant")
        return {str(f): IndexEntry.from_json(e) for f, e in data["backups"].items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ArchiveCorrupt(f"the listing index is malformed ({exc}); it is rebuilt") from exc
