"""The restore journal: what the dump, the restore and the swap read about a restore under way.

The collection ``__daai_restore.journal`` holds, while a restore of the database is under way,
one *state document* ``{_id: "restore", state, run, ...}`` and beside it one *plan document*
per collection and per view of the snapshot (and, once swapping, one per live collection the
swap drops), each tagged with the run. No document grows with the number or the size of the
collections, so no plan outgrows MongoDB's 16 MB document limit:

- ``{_id: "<run>.c<n>", run, kind: "collection", n, staging, target, method, spec, outcome}``:
  ``spec`` is the BSON of ``{options, indexes}`` as binary (validators and pipelines hold
  ``$``-keys; binary BSON keeps every type exactly and is no larger than the options the
  server stored), ``outcome`` what staging found (documents, bytes, indexes);
- ``{_id: "<run>.v<n>", run, kind: "view", n, name, spec}``: ``spec`` is the BSON of the
  view's options;
- ``{_id: "<run>.<token>.d<n>", run, kind: "drop", token, n, name}``: written by the swap
  before it starts; only the ``token`` the state document names counts.

States of the state document:

- ``loading``: staging collections are being created, loaded, indexed and verified; the
  plan documents are written at the end of it;
- ``staged``: the staged copy is verified and the plan documents are complete (the state
  document counts them); the live database is still untouched;
- ``swapping``: the live database is being changed; a later run finishes the swap first.

The state document is the commit point: plan documents are written first, then the state
flips, so a reader that sees ``staged`` or ``swapping`` finds the whole plan. The journal
collection is dropped when the swap is done. Kept apart from ``dump.py`` and ``restore.py``
so each can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import bson
from bson import json_util
from bson.binary import Binary
from pymongo.database import Database

from daai_backup.errors import DatabaseError
from daai_backup.mongo.archive_format import CANONICAL_JSON
from daai_backup.mongo.namespaces import RESERVED_PREFIX

#: The collection holding the restore's state document and plan documents.
JOURNAL = f"{RESERVED_PREFIX}journal"
JOURNAL_ID = "restore"
#: The journal layout the state document names (``layout``); absent: the one-document
#: layout of earlier versions, still read so their interrupted swaps can be finished.
LAYOUT = 2
#: Plan documents per insert (each is small except for large options), and spec bytes.
_INSERT_BATCH = 100
_INSERT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class PlannedCollection:
    """One staged collection and how it replaces its live target."""

    n: int
    staging: str
    target: str
    method: str  # "rename" or "copy" (swap.swap_method)
    options: Mapping[str, Any]
    indexes: Sequence[Mapping[str, Any]]  # createIndexes specs, without _id_
    outcome: Mapping[str, Any] = field(default_factory=dict)  # restore.RestoredCollection


@dataclass(frozen=True)
class PlannedView:
    n: int
    name: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class SwapPlan:
    """Everything the swap does, as the journal holds it."""

    run: str
    collections: list[PlannedCollection]
    views: list[PlannedView]
    drop: list[str]  # live collections the snapshot lacks, fixed when swapping starts


def read_journal(db: Database[Any]) -> Mapping[str, Any] | None:
    """The state document of ``db``'s journal, None when no restore is under way."""
    journal: Mapping[str, Any] | None = db.get_collection(JOURNAL).find_one({"_id": JOURNAL_ID})
    return journal


def pending_swap(db: Database[Any]) -> Mapping[str, Any] | None:
    """The state document if a restore of ``db`` stopped while swapping; None otherwise."""
    journal = read_journal(db)
    if journal is not None and journal.get("state") == "swapping":
        return journal
    return None


def _spec(value: Mapping[str, Any]) -> Binary:
    return Binary(bson.encode(dict(value)))


def _unspec(value: bytes) -> dict[str, Any]:
    return bson.decode(bytes(value))


def write_plan(
    db: Database[Any],
    run: str,
    collections: Iterable[PlannedCollection],
    views: Iterable[PlannedView],
) -> tuple[int, int]:
    """Insert the plan documents of ``run`` (state still ``loading``); how many of each."""
    counts = [0, 0]

    def documents() -> Iterable[dict[str, Any]]:
        for c in collections:
            counts[0] += 1
            yield {
                "_id": f"{run}.c{c.n}",
                "run": run,
                "kind": "collection",
                "n": c.n,
                "staging": c.staging,
                "target": c.target,
                "method": c.method,
                "spec": _spec({"options": c.options, "indexes": list(c.indexes)}),
                "outcome": dict(c.outcome),
            }
        for v in views:
            counts[1] += 1
            yield {
                "_id": f"{run}.v{v.n}",
                "run": run,
                "kind": "view",
                "n": v.n,
                "name": v.name,
                "spec": _spec(v.options),
            }

    _insert(db, documents())
    return counts[0], counts[1]


def write_drops(db: Database[Any], run: str, token: str, names: Sequence[str]) -> None:
    """Insert the drop list of one swap attempt (``token``); it counts once the state
    document names the token."""
    documents = (
        {
            "_id": f"{run}.{token}.d{n}",
            "run": run,
            "kind": "drop",
            "token": token,
            "n": n,
            "name": name,
        }
        for n, name in enumerate(names)
    )
    _insert(db, documents)


def _insert(db: Database[Any], documents: Iterable[dict[str, Any]]) -> None:
    """Insert in batches of at most ``_INSERT_BATCH`` documents or ~``_INSERT_BYTES`` of
    specs, so large options are never all encoded at once."""
    journal = db.get_collection(JOURNAL)
    batch: list[dict[str, Any]] = []
    size = 0
    for document in documents:
        batch.append(document)
        size += len(document.get("spec", b""))
        if len(batch) >= _INSERT_BATCH or size >= _INSERT_BYTES:
            journal.insert_many(batch, ordered=True)
            batch, size = [], 0
    if batch:
        journal.insert_many(batch, ordered=True)


def _plan_documents(
    db: Database[Any], run: str, kind: str, **extra: Any
) -> list[Mapping[str, Any]]:
    found = db.get_collection(JOURNAL).find({"run": run, "kind": kind, **extra}, sort=[("n", 1)])
    return list(found)


def read_plan(db: Database[Any], state: Mapping[str, Any]) -> SwapPlan:
    """The whole plan of the run the state document ``state`` names.

    Raises ``DatabaseError`` when plan documents are missing (the state document counts
    them): a partial plan is never carried out.
    """
    run = str(state["run"])
    if "layout" not in state:
        return _legacy_plan(state)
    collections = [
        PlannedCollection(
            n=int(d["n"]),
            staging=str(d["staging"]),
            target=str(d["target"]),
            method=str(d["method"]),
            options=(spec := _unspec(d["spec"]))["options"],
            indexes=spec["indexes"],
            outcome=d.get("outcome") or {},
        )
        for d in _plan_documents(db, run, "collection")
    ]
    views = [
        PlannedView(n=int(d["n"]), name=str(d["name"]), options=_unspec(d["spec"]))
        for d in _plan_documents(db, run, "view")
    ]
    drop: list[str] = []
    if state.get("state") == "swapping":
        docs = _plan_documents(db, run, "drop", token=state.get("drop_token"))
        drop = [str(d["name"]) for d in docs]
    wanted = (state.get("collections"), state.get("views"), state.get("drops", len(drop)))
    if wanted != (len(collections), len(views), len(drop)):
        raise DatabaseError(
            f"the restore journal of database {db.name!r} (run {run}) is incomplete: it "
            f"counts {wanted[0]} collections, {wanted[1]} views and {wanted[2]} drops, "
            f"holds {len(collections)}, {len(views)} and {len(drop)}; not carrying it out"
        )
    return SwapPlan(run=run, collections=collections, views=views, drop=drop)


def _legacy_plan(state: Mapping[str, Any]) -> SwapPlan:
    """The plan of a layout-1 journal: everything in the state document, as Extended JSON."""

    def loads(text: str) -> Any:
        return json_util.loads(text, json_options=CANONICAL_JSON)

    outcomes = {c["name"]: c for c in (state.get("outcome") or {}).get("collections", [])}
    return SwapPlan(
        run=str(state["run"]),
        collections=[
            PlannedCollection(
                n=n,
                staging=str(r["staging"]),
                target=str(r["target"]),
                method=str(r["method"]),
                options=loads(r["options"]),
                indexes=loads(r["indexes"]),
                outcome=outcomes.get(r["target"], {}),
            )
            for n, r in enumerate(state.get("renames", []))
        ],
        views=[
            PlannedView(n=n, name=str(v["name"]), options=loads(v["options"]))
            for n, v in enumerate(state.get("views", []))
        ],
        drop=[str(name) for name in state.get("drop", [])],
    )
