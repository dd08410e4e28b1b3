"""Replay: apply captured change events to a staged restore, up to and including a moment.

A restore to a moment is a staged restore of the newest snapshot at or before it
(``restore.stage_restore``), then :func:`replay_staged` over the change events that follow
the snapshot's cluster time, then the usual swap. Replay changes only the staged copy: the
staging collections the journal maps to their targets, and the journal's plan (collections
created, dropped or renamed, options and indexes changed, views), so the swap puts exactly
the state at the moment in place.

Events are the change stream's own, as the server sent them (``show_expanded_events``, never
``fullDocument: updateLookup``: an update is replayed from its ``updateDescription`` only).
What each event becomes, on the staging collection its namespace maps to:

- ``insert``/``replace``/``delete``: the document (``fullDocument`` of an insert or replace
  is the document as written) by its ``documentKey``; each must hit exactly one document;
- ``update``: ``truncatedArrays`` (``$push`` with ``$slice``), then ``updatedFields``
  (``$set``) and ``removedFields`` (``$unset``); a path whose field names hold a dot or a
  ``$`` (``disambiguatedPaths`` tells them apart) or a value with such keys becomes a
  pipeline update of ``$setField``/``$getField`` stages, which name fields literally;
- ``create`` (options, views), ``drop``, ``rename`` (within the database: the entry is
  renamed; out of it: dropped), ``createIndexes``, ``dropIndexes``, ``modify`` (collMod),
  ``dropDatabase``. An insert into a collection the state lacks creates it, as the server did.

Duplicates have no effect: events at or before the snapshot's cluster time and after the
moment are skipped, and an event seen before (its resume token, within its cluster time; an
event of an earlier cluster time than one already applied is a re-delivery) is skipped.
The events of one transaction share their cluster time, so a moment takes all or none.

Crash safety: the journal says ``replaying`` while events are applied; a crash leaves
that state, which the swap refuses and the next restore drops (like ``loading``). At the end
the plan is rewritten from the staging collections themselves (options and indexes as the
server now lists them), verified (every collection's count against the snapshot's count
plus inserts minus deletes), and the journal flips back to ``staged``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import bson
from bson.son import SON
from bson.timestamp import Timestamp
from pymongo import DeleteOne, InsertOne, MongoClient, ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from daai_backup.errors import DatabaseError, RestoreVerificationFailed
from daai_backup.mongo.journal import (
    JOURNAL,
    JOURNAL_ID,
    PlannedCollection,
    PlannedView,
    SwapPlan,
    read_journal,
    read_plan,
    write_plan,
)
from daai_backup.mongo.namespaces import is_backed_up, shown, staging_name
from daai_backup.mongo.swap import drop_leftovers, live_collections, rename_keeps_options
from daai_backup.mongo.translate import translated

#: CRUD operations sent in one ordered bulk write (consecutive events of one collection).
BATCH_OPS: Final = 500
#: The largest ``$slice`` count, for "the rest of the array".
_REST: Final = 2**31 - 1
#: Index specs as the server lists them; ``ns`` is not part of a spec.
_NOT_SPEC: Final = ("ns",)
#: Events that change no data of a database: the cluster's layout, or the stream's end.
_LAYOUT_EVENTS: Final = frozenset(
    {"shardCollection", "reshardCollection", "refineCollectionShardKey", "invalidate"}
)

Update: TypeAlias = dict[str, Any] | list[dict[str, Any]]


@dataclass(frozen=True)
class ReplayResult:
    """What :func:`replay_staged` applied."""

    applied: int  # events that changed the staged copy
    skipped: int  # duplicates, and events outside (after, until]
    first: Timestamp | None  # cluster time of the first event applied
    last: Timestamp | None  # and of the last
    collections: int
    views: int
    documents: int  # in the staged copy afterwards
    seconds: float


@dataclass
class _Coll:
    staging: str
    n: int
    expected: int  # documents: the snapshot's count + inserts - deletes
    indexes: set[str] = field(default_factory=lambda: {"_id_"})


@dataclass
class _State:
    """The staged database as replay sees it: targets -> staging collections, and views."""

    db: Database[Any]
    run: str
    colls: dict[str, _Coll]
    views: dict[str, dict[str, Any]]
    numbers: Iterator[int]
    pending: list[Any] = field(default_factory=list)
    pending_coll: str | None = None
    pending_counts: list[int] = field(default_factory=lambda: [0, 0, 0])  # ins, match, del
    pending_first: int = 0  # event number of the first pending op (for messages)
    idempotent: bool = False  # the oplog's way: see replay_staged

    def new_collection(self, target: str, options: Mapping[str, Any]) -> _Coll:
        if "timeseries" in options:
            raise DatabaseError(
                f"collection {shown(target)} of database {self.db.name!r} became a time-series "
                "collection after the snapshot: change streams do not carry time-series "
                "writes, so no moment after it can be restored exactly; restore a snapshot"
            )
        n = next(self.numbers)
        coll = _Coll(staging_name(self.run, n), n, 0)
        self.db.command(SON([("create", coll.staging), *options.items()]))
        self.colls[target] = coll
        return coll


def _ts(event: Mapping[str, Any]) -> Timestamp:
    at = event.get("clusterTime")
    if not isinstance(at, Timestamp):
        raise DatabaseError(
            f"a change event without a cluster time ({event.get('operationType')!r}): the "
            "captured changes are damaged; restore a snapshot instead"
        )
    return at


def _event_id(event: Mapping[str, Any]) -> bytes:
    token = event.get("_id")
    if isinstance(token, Mapping):
        return bson.encode(dict(token))
    return bson.encode(dict(event))


def select_events(
    events: Iterable[Mapping[str, Any]], after: Timestamp, until: Timestamp, skipped: list[int]
) -> Iterator[Mapping[str, Any]]:
    """The events with ``after < clusterTime <= until``, each once, in stream order.

    An event seen before is skipped (its resume token, or its whole encoding, within its
    cluster time), and so is one of an earlier cluster time than an event already passed
    on (a re-delivery: a stream never goes back). ``skipped[0]`` counts what was left out.
    """
    current: Timestamp | None = None
    seen: set[bytes] = set()
    for event in events:
        at = _ts(event)
        if at <= after or at > until or (current is not None and at < current):
            skipped[0] += 1
            continue
        if at != current:
            current, seen = at, set()
        key = _event_id(event)
        if key in seen:
            skipped[0] += 1
            continue
        seen.add(key)
        yield event


# -- updates ---------------------------------------------------------------------------------


def _odd_name(part: object) -> bool:
    """A field name a dotted path cannot carry: empty, with a dot, or starting with ``$``."""
    return isinstance(part, str) and (not part or "." in part or part.startswith("$"))


def _odd_value(value: Any) -> bool:
    """Whether a value holds a key ``$set`` would refuse or read as a path."""
    if isinstance(value, Mapping):
        return any(_odd_name(k) or _odd_value(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_odd_value(v) for v in value)
    return False


def _lit(name: str) -> Any:
    return {"$literal": name} if name.startswith("$") else name


def _set_at(doc: Any, parts: list[Any], leaf: Any) -> Any:
    """An expression: ``doc`` with the value at ``parts`` replaced by ``leaf`` (an expression;
    ``"$$REMOVE"`` removes a field). Field names are taken literally; an int is an array
    position; a digit string is a position in an array and a field name in a document."""
    head, rest = parts[0], parts[1:]

    def inner(current: Any) -> Any:
        return _set_at(current, rest, leaf) if rest else leaf

    def at_field(name: str) -> Any:
        got = {"$getField": {"field": _lit(name), "input": doc}}
        return {"$setField": {"field": _lit(name), "input": doc, "value": inner(got)}}

    def at_index(i: int) -> Any:
        return {
            "$concatArrays": [
                {"$slice": [doc, i]} if i else [],
                [inner({"$arrayElemAt": [doc, i]})],
                {"$slice": [doc, i + 1, _REST]},
            ]
        }

    if isinstance(head, int):
        return at_index(head)
    if head.isdigit():
        return {"$cond": [{"$isArray": doc}, at_index(int(head)), at_field(head)]}
    return at_field(head)


def _truncate_at(doc: Any, parts: list[Any], size: int) -> Any:
    head, rest = parts[0], parts[1:]
    if not rest and not isinstance(head, int):
        got = {"$getField": {"field": _lit(head), "input": doc}}
        return {"$setField": {"field": _lit(head), "input": doc, "value": {"$slice": [got, size]}}}
    # Deeper: rebuild along the path; the leaf slices the array found there.
    return _set_at(doc, parts[:-1], _truncate_at(_get_at(doc, parts[:-1]), parts[-1:], size))


def _get_at(doc: Any, parts: list[Any]) -> Any:
    for part in parts:
        if isinstance(part, int):
            doc = {"$arrayElemAt": [doc, part]}
        else:
            doc = {"$getField": {"field": _lit(part), "input": doc}}
    return doc


def update_for(description: Mapping[str, Any]) -> list[Update]:
    """The updates (applied in order to the one document) that redo ``updateDescription``.

    Plain paths become operators: truncations first (``$push`` of nothing with ``$slice``),
    then ``$set``/``$unset`` (separate updates: a truncated array's elements may be set
    too). Paths through odd field names (``disambiguatedPaths``), and values holding such
    keys, become one pipeline update of ``$replaceWith`` stages, one per change, in the
    event's order.
    """
    updated: Mapping[str, Any] = description.get("updatedFields") or {}
    removed: list[str] = list(description.get("removedFields") or [])
    truncated: list[Mapping[str, Any]] = list(description.get("truncatedArrays") or [])
    exact: Mapping[str, list[Any]] = description.get("disambiguatedPaths") or {}

    def parts(path: str) -> list[Any]:
        return list(exact.get(path) or path.split("."))

    odd = any(_odd_name(p) for path in [*updated, *removed] for p in parts(path))
    odd = odd or any(_odd_name(p) for t in truncated for p in parts(str(t["field"])))
    odd = odd or any(_odd_value(v) for v in updated.values())
    if odd:
        stages: list[dict[str, Any]] = []
        for t in truncated:
            expr = _truncate_at("$$ROOT", parts(str(t["field"])), int(t["newSize"]))
            stages.append({"$replaceWith": expr})
        for path, value in updated.items():
            stages.append({"$replaceWith": _set_at("$$ROOT", parts(path), {"$literal": value})})
        for path in removed:
            stages.append({"$replaceWith": _set_at("$$ROOT", parts(path), "$$REMOVE")})
        return [stages] if stages else []

    def dotted(path: str) -> str:
        return ".".join(str(p) for p in parts(path))

    out: list[Update] = []
    if truncated:
        slices = {
            dotted(str(t["field"])): {"$each": [], "$slice": int(t["newSize"])} for t in truncated
        }
        out.append({"$push": slices})
    change: dict[str, Any] = {}
    if updated:
        change["$set"] = {dotted(p): v for p, v in updated.items()}
    if removed:
        change["$unset"] = {dotted(p): "" for p in removed}
    if change:
        out.append(change)
    return out


# -- applying --------------------------------------------------------------------------------


def _flush(state: _State) -> None:
    """Send the pending CRUD operations of one collection; each must have hit one document."""
    if not state.pending:
        return
    target = state.pending_coll
    assert target is not None
    coll = state.colls[target]
    inserts, matches, deletes = state.pending_counts
    sink = state.db.get_collection(coll.staging)
    try:
        result = sink.bulk_write(state.pending, ordered=True, bypass_document_validation=True)
        got = (result.inserted_count, result.matched_count, result.deleted_count)
    except BulkWriteError as exc:
        detail = exc.details.get("writeErrors") or [{}]
        raise RestoreVerificationFailed(
            f"replaying changes of {shown(target)} failed near event {state.pending_first}: "
            f"{detail[0].get('errmsg', exc)}; the snapshot and the captured changes disagree, "
            "nothing live was changed"
        ) from exc
    if got != (inserts, matches, deletes) and not state.idempotent:
        raise RestoreVerificationFailed(
            f"replaying changes of {shown(target)} (events from {state.pending_first}) hit "
            f"{got[0]} inserts, {got[1]} updates, {got[2]} deletes where the events name "
            f"{inserts}, {matches}, {deletes}: the snapshot and the captured changes disagree, "
            "nothing live was changed"
        )
    coll.expected += inserts - deletes
    state.pending, state.pending_coll, state.pending_counts = [], None, [0, 0, 0]


def _queue(
    state: _State, target: str, number: int, ops: list[Any], counts: tuple[int, int, int]
) -> None:
    if state.pending_coll != target or len(state.pending) >= BATCH_OPS:
        _flush(state)
        state.pending_coll, state.pending_first = target, number
    state.pending.extend(ops)
    for i, n in enumerate(counts):
        state.pending_counts[i] += n


def _crud(state: _State, kind: str, target: str, event: Mapping[str, Any], number: int) -> None:
    if target in state.views:
        raise RestoreVerificationFailed(
            f"event {number} writes documents into {shown(target)}, a view in the replayed "
            "state: the snapshot and the captured changes disagree; nothing live was changed"
        )
    if target not in state.colls:
        if kind != "insert":
            raise RestoreVerificationFailed(
                f"event {number} ({kind}) names collection {shown(target)}, which the "
                "replayed state lacks: the snapshot and the captured changes disagree; "
                "nothing live was changed"
            )
        _flush(state)
        state.new_collection(target, {})  # created by its first insert, as on the server
    if kind == "insert" and not state.idempotent:
        _queue(state, target, number, [InsertOne(dict(event["fullDocument"]))], (1, 0, 0))
        return
    key: dict[str, Any] = dict(event["documentKey"])
    ops: list[Any]
    if kind == "insert":  # idempotent: the document as inserted, whatever is there
        ops, counts = [ReplaceOne(key, dict(event["fullDocument"]), upsert=True)], (1, 0, 0)
    elif kind == "replace":
        upsert = state.idempotent
        ops, counts = [ReplaceOne(key, dict(event["fullDocument"]), upsert=upsert)], (0, 1, 0)
    elif kind == "delete":
        ops, counts = [DeleteOne(key)], (0, 0, 1)
    else:
        ops = [UpdateOne(key, u) for u in update_for(event.get("updateDescription") or {})]
        counts = (0, len(ops), 0)
    _queue(state, target, number, ops, counts)


def _drop(state: _State, target: str) -> None:
    _flush(state)
    state.views.pop(target, None)
    coll = state.colls.pop(target, None)
    if coll is not None:
        state.db.drop_collection(coll.staging)


def _ddl(state: _State, kind: str, target: str, event: Mapping[str, Any], number: int) -> None:
    _flush(state)
    desc: Mapping[str, Any] = event.get("operationDescription") or {}
    if kind == "create":
        if state.idempotent and (target in state.colls or target in state.views):
            return  # the dump read it after it was created
        if target in state.colls or target in state.views:
            raise RestoreVerificationFailed(
                f"event {number} creates {shown(target)}, which the replayed state already "
                "holds: the snapshot and the captured changes disagree; nothing live was changed"
            )
        if event.get("nsType") == "view" or "viewOn" in desc:
            view = {"viewOn": desc["viewOn"], "pipeline": list(desc.get("viewPipeline") or [])}
            if "collation" in desc:
                view["collation"] = desc["collation"]
            state.views[target] = view
        else:
            state.new_collection(target, {k: v for k, v in desc.items() if k != "idIndex"})
    elif kind == "drop":
        _drop(state, target)
    elif kind == "rename":
        to = event.get("to") or desc.get("to") or {}
        if to.get("db") != state.db.name:
            _drop(state, target)  # moved out of the database
            return
        new = str(to["coll"])
        _drop(state, new)  # dropTarget: whatever had the new name is gone
        if target in state.colls:
            state.colls[new] = state.colls.pop(target)
        elif target in state.views:
            state.views[new] = state.views.pop(target)
    elif kind == "createIndexes":
        coll = state.colls.get(target) or state.new_collection(target, {})
        specs = [{k: v for k, v in i.items() if k not in _NOT_SPEC} for i in desc["indexes"]]
        state.db.command("createIndexes", coll.staging, indexes=specs)
        coll.indexes.update(str(s["name"]) for s in specs)
    elif kind == "dropIndexes":
        dropped = state.colls.get(target)
        if dropped is not None:
            for index in desc.get("indexes") or []:
                state.db.command("dropIndexes", dropped.staging, index=index["name"])
                dropped.indexes.discard(str(index["name"]))
    elif kind == "modify":
        if target in state.views:
            for key in ("viewOn", "pipeline"):
                if key in desc:
                    state.views[target][key] = desc[key]
        elif target in state.colls:
            state.db.command(SON([("collMod", state.colls[target].staging), *desc.items()]))


def _apply(state: _State, event: Mapping[str, Any], number: int) -> bool:
    """Apply one event; whether it changed anything."""
    kind = str(event.get("operationType"))
    ns: Mapping[str, Any] = event.get("ns") or {}
    if kind in _LAYOUT_EVENTS:
        return False
    if ns.get("db") != state.db.name:
        raise DatabaseError(
            f"event {number} ({kind}) belongs to database {ns.get('db')!r}, not "
            f"{state.db.name!r}: refusing to replay another database's changes"
        )
    if kind == "dropDatabase":
        for name in [*state.colls, *state.views]:
            _drop(state, name)
        return True
    target = str(ns.get("coll"))
    if not is_backed_up(target) and not target.startswith("__daai_restore."):
        return False  # the server's system.* namespaces: not part of a backup either
    if kind in ("insert", "update", "replace", "delete"):
        _crud(state, kind, target, event, number)
    elif kind in ("create", "drop", "rename", "createIndexes", "dropIndexes", "modify"):
        _ddl(state, kind, target, event, number)
    else:
        raise DatabaseError(
            f"event {number} is a {kind!r} change, which replay does not know: the restored "
            "state could not be exact; restore a snapshot instead"
        )
    return True


# -- the staged restore's journal ------------------------------------------------------------


def _load_state(db: Database[Any], run: str) -> tuple[_State, SwapPlan, Mapping[str, Any]]:
    state = read_journal(db)
    if state is None or state.get("run") != run or state.get("state") != "staged":
        found = f"{state.get('state')} run {state.get('run')}" if state else "no restore"
        raise DatabaseError(
            f"restore run {run} of database {db.name!r} is not staged (the journal holds "
            f"{found}); stage the restore again"
        )
    plan = read_plan(db, state)
    for c in plan.collections:
        if "timeseries" in c.options:
            raise DatabaseError(
                f"the snapshot holds time-series collection {shown(c.target)}: change streams "
                "do not carry time-series writes, so it cannot be restored to a moment "
                "exactly; restore a snapshot instead"
            )
    colls = {
        c.target: _Coll(
            c.staging,
            c.n,
            int(c.outcome.get("documents", 0)),
            {str(i["name"]) for i in c.indexes} | {"_id_"},
        )
        for c in plan.collections
    }
    start = max((c.n for c in plan.collections), default=-1) + 1
    numbers = iter(range(start, 2**31))
    replay = _State(db, run, colls, {v.name: dict(v.options) for v in plan.views}, numbers)
    return replay, plan, state


def _keeps_options(db: Database[Any], run: str, plan: SwapPlan) -> bool:
    """Whether a rename keeps options here: from the staged plan when it tells, else probed."""
    for c in plan.collections:
        if c.options and "timeseries" not in c.options:
            return c.method == "rename"
    return rename_keeps_options(db, run)


def _rewrite_plan(db: Database[Any], replay: _State, plan: SwapPlan) -> tuple[int, int]:
    """Write the replayed state as the run's plan, verify it, and flip back to ``staged``.

    Options and indexes are read back from the staging collections: the plan is what the
    server now holds, not what replay believes it did.
    """
    live = live_collections(db)
    infos = {
        str(i["name"]): dict(i.get("options") or {})
        for i in db.list_collections(
            filter={"name": {"$in": [c.staging for c in replay.colls.values()]}}
        )
    }
    problems: list[str] = []
    planned: list[PlannedCollection] = []
    total = 0
    with_options = False
    kept = {t: c for t, c in replay.colls.items() if is_backed_up(t)}
    for target, coll in replay.colls.items():
        if target not in kept:  # an earlier restore's own collection: never swapped in
            db.drop_collection(coll.staging)
    for target, coll in sorted(kept.items(), key=lambda kv: kv[1].n):
        if coll.staging not in live:
            problems.append(f"{target}: staged collection missing")
            continue
        counted = int(db.command("count", coll.staging)["n"])
        if replay.idempotent:
            coll.expected = counted  # a torn dump: counts cannot be predicted
        if counted != coll.expected:
            problems.append(f"{target}: {coll.expected} documents expected, staged {counted}")
        indexes = [
            {k: v for k, v in i.items() if k not in _NOT_SPEC}
            for i in db.get_collection(coll.staging).list_indexes()
        ]
        names = {str(i["name"]) for i in indexes}
        if not coll.indexes <= names:
            problems.append(f"{target}: indexes {sorted(coll.indexes - names)} missing")
        options = infos.get(coll.staging, {})
        options.pop("uuid", None)
        with_options = with_options or bool(options)
        total += counted
        planned.append(
            PlannedCollection(
                n=coll.n,
                staging=coll.staging,
                target=target,
                method="rename",
                options=options,
                indexes=[i for i in indexes if i.get("name") != "_id_"],
                outcome={
                    "name": target,
                    "type": "collection",
                    "documents": counted,
                    "bytes": 0,
                    "indexes": len(names),
                },
            )
        )
    if problems:
        raise RestoreVerificationFailed(
            "the replayed staged copy does not match the changes applied, nothing live was "
            "changed: " + "; ".join(problems[:5])
        )
    if with_options and not _keeps_options(db, replay.run, plan):
        planned = [
            PlannedCollection(**{**p.__dict__, "method": "copy" if p.options else "rename"})
            for p in planned
        ]
    views = [
        PlannedView(n, name, options)
        for n, (name, options) in enumerate(sorted(replay.views.items()))
        if is_backed_up(name)
    ]
    journal = db.get_collection(JOURNAL)
    journal.delete_many({"run": replay.run, "kind": {"$in": ["collection", "view"]}})
    counts = write_plan(db, replay.run, planned, views)
    flipped = journal.update_one(
        {"_id": JOURNAL_ID, "run": replay.run, "state": "replaying"},
        {
            "$set": {
                "state": "staged",
                "collections": counts[0],
                "views": counts[1],
                "outcome.total_documents": total,
            }
        },
    )
    if flipped.matched_count != 1:
        raise DatabaseError(
            f"restore run {replay.run} of database {db.name!r} lost its journal while "
            "replaying changes (another restore replaced it); restore again"
        )
    return counts


def replay_staged(
    client: MongoClient[Any],
    database: str,
    run: str,
    events: Iterable[Mapping[str, Any]],
    *,
    after: Timestamp,
    until: Timestamp,
    idempotent: bool = False,
) -> ReplayResult:
    """Apply ``events`` with ``after < clusterTime <= until`` to staged restore ``run``.

    ``idempotent``: the staged copy is a dump whose reads answered at different times
    between ``after`` and ``until`` (``mongo/backup_changes.py``), so a document may already
    hold some of the events: each event is applied the way the oplog is applied (an insert
    or replace is an upsert of the document as written, an update or delete may hit
    nothing), and no count is predicted. Applying every event after ``after`` in order
    brings each document to its state at ``until`` whatever state it was read in.

    ``after`` is the snapshot's cluster time; ``events`` are the database's change events in
    stream order (duplicates allowed). The journal must say ``staged`` for ``run``; it says so
    again afterwards, with the plan of the replayed state, so :func:`restore.swap_staged`
    puts exactly that state in place. Raises ``RestoreVerificationFailed`` when an event
    does not fit the state (the snapshot and the changes disagree) and ``DatabaseError`` for
    what cannot be replayed exactly; the staged copy is then dropped, nothing live changed.
    """
    db = client.get_database(database)
    started = time.monotonic()
    skipped = [0]
    applied = 0
    first: Timestamp | None = None
    last: Timestamp | None = None
    with translated(f"replaying changes into the staged restore of {database!r}"):
        replay, plan, _ = _load_state(db, run)
        replay.idempotent = idempotent
        claimed = db.get_collection(JOURNAL).update_one(
            {"_id": JOURNAL_ID, "run": run, "state": "staged"}, {"$set": {"state": "replaying"}}
        )
        if claimed.matched_count != 1:
            raise DatabaseError(
                f"restore run {run} of database {database!r} changed before its replay "
                "started; stage the restore again"
            )
        try:
            for number, event in enumerate(select_events(events, after, until, skipped), 1):
                if _apply(replay, event, number):
                    applied += 1
                    first = first or _ts(event)
                    last = _ts(event)
            _flush(replay)
            counts = _rewrite_plan(db, replay, plan)
        except Exception:
            drop_leftovers(db)  # still ours alone: nothing was swapped
            raise
    return ReplayResult(
        applied=applied,
        skipped=skipped[0],
        first=first,
        last=last,
        collections=counts[0],
        views=counts[1],
        documents=sum(c.expected for t, c in replay.colls.items() if is_backed_up(t)),
        seconds=time.monotonic() - started,
    )
