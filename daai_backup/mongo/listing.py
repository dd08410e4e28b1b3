"""The catalog of a database as a backup sees it, and what changed between two listings.

The dump lists the collections before it reads and again after: any difference means the
archive's metadata and data may not describe one point in time (see ``docs/decisions.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bson import json_util
from pymongo.database import Database

from daai_backup.mongo.archive_format import CANONICAL_JSON, CollectionMetadata
from daai_backup.mongo.namespaces import is_listed, shown
from daai_backup.mongo.translate import translated

#: How many names a message lists per kind of change before "and N more".
_SHOWN = 5


def _kind(info: Mapping[str, Any]) -> Literal["collection", "view", "timeseries"]:
    kind = info.get("type", "collection")
    if kind == "view":
        return "view"
    if kind == "timeseries":
        return "timeseries"
    return "collection"


def list_metadata(db: Database[Any]) -> list[CollectionMetadata]:
    """The backed-up collections and views of ``db`` as archive metadata, in name order.

    Leaves out the restore's own collections and ``system.*`` other than ``system.js``
    (``namespaces.is_listed``). Names are not checked here; the dump checks them (and so
    refuses a user's ``__daai_restore.*`` collection rather than lose it unseen).
    """
    out: list[CollectionMetadata] = []
    with translated(f"listing the collections of {db.name!r}"):
        infos = sorted(db.list_collections(), key=lambda i: str(i["name"]))
        for info in infos:
            name = str(info["name"])
            if not is_listed(name):
                continue
            kind = _kind(info)
            indexes = [] if kind == "view" else list(db.get_collection(name).list_indexes())
            raw_uuid = (info.get("info") or {}).get("uuid")
            uuid = bytes(raw_uuid).hex() if isinstance(raw_uuid, bytes) else None
            out.append(
                CollectionMetadata(
                    db=db.name,
                    collection=name,
                    type=kind,
                    options=info.get("options") or {},
                    indexes=indexes,
                    uuid=uuid,
                )
            )
    return out


def _names(label: str, names: list[str]) -> str:
    listed = ", ".join(shown(n) for n in names[:_SHOWN])
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return f"{label}: {listed}{more}"


@dataclass(frozen=True)
class CatalogChange:
    """One collection or view whose catalog entry differs between two listings.

    ``change`` is "new", "gone" or "changed"; for "changed", ``what`` names what differs, in
    this order: "type", "uuid" (a drop and re-create, a rename over it, an ``$out``),
    "options", "indexes". A rename shows as one name gone and one new.
    """

    collection: str
    change: Literal["new", "gone", "changed"]
    what: tuple[str, ...] = ()


def _aspects(meta: CollectionMetadata) -> dict[str, str]:
    return {
        "type": meta.type,
        "uuid": meta.uuid or "",
        "options": json_util.dumps(dict(meta.options), json_options=CANONICAL_JSON),
        "indexes": json_util.dumps(list(meta.indexes), json_options=CANONICAL_JSON),
    }


def catalog_diff(
    before: Sequence[CollectionMetadata], after: Sequence[CollectionMetadata]
) -> list[CatalogChange]:
    """What differs between two listings, by collection name; empty if nothing.

    A collection counts as changed when its kind, uuid (where the server gives one), options
    or indexes differ.
    """
    old = {m.collection: _aspects(m) for m in before}
    new = {m.collection: _aspects(m) for m in after}
    changes = [CatalogChange(n, "new") for n in sorted(new.keys() - old.keys())]
    changes += [CatalogChange(n, "gone") for n in sorted(old.keys() - new.keys())]
    for name in sorted(old.keys() & new.keys()):
        what = tuple(k for k in old[name] if old[name][k] != new[name][k])
        if what:
            changes.append(CatalogChange(name, "changed", what))
    return changes


def describe_changes(changes: Sequence[CatalogChange]) -> list[str]:
    """One phrase per kind of change: e.g. ``["new: 'c2'", "gone: 'b', 'c'"]``."""
    phrases = []
    for kind in ("new", "gone", "changed"):
        names = [c.collection for c in changes if c.change == kind]
        if names:
            phrases.append(_names(kind, names))
    return phrases


def catalog_changes(
    before: Sequence[CollectionMetadata], after: Sequence[CollectionMetadata]
) -> list[str]:
    """What differs between two listings, one phrase per kind of change; empty if nothing."""
    return describe_changes(catalog_diff(before, after))
