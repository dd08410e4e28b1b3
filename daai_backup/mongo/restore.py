"""Staged restore: archive stream -> staging collections -> verify -> swap.

Nothing live changes until the whole archive has been read, every namespace's CRC checked,
the staged copy loaded, indexed and verified. Then each staged collection is renamed over
the live one (same database: a metadata-only rename), live collections the snapshot lacks
are dropped and views are recreated.

Names (recorded in ``docs/decisions.md``):

- staging collections: ``__daai_restore.<run id>.<name>`` (run id: 8 hex digits),
- the journal: the collection ``__daai_restore.journal`` holding one document.

Crash safety: the journal says ``loading`` while staging and ``swapping`` once the swap plan
is fixed. A later run that finds ``swapping`` first finishes that swap (every step is
idempotent), then removes every leftover ``__daai_restore.`` collection, then restores the
archive it was given from the start.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON
from pymongo import MongoClient
from pymongo.database import Database

from daai_backup.errors import DatabaseError, RestoreVerificationFailed
from daai_backup.mongo.archive_format import (
    CANONICAL_JSON,
    ArchiveReader,
    CollectionMetadata,
    DocumentBatch,
)
from daai_backup.mongo.journal import JOURNAL, JOURNAL_ID, RESERVED_PREFIX, pending_swap
from daai_backup.mongo.translate import translated

_RAW: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)
_COPY_BATCH_BYTES = 8 * 1024 * 1024
_COPY_BATCH_DOCS = 1000
#: MongoDB's limit on ``<db>.<collection>`` in bytes.
MAX_NAMESPACE_BYTES = 255


class _SimulatedCrash(BaseException):
    """Raised by the ``_fail_at`` test seam: behaves like the process dying (no cleanup)."""


@dataclass(frozen=True)
class RestoredCollection:
    name: str
    type: str
    documents: int
    bytes: int
    indexes: int


@dataclass(frozen=True)
class RestoreProgress:
    """Reported after every batch loaded and at each phase change."""

    phase: str  # "load", "indexes", "verify", "swap", "done"
    collection: str | None
    documents: int  # loaded so far, whole restore
    bytes: int


@dataclass(frozen=True)
class RestoreResult:
    """The outcome of :func:`restore_database`."""

    database: str
    collections: list[RestoredCollection]
    views: list[str]
    dropped: list[str]
    resumed_interrupted_swap: bool
    total_documents: int
    total_bytes: int
    load_seconds: float
    index_seconds: float
    verify_seconds: float
    swap_seconds: float
    started_at: datetime
    finished_at: datetime


@dataclass
class _Staged:
    meta: CollectionMetadata
    staging: str
    documents: int = 0
    bytes: int = 0
    archive_documents: int | None = None
    created: bool = False


@dataclass
class _Plan:
    run: str
    by_data_ns: dict[str, _Staged] = field(default_factory=dict)
    views: list[CollectionMetadata] = field(default_factory=list)


def _json(value: Any) -> str:
    if isinstance(value, Mapping):
        value = dict(value)
    return json_util.dumps(value, json_options=CANONICAL_JSON)


def _check(fail_at: str | None, step: str) -> None:
    if fail_at == step:
        raise _SimulatedCrash(step)


def validate_name(database: str, name: str, staging: str) -> None:
    """Refuse names that would escape the staging scheme or exceed MongoDB's limits."""
    if not name or "\x00" in name or name.startswith("."):
        raise DatabaseError(f"archive holds an invalid collection name {name!r}")
    if name.startswith(("system.", RESERVED_PREFIX)):
        raise DatabaseError(f"archive holds a reserved collection name {name!r}; refusing it")
    if len(f"{database}.{staging}".encode()) > MAX_NAMESPACE_BYTES:
        raise DatabaseError(
            f"collection name {name!r} is too long to stage in {database!r} "
            f"(limit {MAX_NAMESPACE_BYTES} bytes for the namespace)"
        )


def _live_collections(db: Database[Any]) -> dict[str, str]:
    return {str(i["name"]): str(i.get("type", "collection")) for i in db.list_collections()}


def _drop_leftovers(db: Database[Any]) -> None:
    """Remove staging collections (and the journal) left by an earlier run."""
    for name in _live_collections(db):
        if name.startswith(RESERVED_PREFIX) and name != JOURNAL:
            db.drop_collection(name)
    db.drop_collection(JOURNAL)


def _rename_keeps_options(db: Database[Any], run: str) -> bool:
    """Whether ``renameCollection`` keeps a collection's options on this server.

    ``mongod`` does; SecantusDB (the test server) recreates the target without them, which
    would silently lose validators, caps, collations and time-series settings.
    """
    src, dst = f"{RESERVED_PREFIX}{run}.probe-a", f"{RESERVED_PREFIX}{run}.probe-b"
    db.command("create", src, validator={"_daai_probe": {"$exists": False}})
    db.client.admin.command(
        "renameCollection", f"{db.name}.{src}", to=f"{db.name}.{dst}", dropTarget=True
    )
    infos = list(db.list_collections(filter={"name": dst}))
    db.drop_collection(dst)
    return bool(infos and (infos[0].get("options") or {}).get("validator"))


def _swap_method(meta: CollectionMetadata, keeps_options: bool) -> str:
    """ "rename" (metadata only) where it keeps everything; "copy" otherwise.

    Time-series collections are always copied: not every server version renames them, and
    a swap must not start what it cannot finish.
    """
    if meta.type == "timeseries" or (meta.options and not keeps_options):
        return "copy"
    return "rename"


def _copy_over(db: Database[Any], staging: str, target: str, entry: Mapping[str, Any]) -> None:
    """Swap by copy: recreate ``target`` with its options, copy the staged data, index it."""
    options = json_util.loads(entry["options"], json_options=CANONICAL_JSON)
    specs = json_util.loads(entry["indexes"], json_options=CANONICAL_JSON)
    db.drop_collection(target)
    db.command(SON([("create", target), *options.items()]))
    source = db.get_collection(staging, codec_options=_RAW)
    sink = db.get_collection(target)
    batch: list[RawBSONDocument] = []
    size = 0
    for doc in source.find({}, sort=[("$natural", 1)]):
        batch.append(doc)
        size += len(doc.raw)
        if size >= _COPY_BATCH_BYTES or len(batch) >= _COPY_BATCH_DOCS:
            sink.insert_many(batch, ordered=True, bypass_document_validation=True)
            batch, size = [], 0
    if batch:
        sink.insert_many(batch, ordered=True, bypass_document_validation=True)
    if specs:
        db.command("createIndexes", target, indexes=specs)
    db.drop_collection(staging)  # last: while it exists, a re-run repeats this copy


def _apply_swap(db: Database[Any], journal: Mapping[str, Any], fail_at: str | None) -> None:
    """Carry out a fixed swap plan; every step can be repeated safely."""
    live = _live_collections(db)
    admin = db.client.admin
    for step, entry in enumerate(journal["renames"]):
        staging, target = entry["staging"], entry["target"]
        if staging not in live:
            continue  # swapped by an earlier (interrupted) run
        if live.get(target) == "view":
            db.drop_collection(target)
        if entry["method"] == "copy":
            _copy_over(db, staging, target, entry)
        else:
            admin.command(
                "renameCollection",
                f"{db.name}.{staging}",
                to=f"{db.name}.{target}",
                dropTarget=True,
            )
        if step == 0:
            _check(fail_at, "swap")
    for name in journal["drop"]:
        db.drop_collection(name)
    for view in journal["views"]:
        db.drop_collection(view["name"])
        options = json_util.loads(view["options"], json_options=CANONICAL_JSON)
        db.command(SON([("create", view["name"]), *options.items()]))
    db.drop_collection(JOURNAL)


def _finish_pending_swap(db: Database[Any]) -> bool:
    """Finish a swap an interrupted restore journalled; whether there was one."""
    journal = pending_swap(db)
    if journal is None:
        return False
    _apply_swap(db, journal, None)
    return True


def interrupted_restore(client: MongoClient[Any], database: str) -> bool:
    """Whether a restore of ``database`` stopped mid-swap (its live state is torn)."""
    with translated(f"checking {database!r} for an interrupted restore"):
        return pending_swap(client.get_database(database)) is not None


def finish_interrupted_restore(client: MongoClient[Any], database: str) -> bool:
    """Finish the swap of a restore of ``database`` that stopped mid-swap, exactly as the
    next :func:`restore_database` would; whether there was one. Safe to repeat.

    Leftover staging collections are dropped only when a swap was finished (the swap's own
    ones are gone by then); with nothing pending, nothing is touched.
    """
    db = client.get_database(database)
    with translated(f"finishing the interrupted restore of {database!r}"):
        if not _finish_pending_swap(db):
            return False
        _drop_leftovers(db)
    return True


def _create_staging(db: Database[Any], staged: _Staged) -> None:
    options = dict(staged.meta.options)
    options.pop("uuid", None)
    db.command(SON([("create", staged.staging), *options.items()]))
    staged.created = True


def _index_specs(indexes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for index in indexes:
        if index.get("name") == "_id_":
            continue  # created with the collection (with its collation)
        specs.append({k: v for k, v in index.items() if k != "ns"})
    return specs


def _data_namespace(staged: _Staged) -> str:
    if staged.meta.type == "timeseries":
        return f"system.buckets.{staged.staging}"
    return staged.staging


def restore_database(
    client: MongoClient[Any],
    database: str,
    source: BinaryIO,
    *,
    progress: Callable[[RestoreProgress], None] | None = None,
    batch_bytes: int = 8 * 1024 * 1024,
    batch_documents: int = 1000,
    before_swap: Callable[[], None] | None = None,
    _fail_at: str | None = None,
) -> RestoreResult:
    """Replace ``database`` with the snapshot in the uncompressed archive ``source``.

    Raises ``ArchiveCorrupt`` for a bad archive, ``RestoreVerificationFailed`` when the staged
    copy does not match, ``TransientDatabaseError`` when the server goes away and
    ``DatabaseError`` for anything else the server refuses. In each case the live database
    is unchanged, or (if the failure hit the swap) is finished by running the restore again.
    ``before_swap()`` runs once the staged copy is verified, right before the swap is
    journalled; an exception from it leaves the live database unchanged.
    """
    started = datetime.now(UTC)
    db = client.get_database(database)
    with translated(f"checking {database!r} for an interrupted restore"):
        resumed = _finish_pending_swap(db)
        _drop_leftovers(db)

    plan = _Plan(run=secrets.token_hex(4))
    try:
        return _restore(
            client,
            db,
            source,
            plan,
            progress,
            batch_bytes,
            batch_documents,
            _fail_at,
            started,
            resumed,
            before_swap,
        )
    except Exception:
        # The live database is untouched unless the journal says "swapping"; clean the
        # staging area so the failure leaves nothing behind (a next run would do it too).
        try:
            state = db.get_collection(JOURNAL).find_one({"_id": JOURNAL_ID})
            if state is None or state.get("state") != "swapping":
                _drop_leftovers(db)
        except Exception:  # noqa: S110 - best effort; the next run removes leftovers
            pass
        raise


def _restore(
    client: MongoClient[Any],
    db: Database[Any],
    source: BinaryIO,
    plan: _Plan,
    progress: Callable[[RestoreProgress], None] | None,
    batch_bytes: int,
    batch_documents: int,
    fail_at: str | None,
    started: datetime,
    resumed: bool,
    before_swap: Callable[[], None] | None,
) -> RestoreResult:
    database = db.name
    reader = ArchiveReader(source, batch_bytes=batch_bytes, batch_documents=batch_documents)
    source_dbs = {m.db for m in reader.collections}
    if len(source_dbs) > 1:
        raise DatabaseError(
            f"archive holds several databases ({', '.join(sorted(source_dbs))}); "
            "restore one database at a time"
        )
    for meta in reader.collections:
        staging = f"{RESERVED_PREFIX}{plan.run}.{meta.collection}"
        validate_name(database, meta.collection, staging)
        if meta.type == "view":
            plan.views.append(meta)
        else:
            plan.by_data_ns[meta.data_collection] = _Staged(meta, staging)

    t0 = time.monotonic()
    total_docs = total_bytes = 0
    with translated(f"staging the restore of {database!r}"):
        db.get_collection(JOURNAL).insert_one(
            {"_id": JOURNAL_ID, "state": "loading", "run": plan.run, "started": started}
        )
        for staged in plan.by_data_ns.values():
            _create_staging(db, staged)
        for event in reader:
            if source_dbs and event.db not in source_dbs:
                raise DatabaseError(
                    f"archive holds data for database {event.db!r} besides "
                    f"{', '.join(sorted(source_dbs))}; restore one database at a time"
                )
            if isinstance(event, DocumentBatch):
                found = plan.by_data_ns.get(event.collection)
                if found is None:  # data without metadata: a plain collection, as mongorestore
                    meta = CollectionMetadata(db=event.db, collection=event.collection)
                    staging = f"{RESERVED_PREFIX}{plan.run}.{meta.collection}"
                    validate_name(database, meta.collection, staging)
                    staged = plan.by_data_ns[event.collection] = _Staged(meta, staging)
                    _create_staging(db, staged)
                else:
                    staged = found
                db.get_collection(_data_namespace(staged)).insert_many(
                    [RawBSONDocument(doc) for doc in event.documents],
                    ordered=False,
                    bypass_document_validation=True,
                )
                staged.documents += len(event.documents)
                staged.bytes += event.nbytes
                total_docs += len(event.documents)
                total_bytes += event.nbytes
                if progress:
                    progress(
                        RestoreProgress("load", staged.meta.collection, total_docs, total_bytes)
                    )
            else:
                target = plan.by_data_ns.get(event.collection)
                if target is not None:
                    target.archive_documents = event.documents
        _check(fail_at, "load")
        load_seconds = time.monotonic() - t0

        t0 = time.monotonic()
        for staged in plan.by_data_ns.values():
            specs = _index_specs(staged.meta.indexes)
            if specs:
                if progress:
                    progress(
                        RestoreProgress("indexes", staged.meta.collection, total_docs, total_bytes)
                    )
                db.command("createIndexes", staged.staging, indexes=specs)
        _check(fail_at, "indexes")
        index_seconds = time.monotonic() - t0

        t0 = time.monotonic()
        if progress:
            progress(RestoreProgress("verify", None, total_docs, total_bytes))
        restored = _verify(db, plan)
        _check(fail_at, "verify")
        verify_seconds = time.monotonic() - t0

        t0 = time.monotonic()
        if progress:
            progress(RestoreProgress("swap", None, total_docs, total_bytes))
        snapshot_names = {m.collection for m in reader.collections} | {
            s.meta.collection for s in plan.by_data_ns.values()
        }
        # Probe only when it matters: a rename costs a fixed ~0.3 s on the test server.
        keeps_options = not any(s.meta.options for s in plan.by_data_ns.values()) or (
            _rename_keeps_options(db, plan.run)
        )
        extras = sorted(
            name
            for name in _live_collections(db)
            if name not in snapshot_names and not name.startswith(("system.", RESERVED_PREFIX))
        )
        journal = {
            "state": "swapping",
            "renames": [
                {
                    "staging": s.staging,
                    "target": s.meta.collection,
                    "method": _swap_method(s.meta, keeps_options),
                    # Extended JSON text: validators and pipelines hold $-prefixed keys.
                    "options": _json(s.meta.options),
                    "indexes": _json(_index_specs(s.meta.indexes)),
                }
                for s in plan.by_data_ns.values()
            ],
            "drop": extras,
            "views": [
                {
                    "name": v.collection,
                    # Extended JSON text: pipelines hold $-prefixed keys a document may not.
                    "options": _json(v.options),
                }
                for v in plan.views
            ],
        }
        if before_swap is not None:
            before_swap()
        db.get_collection(JOURNAL).update_one({"_id": JOURNAL_ID}, {"$set": journal})
        _apply_swap(db, journal, fail_at)
        swap_seconds = time.monotonic() - t0
    if progress:
        progress(RestoreProgress("done", None, total_docs, total_bytes))
    return RestoreResult(
        database=database,
        collections=restored,
        views=[v.collection for v in plan.views],
        dropped=extras,
        resumed_interrupted_swap=resumed,
        total_documents=total_docs,
        total_bytes=total_bytes,
        load_seconds=load_seconds,
        index_seconds=index_seconds,
        verify_seconds=verify_seconds,
        swap_seconds=swap_seconds,
        started_at=started,
        finished_at=datetime.now(UTC),
    )


def _verify(db: Database[Any], plan: _Plan) -> list[RestoredCollection]:
    """Staged counts and index names must match the archive (its CRCs were checked while read)."""
    out: list[RestoredCollection] = []
    problems: list[str] = []
    for staged in plan.by_data_ns.values():
        name = staged.meta.collection
        expected = staged.archive_documents
        counted = db.command("count", _data_namespace(staged))["n"]
        if expected is None or counted != expected or staged.documents != expected:
            problems.append(f"{name}: archive {expected} documents, staged {counted}")
        wanted = {str(i.get("name")) for i in staged.meta.indexes} or {"_id_"}
        have = {str(i["name"]) for i in db.get_collection(staged.staging).list_indexes()}
        if staged.meta.type == "collection" and not wanted <= have:
            problems.append(f"{name}: indexes {sorted(wanted - have)} missing after the build")
        out.append(RestoredCollection(name, staged.meta.type, counted, staged.bytes, len(have)))
    if problems:
        raise RestoreVerificationFailed(
            "staged restore does not match the archive, nothing live was changed: "
            + "; ".join(problems[:5])
        )
    return out
