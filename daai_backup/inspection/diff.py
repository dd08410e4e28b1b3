"""What differs between two snapshots of a tenant database, streamed.

Per collection: documents added (only in B), removed (only in A) and changed (the same
``_id``, different bytes), and changes of kind, indexes and options (a view's ``viewOn``
and ``pipeline`` are its options, so a changed view shows there).

How it streams, and the memory bound
------------------------------------
Both sides are read once, as streams (:mod:`daai_backup.inspection.sources`). A document
is reduced to its ``_id`` key and a 64-bit digest of its bytes. The side that finishes a
collection first keeps ``{_id key: digest}`` for it; the other side then streams that
collection against the map, popping each ``_id`` it meets (left over at the end: only on
the first side), and the map is dropped as soon as both sides have finished the
collection. A collection that the other side does not list at all is only counted.

The driver reads side A up to the end of one collection, then side B up to the end of the
same collection. So **at any moment the process holds one map entry (about 100-150 bytes,
``bench/RESULTS.md``) per document of the collections that one side has started or
finished and the other side has not finished yet**, and never a document itself beyond
one read batch. For what daai-backup writes (one collection after another, in name order)
and for the live database (read in the other side's order) that is the documents of one
collection: memory grows with the largest collection's document count, not with its bytes
nor with the database's size. For a ``mongodump`` archive that interleaves collections, or
two archives whose collection orders differ, both sides may hold maps at once: the
documents of the collections interleaved or out of order, on each side (at worst every
document of both snapshots). ``SnapshotDiff.peak_entries`` reports the peak reached.

Changed means different bytes: a document rewritten with the same values in another field
order, or a number stored as another BSON type, counts as changed. Index versions (``v``)
and the obsolete ``ns`` field are not compared; a collection's uuid is not compared either
(a restore or a re-created collection gets a new one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bson import json_util

from daai_backup.inspection.raw_ids import id_key, show_id
from daai_backup.inspection.sources import Event, Snapshot
from daai_backup.mongo.archive_format import CANONICAL_JSON, CollectionMetadata

if TYPE_CHECKING:
    import pandas as pd

#: Index fields that say nothing about what the index does.
_IGNORED_INDEX_FIELDS = frozenset({"v", "ns"})

COLUMNS = (
    "Collection",
    "Kind",
    "Status",
    "Docs A",
    "Docs B",
    "Added",
    "Removed",
    "Changed",
    "Indexes",
    "Options",
)


@dataclass
class CollectionDiff:
    """What differs for one collection name between side A and side B.

    ``kind_a``/``kind_b`` are None where the side does not have the collection. ``indexes``
    and ``options`` list what differs as ``+name`` (only in B), ``-name`` (only in A) and
    ``~name`` (in both, different). The ``*_ids`` lists hold at most ``show`` ``_id``s each,
    as a person types them.
    """

    name: str
    kind_a: str | None = None
    kind_b: str | None = None
    documents_a: int = 0
    documents_b: int = 0
    added: int = 0
    removed: int = 0
    changed: int = 0
    indexes: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    added_ids: list[str] = field(default_factory=list)
    removed_ids: list[str] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """ "new" (only in B), "gone" (only in A), "changed" or "same"."""
        if self.kind_a is None:
            return "new"
        if self.kind_b is None:
            return "gone"
        if (
            self.added
            or self.removed
            or self.changed
            or self.indexes
            or self.options
            or self.kind_a != self.kind_b
        ):
            return "changed"
        return "same"

    @property
    def kind(self) -> str:
        if self.kind_a and self.kind_b and self.kind_a != self.kind_b:
            return f"{self.kind_a} -> {self.kind_b}"
        return self.kind_b or self.kind_a or "collection"

    def row(self) -> dict[str, Any]:
        return {
            "Collection": self.name,
            "Kind": self.kind,
            "Status": self.status,
            "Docs A": self.documents_a,
            "Docs B": self.documents_b,
            "Added": self.added,
            "Removed": self.removed,
            "Changed": self.changed,
            "Indexes": ", ".join(self.indexes),
            "Options": ", ".join(self.options),
        }


@dataclass
class SnapshotDiff:
    """The diff of two snapshots, one :class:`CollectionDiff` per collection name."""

    a: str
    b: str
    collections: list[CollectionDiff]
    peak_entries: int = 0
    """The most ``_id`` map entries held at once (the memory bound, in documents)."""

    def to_frame(self) -> pd.DataFrame:
        """One row per collection (:data:`COLUMNS`), by name."""
        import pandas as pd

        return pd.DataFrame([c.row() for c in self.collections], columns=list(COLUMNS))

    @property
    def identical(self) -> bool:
        return all(c.status == "same" for c in self.collections)

    def totals(self) -> dict[str, int]:
        return {
            "added": sum(c.added for c in self.collections),
            "removed": sum(c.removed for c in self.collections),
            "changed": sum(c.changed for c in self.collections),
            "collections_changed": sum(c.status != "same" for c in self.collections),
        }

    def summary(self) -> str:
        """One line: the totals."""
        if self.identical:
            return f"{self.b} holds the same data as {self.a}"
        t = self.totals()
        return (
            f"{t['collections_changed']} of {len(self.collections)} collection(s) differ: "
            f"{t['added']:,} document(s) added, {t['removed']:,} removed, {t['changed']:,} "
            f"changed from {self.a} to {self.b}"
        )

    def examples(self) -> Iterator[str]:
        """``<collection>: + id, - id, ~ id`` lines for the shown ``_id``s."""
        for c in self.collections:
            shown = [f"+ {i}" for i in c.added_ids]
            shown += [f"- {i}" for i in c.removed_ids]
            shown += [f"~ {i}" for i in c.changed_ids]
            if shown:
                yield f"{c.name}: " + ", ".join(shown)

    def to_markdown(self) -> str:
        """A markdown report: the summary, the table, the shown ``_id``s."""
        frame = self.to_frame()
        lines = [f"# Diff of {self.a} and {self.b}", "", self.summary(), ""]
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + "---|" * len(COLUMNS))
        for row in frame.itertuples(index=False):
            cells = [str(v).replace("|", "\\|") for v in row]
            lines.append("| " + " | ".join(cells) + " |")
        examples = list(self.examples())
        if examples:
            lines += ["", "Documents (`+` added, `-` removed, `~` changed):", ""]
            lines += [f"- {e}".replace("|", "\\|") for e in examples]
        return "\n".join(lines) + "\n"


# --- metadata -----------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    return json_util.dumps(value, json_options=CANONICAL_JSON, separators=(",", ":"))


def _index_spec(spec: Mapping[str, Any]) -> str:
    """An index's defining fields, canonical: ``key`` in its order, the rest by name."""
    rest = {k: spec[k] for k in sorted(spec) if k not in _IGNORED_INDEX_FIELDS and k != "key"}
    key = spec.get("key") or {}
    pairs = list(key.items()) if isinstance(key, Mapping) else key
    return _canonical({"key": pairs, **rest})


def _named_changes(a: Mapping[str, str], b: Mapping[str, str]) -> list[str]:
    out = [f"+{n}" for n in sorted(b.keys() - a.keys())]
    out += [f"-{n}" for n in sorted(a.keys() - b.keys())]
    out += [f"~{n}" for n in sorted(a.keys() & b.keys()) if a[n] != b[n]]
    return out


def index_changes(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> list[str]:
    """Indexes only in B (``+name``), only in A (``-name``), or defined differently (``~``)."""

    def by_name(specs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        return {str(s.get("name")): _index_spec(s) for s in specs}

    return _named_changes(by_name(a), by_name(b))


def option_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Collection options only in B (``+``), only in A (``-``), or with another value (``~``)."""
    return _named_changes(
        {k: _canonical(v) for k, v in a.items()}, {k: _canonical(v) for k, v in b.items()}
    )


# --- the streamed comparison --------------------------------------------------------------

_A, _B = 0, 1


class _Namespace:
    """One collection name while the diff runs: per side, its mode, map and whether it ended."""

    __slots__ = ("done", "maps", "modes", "result")

    def __init__(self, name: str) -> None:
        self.result = CollectionDiff(name)
        self.maps: list[dict[bytes, int] | None] = [None, None]
        self.modes: list[str | None] = [None, None]  # "only", "stream" or "build"
        self.done = [False, False]


class _Diff:
    def __init__(self, a: Snapshot, b: Snapshot, show: int) -> None:
        self.sides = (a, b)
        self.show = show
        self.namespaces: dict[str, _Namespace] = {}
        self.iterators: tuple[Iterator[Event], Iterator[Event]] = (a.events(), b.events())
        self.finished = [False, False]
        self.peak_entries = 0

    def namespace(self, name: str) -> _Namespace:
        ns = self.namespaces.get(name)
        if ns is None:
            ns = self.namespaces[name] = _Namespace(name)
        return ns

    def _only(self, ns: _Namespace, side: int, key: bytes) -> None:
        """A document only on ``side``: added when that is B, removed when A."""
        r = ns.result
        if side == _B:
            r.added += 1
            if len(r.added_ids) < self.show:
                r.added_ids.append(show_id(key))
        else:
            r.removed += 1
            if len(r.removed_ids) < self.show:
                r.removed_ids.append(show_id(key))

    def _changed(self, ns: _Namespace, key: bytes) -> None:
        r = ns.result
        r.changed += 1
        if len(r.changed_ids) < self.show:
            r.changed_ids.append(show_id(key))

    def _mode(self, ns: _Namespace, side: int) -> str:
        mode = ns.modes[side]
        if mode is None:
            other = 1 - side
            if ns.result.name not in self.sides[other].collections:
                mode = "only"
            elif ns.done[other]:
                mode = "stream"
            else:
                mode = "build"
                ns.maps[side] = {}
            ns.modes[side] = mode
        return mode

    def documents(self, side: int, name: str, docs: list[bytes]) -> None:
        ns = self.namespace(name)
        mode = self._mode(ns, side)
        if side == _A:
            ns.result.documents_a += len(docs)
        else:
            ns.result.documents_b += len(docs)
        if mode == "build":
            own = ns.maps[side]
            assert own is not None
            for doc in docs:
                own[id_key(doc)] = hash(doc)
        elif mode == "stream":
            theirs = ns.maps[1 - side]
            assert theirs is not None
            for doc in docs:
                key = id_key(doc)
                digest = theirs.pop(key, None)
                if digest is None:
                    self._only(ns, side, key)
                elif digest != hash(doc):
                    self._changed(ns, key)
        else:
            for doc in docs:
                self._only(ns, side, id_key(doc))

    def end(self, side: int, name: str) -> None:
        ns = self.namespace(name)
        self._mode(ns, side)
        ns.done[side] = True
        # Maps only grow while built, so the peak is reached at the end of a collection.
        held = sum(len(m) for n in self.namespaces.values() for m in n.maps if m is not None)
        self.peak_entries = max(self.peak_entries, held)
        if ns.done[1 - side] or name not in self.sides[1 - side].collections:
            self._settle(ns)

    def _settle(self, ns: _Namespace) -> None:
        """Both sides are done with ``ns``: compare what is left in the maps, then drop them."""
        a, b = ns.maps
        if a is not None and b is not None:  # both built (interleaved): compare the maps
            for key, digest in b.items():
                theirs = a.pop(key, None)
                if theirs is None:
                    self._only(ns, _B, key)
                elif theirs != digest:
                    self._changed(ns, key)
            b = None
        for side, left in ((_A, a), (_B, b)):
            for key in left or ():
                self._only(ns, side, key)
        ns.maps = [None, None]

    def advance(self, side: int) -> str | None:
        """Read ``side`` up to the end of one collection; its name, or None at the end."""
        for name, docs in self.iterators[side]:
            if docs is None:
                self.end(side, name)
                return name
            self.documents(side, name, docs)
        self.finished[side] = True
        return None

    def run(self) -> SnapshotDiff:
        while not all(self.finished):
            if self.finished[_A]:
                self.advance(_B)
                continue
            name = self.advance(_A)
            if name is None or name not in self.sides[_B].collections:
                continue
            ns = self.namespace(name)
            while not self.finished[_B] and not ns.done[_B]:
                self.advance(_B)
        for ns in self.namespaces.values():  # a collection a side listed but never ended
            self._settle(ns)
        return self._result()

    def _result(self) -> SnapshotDiff:
        a, b = self.sides
        out: list[CollectionDiff] = []
        for name in sorted(set(a.collections) | set(b.collections) | set(self.namespaces)):
            r = self.namespace(name).result
            meta_a: CollectionMetadata | None = a.collections.get(name)
            meta_b: CollectionMetadata | None = b.collections.get(name)
            r.kind_a = meta_a.type if meta_a else ("collection" if r.documents_a else None)
            r.kind_b = meta_b.type if meta_b else ("collection" if r.documents_b else None)
            if meta_a and meta_b:
                r.indexes = index_changes(meta_a.indexes, meta_b.indexes)
                r.options = option_changes(meta_a.options, meta_b.options)
            out.append(r)
        return SnapshotDiff(a=a.label, b=b.label, collections=out, peak_entries=self.peak_entries)


def diff_snapshots(a: Snapshot, b: Snapshot, *, show: int = 0) -> SnapshotDiff:
    """Compare snapshot A with snapshot B, reading each once (see the module's memory bound).

    ``show``: how many ``_id``s of added, removed and changed documents to keep per
    collection. Errors of either side (a damaged archive, the database) propagate.
    """
    return _Diff(a, b, max(0, show)).run()
