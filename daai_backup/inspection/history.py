"""Every version of the documents that match a query, from a snapshot and the captured
changes after it: when each change happened, what it changed, and the moment before it.

The *base* is the newest backup at or before the range's start whose manifest records a
consistent snapshot's cluster time and from which the captured changes reach on (a
snapshot inside one covered range; ``operations.snapshots``). Its collection is read once
(only documents whose raw bytes can match are decoded: ``find``'s pre-test); every match is
*followed* by its ``_id``. The tenant's change events after the snapshot's cluster time are
then read in stream order; an event of the collection:

- ``insert``/``replace``: the document as written; a followed one gets a new version, a new
  one that matches is followed from there;
- ``update``: only the delta is captured (never ``updateLookup``), so the followed version
  is updated in Python (:func:`apply_update`: ``truncatedArrays``, ``updatedFields``,
  ``removedFields``, with ``disambiguatedPaths`` naming fields with dots literally);
- ``delete``: the followed document's last version is "deleted";
- ``drop``/``rename``/``dropDatabase``: every followed document leaves with the collection.

Limit: an update carries no full document, so a document that *comes to* match through an
update (one that matched neither in the base snapshot nor when inserted or replaced) is not
seen. Documents followed: at most ``find.MAX_DOCUMENTS``. Memory: the followed documents'
current versions plus the versions shown.

Nothing is written, the live database is not read, and reading needs ``restore``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import bson
from bson.codec_options import CodecOptions
from bson.timestamp import Timestamp

from daai_backup.errors import ChangesNotCovered, QueryError
from daai_backup.inspection.find import (
    MAX_DOCUMENTS,
    Condition,
    field_changes,
    matches,
    parse_where,
)
from daai_backup.inspection.raw_ids import id_key, show_id
from daai_backup.inspection.timeline import moment_text
from daai_backup.moments import END_OF_SECOND
from daai_backup.repository.catalog import zone

if TYPE_CHECKING:
    import pandas as pd

    from daai_backup.inspection.sources import Snapshot
    from daai_backup.operations import EngineContext
    from daai_backup.tenants import Tenant

_find_codec: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)


@dataclass
class DocVersion:
    """One version of one document."""

    id: str
    at: datetime
    """When (the tenant's zone): the snapshot's time for the base version."""
    what: str
    """"in snapshot", "inserted", "updated", "replaced", "deleted", "dropped", "renamed"."""
    changes: list[str] = field(default_factory=list)
    document: dict[str, Any] | None = None
    before: datetime | None = None
    """The second before the change (None for the base version)."""
    matches: bool = True

    @property
    def moment_before(self) -> str:
        return moment_text(self.before) if self.before is not None else ""


@dataclass
class History:
    tenant: str
    collection: str
    conditions: list[Condition]
    base_file: str
    base_at: datetime
    until: datetime
    versions: list[DocVersion]
    documents: int
    events: int
    truncated: bool = False

    @property
    def query(self) -> str:
        return " and ".join(c.text for c in self.conditions)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        rows = [
            {
                "_id": v.id,
                "When": f"{v.at:%Y-%m-%d %H:%M:%S}",
                "What": v.what if v.matches else f"{v.what} (no longer matches)",
                "Changes": "; ".join(v.changes),
                "Moment before (restore --at)": v.moment_before,
            }
            for v in self.versions
        ]
        columns = ["_id", "When", "What", "Changes", "Moment before (restore --at)"]
        return pd.DataFrame(rows, columns=columns)


# -- applying an update's delta -------------------------------------------------------------


def _parts(path: str, exact: Mapping[str, Sequence[Any]]) -> list[Any]:
    return list(exact.get(path) or path.split("."))


def _step(container: Any, part: Any, create: bool) -> Any:
    if isinstance(container, list):
        index = int(part)
        if create:
            while len(container) <= index:
                container.append(None)
            if container[index] is None:
                container[index] = {}
        return container[index] if index < len(container) else None
    if isinstance(container, dict):
        key = str(part)
        if create and not isinstance(container.get(key), dict | list):
            container[key] = {}
        return container.get(key)
    return None


def _set(doc: dict[str, Any], parts: list[Any], value: Any) -> None:
    node: Any = doc
    for part in parts[:-1]:
        node = _step(node, part, create=True)
    last = parts[-1]
    if isinstance(node, list):
        index = int(last)
        while len(node) <= index:
            node.append(None)
        node[index] = value
    elif isinstance(node, dict):
        node[str(last)] = value


def _unset(doc: dict[str, Any], parts: list[Any]) -> None:
    node: Any = doc
    for part in parts[:-1]:
        node = _step(node, part, create=False)
        if node is None:
            return
    last = parts[-1]
    if isinstance(node, dict):
        node.pop(str(last), None)
    elif isinstance(node, list) and int(last) < len(node):
        node[int(last)] = None  # $unset of an array element leaves null, as MongoDB does


def apply_update(doc: dict[str, Any], description: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` after a change event's ``updateDescription`` (a new dict; ``doc`` unchanged)."""
    out = copy.deepcopy(doc)
    exact: Mapping[str, Sequence[Any]] = description.get("disambiguatedPaths") or {}
    for truncated in description.get("truncatedArrays") or []:
        node: Any = out
        for part in _parts(str(truncated["field"]), exact):
            node = _step(node, part, create=False)
        if isinstance(node, list):
            del node[int(truncated["newSize"]) :]
    for path, value in (description.get("updatedFields") or {}).items():
        _set(out, _parts(path, exact), copy.deepcopy(value))
    for path in description.get("removedFields") or []:
        _unset(out, _parts(path, exact))
    return out


# -- following the documents ----------------------------------------------------------------


def _aware(value: Any) -> Any:
    """Change events decode with naive UTC datetimes; documents in snapshots with aware
    ones (as ``find``'s values parse): make them alike."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    if isinstance(value, dict):
        return {k: _aware(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_aware(v) for v in value]
    return value


def _key_of(document_key: Mapping[str, Any]) -> bytes:
    return id_key(bson.encode({"_id": document_key["_id"]}))


class _Follow:
    def __init__(self, collection: str, conditions: Sequence[Condition], tz: str) -> None:
        self.collection = collection
        self.conditions = list(conditions)
        self.names = [c.name_bytes for c in conditions]
        self.values = [c.value_bytes for c in conditions]
        self.tz = zone(tz)
        self.current: dict[bytes, dict[str, Any]] = {}
        self.versions: list[DocVersion] = []
        self.truncated = False
        self.seen: set[bytes] = set()
        self.events = 0
        self.collection_seen = False

    def _match(self, doc: Mapping[str, Any]) -> bool:
        return all(matches(dict(doc), c) for c in self.conditions)

    def _follow(self, key: bytes) -> bool:
        if key in self.current:
            return True
        if len(self.seen) >= MAX_DOCUMENTS:
            self.truncated = True
            return False
        return True

    def base(self, snapshot: Snapshot, at: datetime) -> None:
        self.collection_seen = self.collection in snapshot.collections
        for name, docs in snapshot.events():
            if name != self.collection:
                continue
            if docs is None:
                break
            for raw in docs:
                if not all(
                    n in raw and (vs is None or any(v in raw for v in vs))
                    for n, vs in zip(self.names, self.values, strict=True)
                ):
                    continue
                doc = bson.decode(raw, codec_options=_find_codec)
                if not self._match(doc):
                    continue
                key = id_key(raw)
                if not self._follow(key):
                    continue
                self.seen.add(key)
                self.current[key] = doc
                self.versions.append(DocVersion(show_id(key), at, "in snapshot", document=doc))

    def event(self, event: Mapping[str, Any]) -> None:
        ns = event.get("ns") or {}
        op = event.get("operationType")
        if op == "dropDatabase":
            self._leave(event, "dropped (database)")
            return
        if ns.get("coll") != self.collection:
            if op == "rename" and (event.get("to") or {}).get("coll") == self.collection:
                self.collection_seen = True
            return
        self.events += 1
        self.collection_seen = True
        if op == "drop":
            self._leave(event, "dropped")
        elif op == "rename":
            self._leave(event, f"renamed to {(event.get('to') or {}).get('coll')}")
        elif op in ("insert", "replace"):
            key = _key_of(event["documentKey"])
            doc = _aware(dict(event["fullDocument"]))
            if key in self.current or (self._match(doc) and self._follow(key)):
                self._version(event, key, "inserted" if op == "insert" else "replaced", doc)
        elif op == "update":
            key = _key_of(event["documentKey"])
            if key in self.current:
                description = _aware(dict(event.get("updateDescription") or {}))
                self._version(event, key, "updated", apply_update(self.current[key], description))
        elif op == "delete":
            key = _key_of(event["documentKey"])
            if key in self.current:
                old = self.current.pop(key)
                self.versions.append(
                    DocVersion(
                        show_id(key),
                        self._when(event),
                        "deleted",
                        [f"document removed ({len(old)} fields)"],
                        None,
                        self._when(event) - timedelta(seconds=1),
                        matches=False,
                    )
                )

    def _when(self, event: Mapping[str, Any]) -> datetime:
        at: Timestamp = event["clusterTime"]
        return datetime.fromtimestamp(at.time, UTC).astimezone(self.tz)

    def _version(
        self, event: Mapping[str, Any], key: bytes, what: str, doc: dict[str, Any]
    ) -> None:
        old = self.current.get(key)
        self.seen.add(key)
        self.current[key] = doc
        when = self._when(event)
        changes = field_changes(old, doc) if old is not None else ["+ (new document)"]
        self.versions.append(
            DocVersion(
                show_id(key),
                when,
                what,
                changes,
                doc,
                when - timedelta(seconds=1),
                self._match(doc),
            )
        )

    def _leave(self, event: Mapping[str, Any], what: str) -> None:
        when = self._when(event)
        for key in list(self.current):
            self.current.pop(key)
            self.versions.append(
                DocVersion(show_id(key), when, what, [], None, when - timedelta(seconds=1), False)
            )


def follow(
    collection: str,
    conditions: Sequence[Condition],
    tz: str,
    snapshot: Snapshot,
    snapshot_at: datetime,
    events: Iterable[Mapping[str, Any]],
) -> _Follow:
    """Follow the matching documents of ``snapshot`` through ``events`` (stream order)."""
    state = _Follow(collection, conditions, tz)
    state.base(snapshot, snapshot_at.astimezone(zone(tz)))
    for event in events:
        state.event(event)
    return state


# -- the engine call ------------------------------------------------------------------------


def document_history(
    ctx: EngineContext,
    tenant: Tenant,
    collection: str,
    where: Sequence[str],
    *,
    actor: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> History:
    """Every version of ``collection``'s documents matching every ``field=value`` of
    ``where``, from the base snapshot (the newest at or before ``since``, default: the
    newest whose captured changes reach ``until``) through the captured changes up to
    ``until`` (default: the end of the coverage).

    Refuses before reading: an actor without ``restore``, a malformed condition, a tenant
    without captured changes, a range the backups and captured changes do not reach
    (saying what they reach); a query matching nothing says so (``QueryError``).
    """
    from daai_backup.inspection.sources import open_backup, require_reader
    from daai_backup.moments import merged, ranges_text
    from daai_backup.operations import change_source, describe_backup, snapshots

    require_reader(tenant, actor)
    if not collection or "\x00" in collection:
        raise QueryError("give the collection with --collection NAME")
    if not where:
        raise QueryError("give at least one --where field=value")
    conditions = [parse_where(w) for w in where]
    tz = ctx.timezone(tenant)
    folder = ctx.folder(tenant)
    source = change_source(ctx, tenant)
    coverage = merged(source.coverage(folder))
    if not coverage:
        raise ChangesNotCovered(
            f"tenant {tenant.id!r} has no captured changes: change capture has stored none "
            "for it yet (`daai-backup capture`, or the capture deployment); `daai-backup find` "
            "searches its backups"
        )
    found = snapshots(ctx, tenant)
    end = Timestamp(int(until.timestamp()), END_OF_SECOND) if until else coverage[-1][1]
    start = Timestamp(int(since.timestamp()), END_OF_SECOND) if since else end
    # The base: newest snapshot at or before the start, inside a covered range reaching end.
    usable = [
        s for s in found if s.at <= start and any(a <= s.at and end <= b for a, b in coverage)
    ]
    if not usable:
        from daai_backup.moments import recoverable

        what = ranges_text(recoverable(found, coverage), tz)
        raise ChangesNotCovered(
            f"tenant {tenant.id!r}: no backup and captured changes reach that range "
            f"({what}): pick a range inside them"
        )
    base = max(usable, key=lambda s: s.at)
    entry = describe_backup(ctx, tenant, base.file)
    base_at = datetime.fromtimestamp(base.at.time, UTC)
    with ExitStack() as stack:
        snapshot = open_backup(ctx, tenant, entry, stack)
        events = source.read_changes(folder, ctx.settings.keyring, tenant.id, base.at, end)
        state = follow(collection, conditions, tz, snapshot, base_at, events)
        known = sorted(snapshot.collections)
    if not state.collection_seen:
        raise QueryError(
            f"no collection {collection!r} in {base.file} nor in the captured changes after "
            f"it: its collections are {', '.join(known[:20]) or 'none'}"
        )
    if not state.seen:
        raise QueryError(
            f"no document of {collection!r} matches {' and '.join(c.text for c in conditions)}"
            f" in {base.file} or in the captured changes after it"
        )
    where_tz = zone(tz)
    return History(
        tenant=tenant.id,
        collection=collection,
        conditions=conditions,
        base_file=base.file,
        base_at=base_at.astimezone(where_tz),
        until=datetime.fromtimestamp(end.time, UTC).astimezone(where_tz),
        versions=state.versions,
        documents=len(state.seen),
        events=state.events,
        truncated=state.truncated,
    )
