"""Backup manifests: what one backup holds, readable without reading the backup.

Every backup ``<file>`` has a manifest ``<file>.manifest`` beside it: JSON (UTF-8), sealed
in a DBK1 version 2 file with content type ``MANIFEST`` (2), the tenant's key and the
manifest's own object name in its header, so a manifest cannot be read as another tenant's,
moved to another backup's name, or altered. ``docs/format.md`` ("Manifests") specifies it;
this module is its only writer and reader.

A manifest is immutable: it is written once, right after its backup is committed (a crash
between the two leaves a backup without a manifest, which readers treat like a backup of
an earlier version: its manifest is rebuilt from the archive by the next ``verify`` or
``describe``). Facts that change (holds, verification results) live elsewhere.

Schema version 1 (``schema``), every key always present::

    {"schema": 1, "tenant": "acme-hr", "file": "manual_20261127T010000Z_3f9a1c2b.gz.enc",
     "label": "manual", "taken_at": "2026-11-27T01:00:00+00:00",
     "cluster_time": {"t": 1795741200, "i": 3},    # or null: unknown (best-effort, legacy)
     "actor": "ops@example.com", "note": "before the import",  # either may be null
     "key_fingerprint": "0123456789abcdef",          # null for a legacy plaintext backup
     "stored_bytes": 123456, "plain_bytes": 987654, "data_bytes": 900000, "documents": 5000,
     "consistency": "snapshot", "server_version": "8.0.0",
     "source": "backup",             # "backup": written with it; "archive": rebuilt from it
     "catalog_changes": [],          # best-effort backups: one line per changed collection
     "namespaces": [
       {"name": "invoices", "kind": "collection", "documents": 30, "data_bytes": 4200,
        "indexes": ["_id_", "number_1"], "options_digest": "<sha256 hex>", "crc64": -123},
       ...]}

``options_digest`` is the SHA-256 (hex) of the namespace's options as canonical relaxed
Extended JSON (keys sorted, no spaces), so two backups' options compare without storing them.
``kind`` is "timeseries" also for a collection listed as a plain collection with
``timeseries`` options (SecantusDB lists them so). ``indexes`` are the index names in the
archive's order. ``cluster_time`` is the ``atClusterTime`` the dump's snapshot session read
at (null for a best-effort dump, a rebuilt manifest and an import). ``consistency`` is
"snapshot", "best-effort", or "unknown" (an import; a rebuilt manifest without a side file
saying). ``source`` "archive" covers both a manifest rebuilt from an older backup and one of an
imported archive (label ``imported``). Both sources give the same namespace facts for the
same archive (``repository.archive_facts``): that is what ``verify`` compares.
Optional keys (written since consistent backups, absent in older manifests, read as null):
``consistent_at`` ``{"t", "i"}``, the cluster time a restore of the backup yields: the
snapshot's time for a ``snapshot`` without changes, else the end of the dump, whose change
events up to it are stored beside the backup (``consistency`` "consistent"); ``changes``
``{"after": {"t", "i"}, "events": n, "checksum": "<16 hex>"}`` describes that
``<file>.changes`` object (null: none).
``crc64`` is the signed CRC-64/XZ the archive's EOF block holds for the namespace (0 for a
view). ``plain_bytes`` is the size of the uncompressed mongodump archive, ``data_bytes`` the
BSON bytes of its documents, ``stored_bytes`` the size of the backup object.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, Final, Literal, cast

from bson import json_util

from daai_backup.errors import ArchiveCorrupt
from daai_backup.format.dbk1 import ContentType, EncryptingWriter, open_plaintext
from daai_backup.format.keys import Keyring, MasterKey
from daai_backup.repository.names import BackupName

SCHEMA: Final = 1
SUFFIX: Final = ".manifest"
#: A manifest is read whole; this bounds what a corrupt or hostile object can make us load.
MAX_BYTES: Final = 64 * 1024 * 1024

Kind = Literal["collection", "view", "timeseries"]


def manifest_name(backup_file: str) -> str:
    """``<backup file>.manifest`` (the backup name is validated first)."""
    BackupName.parse(backup_file)
    return backup_file + SUFFIX


def backup_of(manifest_file: str) -> str | None:
    """The backup file a manifest object name belongs to; None if it is not one."""
    if not manifest_file.endswith(SUFFIX):
        return None
    backup = manifest_file[: -len(SUFFIX)]
    try:
        BackupName.parse(backup)
    except Exception:
        return None
    return backup


def options_digest(options: Mapping[str, Any]) -> str:
    """SHA-256 hex of ``options`` as canonical relaxed Extended JSON (sorted keys)."""
    text = json_util.dumps(
        options,
        sort_keys=True,
        separators=(",", ":"),
        json_options=json_util.RELAXED_JSON_OPTIONS,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NamespaceFacts:
    """One collection, time-series collection or view of a backup."""

    name: str
    kind: Kind
    documents: int
    data_bytes: int
    indexes: tuple[str, ...]
    options_digest: str
    crc64: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NamespaceFacts:
        kind = data["kind"]
        if kind not in ("collection", "view", "timeseries"):
            raise ValueError(f"unknown namespace kind {kind!r}")
        return cls(
            name=str(data["name"]),
            kind=cast(Kind, kind),
            documents=int(data["documents"]),
            data_bytes=int(data["data_bytes"]),
            indexes=tuple(str(i) for i in data["indexes"]),
            options_digest=str(data["options_digest"]),
            crc64=int(data["crc64"]),
        )


@dataclass(frozen=True)
class ChangesFacts:
    """The change events stored beside a backup (``<file>.changes``): what a restore replays.

    ``after``: the position noted before the dump (events after it); ``events``: how many;
    ``checksum``: the first 16 hex digits of the SHA-256 of their BSON, one after another.
    """

    after: tuple[int, int]
    events: int
    checksum: str

    def to_json(self) -> dict[str, Any]:
        return {
            "after": dict(zip("ti", self.after, strict=True)),
            **{"events": self.events, "checksum": self.checksum},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChangesFacts:
        return cls(
            after=(int(data["after"]["t"]), int(data["after"]["i"])),
            events=int(data["events"]),
            checksum=str(data["checksum"]),
        )


def _ts_json(ts: tuple[int, int] | None) -> dict[str, int] | None:
    return None if ts is None else dict(zip("ti", ts, strict=True))


def _ts_parse(data: Any) -> tuple[int, int] | None:
    return None if data is None else (int(data["t"]), int(data["i"]))


@dataclass(frozen=True)
class Manifest:
    """What one backup holds (schema version 1; see the module docstring)."""

    tenant: str
    file: str
    label: str
    taken_at: datetime
    cluster_time: tuple[int, int] | None
    actor: str | None
    note: str | None
    key_fingerprint: str | None
    stored_bytes: int
    plain_bytes: int
    data_bytes: int
    documents: int
    consistency: str
    server_version: str
    source: Literal["backup", "archive"] = "backup"
    catalog_changes: tuple[str, ...] = ()
    namespaces: tuple[NamespaceFacts, ...] = field(default_factory=tuple)
    schema: int = SCHEMA
    consistent_at: tuple[int, int] | None = None
    changes: ChangesFacts | None = None

    def __post_init__(self) -> None:
        if self.taken_at.tzinfo is None:
            raise ValueError("taken_at needs a time zone")
        object.__setattr__(self, "taken_at", self.taken_at.astimezone(UTC))

    @property
    def name(self) -> str:
        """The manifest's own object name."""
        return manifest_name(self.file)

    def namespace(self, name: str) -> NamespaceFacts | None:
        return next((n for n in self.namespaces if n.name == name), None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["taken_at"] = self.taken_at.isoformat()
        data["cluster_time"] = (
            None if self.cluster_time is None else dict(zip("ti", self.cluster_time, strict=True))
        )
        data["catalog_changes"] = list(self.catalog_changes)
        data["consistent_at"] = _ts_json(self.consistent_at)
        data["changes"] = None if self.changes is None else self.changes.to_json()
        data["namespaces"] = [{**asdict(n), "indexes": list(n.indexes)} for n in self.namespaces]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse schema version 1; raises ``ArchiveCorrupt`` for anything else."""
        if data.get("schema") != SCHEMA:
            raise ArchiveCorrupt(
                f"manifest schema {data.get('schema')!r} is not one this version reads "
                f"({SCHEMA}): upgrade daai-backup"
            )
        try:
            cluster = data["cluster_time"]
            source = data["source"]
            if source not in ("backup", "archive"):
                raise ValueError(f"unknown source {source!r}")
            return cls(
                tenant=str(data["tenant"]),
                file=str(data["file"]),
                label=str(data["label"]),
                taken_at=datetime.fromisoformat(data["taken_at"]),
                cluster_time=None if cluster is None else (int(cluster["t"]), int(cluster["i"])),
                actor=data["actor"],
                note=data["note"],
                key_fingerprint=data["key_fingerprint"],
                stored_bytes=int(data["stored_bytes"]),
                plain_bytes=int(data["plain_bytes"]),
                data_bytes=int(data["data_bytes"]),
                documents=int(data["documents"]),
                consistency=str(data["consistency"]),
                server_version=str(data["server_version"]),
                source=cast(Literal["backup", "archive"], source),
                catalog_changes=tuple(str(c) for c in data["catalog_changes"]),
                namespaces=tuple(NamespaceFacts.from_json(n) for n in data["namespaces"]),
                # Optional keys (added with consistent backups): absent in older manifests.
                consistent_at=_ts_parse(data.get("consistent_at")),
                changes=(
                    None if data.get("changes") is None else ChangesFacts.from_json(data["changes"])
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveCorrupt(f"manifest is malformed ({exc}); rebuild it with verify") from exc

    def summary(self) -> dict[str, Any]:
        """The few facts the backup list shows, for the listing index (JSON-safe)."""
        return {
            "label": self.label,
            "taken_at": self.taken_at.isoformat(),
            "actor": self.actor,
            "note": self.note,
            "stored_bytes": self.stored_bytes,
            "documents": self.documents,
            "data_bytes": self.data_bytes,
            "consistency": self.consistency,
            "cluster_time": None if self.cluster_time is None else list(self.cluster_time),
            "consistent_at": None if self.consistent_at is None else list(self.consistent_at),
            "namespaces": len(self.namespaces),
            "key_fingerprint": self.key_fingerprint,
        }


def seal(manifest: Manifest, master: MasterKey) -> bytes:
    """The manifest object's bytes: its JSON sealed in DBK1 (content type ``MANIFEST``)."""
    body = json.dumps(manifest.to_json(), separators=(",", ":"), sort_keys=True).encode()
    sink = io.BytesIO()
    with EncryptingWriter(
        sink,
        master,
        manifest.tenant,
        created_at=manifest.taken_at,
        name=manifest.name,
        content_type=ContentType.MANIFEST,
    ) as writer:
        writer.write(body)
    return sink.getvalue()


def unseal(source: BinaryIO, keyring: Keyring, tenant_id: str, backup_file: str) -> Manifest:
    """Read the manifest of ``backup_file`` from ``source`` (the object's bytes).

    Raises what ``open_plaintext`` raises (``WrongTenant``, ``NameMismatch``, ``WrongKey``,
    ``ArchiveCorrupt``), and ``ArchiveCorrupt`` for a manifest that names another tenant or
    backup, is not JSON, or is larger than :data:`MAX_BYTES`.
    """
    name = manifest_name(backup_file)
    plain = open_plaintext(
        source, keyring, tenant_id, name=name, encrypted=True, content_type=ContentType.MANIFEST
    )
    body = plain.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise ArchiveCorrupt(f"manifest {name!r} is larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ArchiveCorrupt(f"manifest {name!r} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ArchiveCorrupt(f"manifest {name!r} is not a JSON object")
    manifest = Manifest.from_json(data)
    if manifest.tenant != tenant_id or manifest.file != backup_file:
        raise ArchiveCorrupt(
            f"manifest {name!r} describes {manifest.file!r} of tenant {manifest.tenant!r}: "
            "it was replaced or altered; rebuild it with verify"
        )
    return manifest
