"""Which snapshots hold the documents that match a query, and how each version differs.

A query is one or more ``field=value`` conditions, all of which must hold (equality only):

- ``field`` is a top-level name or a dotted path (``customer.name``, ``lines.0.sku``); a
  path through an array looks into each of its documents, and a condition on an array
  holds when the array or one of its elements equals the value (MongoDB's rules).
- ``value`` is read as JSON when it is valid JSON, else as plain text:
  ``total=100`` is the number 100 (matches int32, int64, double and decimal 100, as MongoDB
  does, and not the string "100"); ``total='"100"'`` is the string "100"; ``paid=true``,
  ``note=null``; Extended JSON for other types (``{"$date": "2026-11-27T00:00:00Z"}``);
  anything that is not JSON is a string: ``number=INV-0042``.
  Plain text of exactly 24 hex digits also matches the ObjectId with those digits, so an
  ``_id`` is given as it prints (``_id=65a1f0c2e4b0a1b2c3d4e5f6``); quoted, it is only a
  string.

Each snapshot is read once, oldest first (:func:`find_versions`), and only the queried
collection's documents are decoded, and only those that can match: a document is decoded
when the last name of every condition's path (and a string or ObjectId value) occurs in
its raw bytes. A document that matched in an older snapshot is then followed by its
``_id`` in every newer one, matching or not, so a version that no longer matches (its
status changed away from the queried one, say) still shows, with what changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.decimal128 import Decimal128
from bson.objectid import ObjectId

from daai_backup.errors import QueryError
from daai_backup.inspection.raw_ids import id_key, show_id, show_value

if TYPE_CHECKING:
    import pandas as pd

    from daai_backup.inspection.sources import Snapshot

#: Documents decode with aware UTC datetimes, as Extended JSON values in a query parse.
_CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)
_JSON = json_util.JSONOptions(tz_aware=True, tzinfo=UTC)
_HEX24 = re.compile(r"[0-9a-fA-F]{24}")
_MISSING = object()

#: Documents followed per query; past it, newer matches are counted, not followed.
MAX_DOCUMENTS = 100
#: Characters of a value shown in a change.
VALUE_CHARS = 40


@dataclass(frozen=True)
class Condition:
    """One ``field=value`` condition: the path and the values any of which it accepts."""

    text: str
    path: tuple[str, ...]
    values: tuple[Any, ...]

    @property
    def field(self) -> str:
        return ".".join(self.path)

    @property
    def name_bytes(self) -> bytes:
        """The element name that must occur in a raw document that has the field."""
        names = [p for p in self.path if not p.isdigit()] or [self.path[-1]]
        return names[-1].encode() + b"\x00"

    @property
    def value_bytes(self) -> tuple[bytes, ...] | None:
        """Bytes one of which occurs in a raw document that matches; None: no such test."""
        out: list[bytes] = []
        for value in self.values:
            if isinstance(value, str):
                out.append(value.encode())
            elif isinstance(value, ObjectId):
                out.append(value.binary)
            else:
                return None
        return tuple(out)


def parse_where(text: str) -> Condition:
    """``field=value`` as a :class:`Condition` (see the module for how values are read)."""
    field_text, sep, raw = text.partition("=")
    field_text = field_text.strip()
    if not sep or not field_text:
        raise QueryError(
            f"--where {text!r} is not field=value: e.g. --where number=INV-0042, "
            "--where total=100, --where customer.name='\"Acme\"'"
        )
    path = tuple(field_text.split("."))
    if any(not p or p.startswith("$") or "\x00" in p for p in path):
        raise QueryError(
            f"--where {text!r}: {field_text!r} is not a field name or dotted path "
            "(no empty parts, none starting with '$')"
        )
    return Condition(text=text, path=path, values=_parse_value(raw))


def _parse_value(raw: str) -> tuple[Any, ...]:
    try:
        value = json_util.loads(raw, json_options=_JSON)
    except (ValueError, TypeError, bson.errors.BSONError):  # not JSON: plain text
        if _HEX24.fullmatch(raw):
            return (raw, ObjectId(raw))
        return (raw,)
    if isinstance(value, float) and value != value:  # NaN never equals anything
        raise QueryError(f"{raw!r} is not a value that can be matched")
    return (value,)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(value) if value == value and abs(value) != float("inf") else None
    return None


def _equal(have: Any, want: Any) -> bool:
    """MongoDB's equality, as far as a person can type a value: numbers by value across
    BSON number types, booleans only with booleans, anything else of the same type."""
    want_number = _number(want)
    if want_number is not None:
        have_number = _number(have)
        return have_number is not None and have_number == want_number
    if isinstance(want, bool) or isinstance(have, bool):
        return isinstance(want, bool) and isinstance(have, bool) and want == have
    if want is None:
        return have is None
    if type(have) is not type(want) and not (isinstance(have, dict) and isinstance(want, dict)):
        return False
    return bool(have == want)


def values_at(doc: Any, path: Sequence[str]) -> Iterator[Any]:
    """Every value at ``path`` in ``doc``, through arrays as MongoDB looks through them."""
    if not path:
        yield doc
        return
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        if head in doc:
            yield from values_at(doc[head], rest)
    elif isinstance(doc, list):
        if head.isdigit() and int(head) < len(doc):
            yield from values_at(doc[int(head)], rest)
        for item in doc:
            if isinstance(item, dict):
                yield from values_at(item, path)


def _decode(raw: bytes) -> dict[str, Any]:
    return bson.decode(raw, codec_options=_CODEC)


def has_field(doc: dict[str, Any], condition: Condition) -> bool:
    return next(values_at(doc, condition.path), _MISSING) is not _MISSING


def matches(doc: dict[str, Any], condition: Condition) -> bool:
    for have in values_at(doc, condition.path):
        candidates = [have, *have] if isinstance(have, list) else [have]
        for candidate in candidates:
            if any(_equal(candidate, want) for want in condition.values):
                return True
    return False


def field_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two versions of a document, field by field (dotted paths into
    subdocuments, arrays as whole values): ``~total: 100 -> 120``, ``+paid_at: ...``,
    ``-draft: true``."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    out: list[str] = []
    for path, value in flat_new.items():
        if path not in flat_old:
            out.append(f"+{path}: {show_value(value, VALUE_CHARS)}")
        elif not _same(flat_old[path], value):
            was = show_value(flat_old[path], VALUE_CHARS)
            out.append(f"~{path}: {was} -> {show_value(value, VALUE_CHARS)}")
    out += [f"-{p}: {show_value(v, VALUE_CHARS)}" for p, v in flat_old.items() if p not in flat_new]
    return out


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and bool(a == b)


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


# --- reading snapshots --------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotRef:
    """A snapshot to read: its file name and when it was taken."""

    file: str
    taken_at: datetime


@dataclass
class Version:
    """One document in one snapshot (or its absence), compared with the snapshot before."""

    file: str
    taken_at: datetime
    id: str
    status: str
    """"new" (first seen), "changed", "unchanged", "back" (was gone), "gone" (this snapshot
    lacks it), or "no match"/"no collection" (a snapshot with nothing to show)."""
    matches: bool = True
    changes: list[str] = field(default_factory=list)
    document: dict[str, Any] | None = None


@dataclass
class FindResult:
    """Every version found, newest snapshot first."""

    collection: str
    conditions: list[Condition]
    snapshots: int
    versions: list[Version]
    documents: int
    """How many distinct documents matched somewhere."""
    truncated: bool = False
    """More than :data:`MAX_DOCUMENTS` documents matched; only the first are followed."""

    @property
    def query(self) -> str:
        return " and ".join(c.text for c in self.conditions)

    def holding(self) -> list[str]:
        """The snapshots (newest first) that hold a matching document."""
        seen: dict[str, None] = {}
        for v in self.versions:
            if v.status not in ("gone", "no match", "no collection") and v.matches:
                seen[v.file] = None
        return list(seen)

    def to_frame(self, tz: Any = None) -> pd.DataFrame:
        """One row per snapshot and document: Snapshot, Taken, _id, Status, Changes."""
        import pandas as pd

        rows = []
        for v in self.versions:
            taken = v.taken_at.astimezone(tz) if tz is not None else v.taken_at
            status = v.status if v.matches else f"{v.status} (no longer matches)"
            rows.append(
                {
                    "Snapshot": v.file,
                    "Taken": f"{taken:%Y-%m-%d %H:%M %Z}",
                    "_id": v.id,
                    "Status": status,
                    "Changes": "; ".join(v.changes),
                }
            )
        return pd.DataFrame(rows, columns=["Snapshot", "Taken", "_id", "Status", "Changes"])


class _Search:
    """The state carried from one snapshot to the next, oldest first."""

    def __init__(self, collection: str, conditions: Sequence[Condition]) -> None:
        self.collection = collection
        self.conditions = list(conditions)
        self.names = [c.name_bytes for c in conditions]
        self.values = [c.value_bytes for c in conditions]
        self.field_seen = [False] * len(conditions)
        self.last: dict[bytes, dict[str, Any]] = {}  # each followed _id: its last version
        self.previous: set[bytes] = set()  # the ids present in the previous snapshot read
        self.followed: list[bytes] = []  # in the order first seen
        self.truncated = False
        self.collection_seen = False
        self.collections: set[str] = set()

    def _may_match(self, raw: bytes) -> bool:
        for name, values in zip(self.names, self.values, strict=True):
            if name not in raw:
                return False
            if values is not None and not any(v in raw for v in values):
                return False
        return True

    def _note_fields(self, raw: bytes, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        """Mark conditions whose field this document has; the decoded document, if decoded."""
        for i, condition in enumerate(self.conditions):
            if self.field_seen[i] or self.names[i] not in raw:
                continue
            doc = doc if doc is not None else _decode(raw)
            if has_field(doc, condition):
                self.field_seen[i] = True
        return doc

    def read(self, ref: SnapshotRef, snapshot: Snapshot) -> list[Version]:
        """Read one snapshot: the versions of the followed documents in it."""
        self.collections.update(snapshot.collections)
        if self.collection not in snapshot.collections:
            gone = [self._gone(ref, key) for key in self.followed if key in self.previous]
            self.previous = set()
            return gone or [Version(ref.file, ref.taken_at, "", "no collection", matches=False)]
        self.collection_seen = True
        found: dict[bytes, tuple[dict[str, Any], bool]] = {}
        for name, docs in snapshot.events():
            if name != self.collection:
                continue
            if docs is None:
                break  # the collection is complete: the rest of the archive is not needed
            for raw in docs:
                doc = None
                hit = False
                if self._may_match(raw):
                    doc = _decode(raw)
                    hit = all(matches(doc, c) for c in self.conditions)
                if not all(self.field_seen):
                    doc = self._note_fields(raw, doc)
                if hit:
                    key = id_key(raw)
                    if key not in self.last and len(self.followed) >= MAX_DOCUMENTS:
                        self.truncated = True
                        continue
                    found[key] = (doc if doc is not None else _decode(raw), True)
                elif self.last:
                    key = id_key(raw)
                    if key in self.last:
                        found[key] = (doc if doc is not None else _decode(raw), False)
        return self._versions(ref, found)

    def _gone(self, ref: SnapshotRef, key: bytes) -> Version:
        return Version(ref.file, ref.taken_at, show_id(key), "gone", matches=False)

    def _versions(
        self, ref: SnapshotRef, found: dict[bytes, tuple[dict[str, Any], bool]]
    ) -> list[Version]:
        out: list[Version] = []
        for key in [*self.followed, *(k for k in found if k not in self.last)]:
            if key not in found:
                if key in self.previous:
                    out.append(self._gone(ref, key))
                continue
            doc, hit = found[key]
            before = self.last.get(key)
            if before is None:
                status, changes = "new", []
                self.followed.append(key)
            else:
                changes = field_changes(before, doc)
                if key not in self.previous:
                    status = "back"
                else:
                    status = "changed" if changes else "unchanged"
            self.last[key] = doc
            out.append(Version(ref.file, ref.taken_at, show_id(key), status, hit, changes, doc))
        self.previous = set(found)
        if not out:
            out.append(Version(ref.file, ref.taken_at, "", "no match", matches=False))
        return out


def find_in_snapshots(
    collection: str,
    conditions: Sequence[Condition],
    snapshots: Iterator[tuple[SnapshotRef, Snapshot]],
) -> FindResult:
    """Read ``snapshots`` (oldest first, each opened as it is reached) and follow the
    documents of ``collection`` that match every condition.

    Raises ``QueryError`` when no snapshot has the collection, or when no document of it in
    any snapshot has one of the conditions' fields (a misspelt field would otherwise read as
    "nothing matched").
    """
    if not conditions:
        raise QueryError("give at least one --where field=value")
    search = _Search(collection, conditions)
    per_snapshot: list[list[Version]] = []
    count = 0
    for ref, snapshot in snapshots:
        count += 1
        per_snapshot.append(search.read(ref, snapshot))
    if not search.collection_seen:
        known = ", ".join(sorted(search.collections)[:20]) or "none"
        raise QueryError(
            f"no collection {collection!r} in any of the {count} snapshot(s) read: "
            f"their collections are {known}"
        )
    if not search.followed:
        seen = zip(conditions, search.field_seen, strict=True)
        missing = [c.field for c, has in seen if not has]
        if missing:
            raise QueryError(
                f"no snapshot has a document with field {missing[0]!r} in collection "
                f"{collection!r} ({count} snapshot(s) read): check the field name"
            )
    versions = [v for group in reversed(per_snapshot) for v in group]
    return FindResult(
        collection=collection,
        conditions=list(conditions),
        snapshots=count,
        versions=versions,
        documents=len(search.followed),
        truncated=search.truncated,
    )
