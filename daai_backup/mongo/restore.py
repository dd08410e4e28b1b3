"""Staged restore: archive stream -> staging collections -> verify -> (later) swap.

Two calls, so the caller can act in between (the restore flow takes its pre-restore safety
backup there, once the archive is known good and as late as possible):

- :func:`stage_restore` reads the whole archive into staging collections, builds the
  indexes and verifies counts and CRCs. Nothing live changes. The journal ends ``staged``,
  holding the swap plan.
- :func:`swap_staged` computes which live collections the snapshot lacks (the live database
  may have changed meanwhile), journals ``swapping`` and puts the staged copy in place
  (``swap.py``).

:func:`restore_database` is both in one call. Names (``namespaces.py``, recorded in
``docs/decisions.md``): staging collections ``__daai_restore.<run>.c<n>`` (run id: 8 hex
digits, ``n`` counting the run's collections), whatever the collection's own name; the
journal ``__daai_restore.journal`` (``journal.py``) maps each staging name to its target.

Crash safety: a later run that finds ``swapping`` first finishes that swap (every step is
idempotent), then removes every leftover collection of the restore's own names (a crash
while ``loading`` or ``staged`` leaves only those, the live database untouched), then restores
the archive it was given from the start. ``swap.clean_abandoned_restore`` does the first two
without a new restore.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, BinaryIO

from bson.raw_bson import RawBSONDocument
from bson.son import SON
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database

from daai_backup.errors import DatabaseError, RestoreVerificationFailed
from daai_backup.mongo.archive_format import (
    ArchiveReader,
    CollectionMetadata,
    DocumentBatch,
)
from daai_backup.mongo.journal import (
    JOURNAL,
    JOURNAL_ID,
    LAYOUT,
    PlannedCollection,
    PlannedView,
    SwapPlan,
    read_journal,
    read_plan,
    write_drops,
    write_plan,
)
from daai_backup.mongo.namespaces import check_collection_name, is_backed_up, staging_name
from daai_backup.mongo.swap import (
    _SimulatedCrash,  # noqa: F401 - the tests' crash seam, imported from here
    apply_swap,
    check_crash,
    drop_leftovers,
    finish_pending_swap,
    live_collections,
    rename_keeps_options,
    swap_method,
)
from daai_backup.mongo.translate import translated


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
class StagedRestore:
    """The outcome of :func:`stage_restore`: a verified staged copy, waiting for its swap.

    The plan itself (staging -> target, views, the snapshot's names) is in the journal;
    ``run`` names it for :func:`swap_staged`.
    """

    database: str
    run: str
    collections: list[RestoredCollection]
    views: list[str]
    resumed_interrupted_swap: bool
    total_documents: int
    total_bytes: int
    load_seconds: float
    index_seconds: float
    verify_seconds: float
    started_at: datetime


@dataclass(frozen=True)
class RestoreResult:
    """The outcome of :func:`swap_staged` and :func:`restore_database`."""

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
    number: int
    documents: int = 0
    bytes: int = 0
    archive_documents: int | None = None
    finished: Future[None] | None = None
    """The index build and count of the loaded collection, running beside the next load."""
    counted: int | None = None
    index_names: set[str] = field(default_factory=set)


@dataclass
class _Plan:
    run: str
    by_data_ns: dict[str, _Staged] = field(default_factory=dict)
    views: list[CollectionMetadata] = field(default_factory=list)
    numbers: Iterator[int] = field(default_factory=itertools.count)

    def stage(self, database: str, meta: CollectionMetadata) -> _Staged:
        """Check the name and give the collection the run's next staging name."""
        check_collection_name(database, meta.collection, timeseries=meta.type == "timeseries")
        number = next(self.numbers)
        staged = _Staged(meta, staging_name(self.run, number), number)
        self.by_data_ns[meta.data_collection] = staged
        return staged


def _create_staging(db: Database[Any], staged: _Staged) -> None:
    options = dict(staged.meta.options)
    options.pop("uuid", None)
    db.command(SON([("create", staged.staging), *options.items()]))


def _index_specs(indexes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for index in indexes:
        if index.get("name") == "_id_":
            continue  # created with the collection (with its collation)
        specs.append({k: v for k, v in index.items() if k != "ns"})
    return specs


INSERTS_IN_FLIGHT = 1
"""Insert batches sent and not yet answered. One, on its own thread: the client reads,
decrypts, decompresses and frames the next batch while the server stores this one. More
would reorder a collection's documents (two batches stored at once interleave), and the
restore promises the exact state, natural order included (capped collections depend on it).
"""


class _Inserts:
    """At most ``in_flight`` ``insert_many`` calls running at once, on their own threads.

    Memory stays bounded (``in_flight`` batches besides the one being read). Their errors
    are raised by :meth:`submit` or :meth:`wait` on the caller's thread.
    """

    def __init__(self, in_flight: int) -> None:
        self._pool = ThreadPoolExecutor(in_flight, thread_name_prefix="daai-restore-insert")
        self._in_flight = in_flight
        self._pending: deque[Future[Any]] = deque()

    def submit(self, collection: Collection[Any], documents: list[RawBSONDocument]) -> None:
        while len(self._pending) >= self._in_flight:
            self._pending.popleft().result()
        self._pending.append(
            self._pool.submit(
                collection.insert_many,
                documents,
                ordered=False,
                bypass_document_validation=True,
            )
        )

    def wait(self) -> None:
        """Until every insert submitted is answered."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _finish_collection(db: Database[Any], staged: _Staged) -> None:
    """Build the indexes of a fully loaded staging collection, then count it and list its
    indexes for :func:`_verify`. Runs on the finisher thread, beside the next collection's
    load: the server builds one collection's indexes while the client streams the next."""
    specs = _index_specs(staged.meta.indexes)
    if specs:
        db.command("createIndexes", staged.staging, indexes=specs)
    staged.counted = int(db.command("count", _data_namespace(staged))["n"])
    staged.index_names = {str(i["name"]) for i in db.get_collection(staged.staging).list_indexes()}


def _data_namespace(staged: _Staged) -> str:
    if staged.meta.type == "timeseries":
        return f"system.buckets.{staged.staging}"
    return staged.staging


def _drop_unless_swapping(db: Database[Any]) -> None:
    """After a failure: the live database is untouched unless the journal says "swapping";
    clean the staging area so the failure leaves nothing behind (a next run would do it too).
    """
    try:
        state = read_journal(db)
        if state is None or state.get("state") != "swapping":
            drop_leftovers(db)
    except Exception:  # noqa: S110 - best effort; the next run removes leftovers
        pass


def stage_restore(
    client: MongoClient[Any],
    database: str,
    source: BinaryIO,
    *,
    progress: Callable[[RestoreProgress], None] | None = None,
    batch_bytes: int = 8 * 1024 * 1024,
    batch_documents: int = 1000,
    _fail_at: str | None = None,
) -> StagedRestore:
    """Load the snapshot in the uncompressed archive ``source`` beside the live ``database``.

    First finishes a swap an earlier restore left half-done and drops every leftover of
    earlier runs (an earlier staged restore too). Then reads the whole archive into staging
    collections, builds the indexes and verifies; the journal ends ``staged`` with the swap
    plan. Nothing live changes: call :func:`swap_staged` to put the copy in place. Backups
    of ``database`` keep working meanwhile (staging is never dumped).

    Raises ``ArchiveCorrupt`` for a bad archive, ``RestoreVerificationFailed`` when the staged
    copy does not match, ``TransientDatabaseError`` when the server goes away and
    ``DatabaseError`` for anything else the server refuses; the staging is then dropped.
    """
    started = datetime.now(UTC)
    db = client.get_database(database)
    with translated(f"checking {database!r} for an interrupted restore"):
        resumed = finish_pending_swap(db)
        drop_leftovers(db)
    plan = _Plan(run=secrets.token_hex(4))
    try:
        staged = _stage(
            db, source, plan, progress, batch_bytes, batch_documents, _fail_at, started, resumed
        )
    except Exception:
        _drop_unless_swapping(db)
        raise
    check_crash(_fail_at, "staged")
    return staged


def _read_plan(reader: ArchiveReader, database: str, plan: _Plan) -> set[str]:
    """Fill ``plan`` from the archive's prelude (names checked); the archive's one database."""
    source_dbs = {m.db for m in reader.collections}
    if len(source_dbs) > 1:
        raise DatabaseError(
            f"archive holds several databases ({', '.join(sorted(source_dbs))}); "
            "restore one database at a time"
        )
    for meta in reader.collections:
        if meta.type == "view":
            check_collection_name(database, meta.collection)
            plan.views.append(meta)
        else:
            plan.stage(database, meta)
    return source_dbs


def _stage(
    db: Database[Any],
    source: BinaryIO,
    plan: _Plan,
    progress: Callable[[RestoreProgress], None] | None,
    batch_bytes: int,
    batch_documents: int,
    fail_at: str | None,
    started: datetime,
    resumed: bool,
) -> StagedRestore:
    database = db.name
    reader = ArchiveReader(source, batch_bytes=batch_bytes, batch_documents=batch_documents)
    source_dbs = _read_plan(reader, database, plan)

    # One finisher thread: a collection's indexes are built (and it is counted) as soon as
    # its last document is in, while the next collection loads. One, not more: the builds
    # then run in archive order and never pile up on the server.
    finisher = ThreadPoolExecutor(1, thread_name_prefix="daai-restore-indexes")
    inserts = _Inserts(INSERTS_IN_FLIGHT)
    try:
        return _stage_load(
            db, reader, source_dbs, plan, progress, fail_at, started, resumed, finisher, inserts
        )
    finally:
        # On a failure nothing may still be writing when the caller drops the staging
        # (a createIndexes or insert after the drop would create the collection again).
        inserts.close()
        finisher.shutdown(wait=True, cancel_futures=True)


def _stage_load(
    db: Database[Any],
    reader: ArchiveReader,
    source_dbs: set[str],
    plan: _Plan,
    progress: Callable[[RestoreProgress], None] | None,
    fail_at: str | None,
    started: datetime,
    resumed: bool,
    finisher: ThreadPoolExecutor,
    inserts: _Inserts,
) -> StagedRestore:
    database = db.name

    def finish(staged: _Staged) -> None:
        if staged.finished is None:
            staged.finished = finisher.submit(_finish_collection, db, staged)

    t0 = time.monotonic()
    total_docs = total_bytes = 0
    with translated(f"staging the restore of {database!r}"):
        db.get_collection(JOURNAL).insert_one(
            {
                "_id": JOURNAL_ID,
                "state": "loading",
                "layout": LAYOUT,
                "run": plan.run,
                "started": started,
            }
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
                    staged = plan.stage(
                        database, CollectionMetadata(db=event.db, collection=event.collection)
                    )
                    _create_staging(db, staged)
                else:
                    staged = found
                inserts.submit(
                    db.get_collection(_data_namespace(staged)),
                    [RawBSONDocument(doc) for doc in event.documents],
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
                    inserts.wait()  # its last document is in: index it beside the next load
                    finish(target)
        inserts.wait()
        check_crash(fail_at, "load")
        load_seconds = time.monotonic() - t0

        # What is left of the index builds once the last document is in.
        t0 = time.monotonic()
        for staged in plan.by_data_ns.values():
            if progress and not (staged.finished and staged.finished.done()):
                progress(
                    RestoreProgress("indexes", staged.meta.collection, total_docs, total_bytes)
                )
            finish(staged)  # a collection without an end-of-collection block
            assert staged.finished is not None
            staged.finished.result()
        check_crash(fail_at, "indexes")
        index_seconds = time.monotonic() - t0

        t0 = time.monotonic()
        if progress:
            progress(RestoreProgress("verify", None, total_docs, total_bytes))
        restored = _verify(plan)
        check_crash(fail_at, "verify")
        verify_seconds = time.monotonic() - t0

        result = StagedRestore(
            database=database,
            run=plan.run,
            collections=restored,
            views=[v.collection for v in plan.views],
            resumed_interrupted_swap=resumed,
            total_documents=total_docs,
            total_bytes=total_bytes,
            load_seconds=load_seconds,
            index_seconds=index_seconds,
            verify_seconds=verify_seconds,
            started_at=started,
        )
        _journal_staged(db, plan, result)
    return result


def _journal_staged(db: Database[Any], plan: _Plan, staged: StagedRestore) -> None:
    """Record the swap plan and the outcome so far; the journal says ``staged``.

    One plan document per collection and view first, then the state document flips (the
    commit point): a crash in between leaves a ``loading`` journal, dropped as leftovers.
    """
    # Probe only when it matters: a rename costs a fixed ~0.3 s on the test server.
    keeps_options = not any(s.meta.options for s in plan.by_data_ns.values()) or (
        rename_keeps_options(db, plan.run)
    )
    collections, views = write_plan(
        db,
        plan.run,
        (
            PlannedCollection(
                n=s.number,
                staging=s.staging,
                target=s.meta.collection,
                method=swap_method(s.meta, keeps_options),
                options=s.meta.options,
                indexes=_index_specs(s.meta.indexes),
                outcome=asdict(restored),
            )
            for s, restored in zip(plan.by_data_ns.values(), staged.collections, strict=True)
        ),
        (PlannedView(n, v.collection, v.options) for n, v in enumerate(plan.views)),
    )
    outcome = {
        k: v
        for k, v in asdict(staged).items()
        if k not in ("database", "run", "collections", "views")
    }
    flipped = db.get_collection(JOURNAL).update_one(
        {"_id": JOURNAL_ID, "run": plan.run, "state": "loading"},
        {
            "$set": {
                "state": "staged",
                "collections": collections,
                "views": views,
                "outcome": outcome,
            }
        },
    )
    if flipped.matched_count != 1:
        raise DatabaseError(
            f"restore run {plan.run} of database {db.name!r} lost its journal while staging "
            "(another restore replaced it); stage the restore again"
        )


def _verify(plan: _Plan) -> list[RestoredCollection]:
    """Staged counts and index names must match the archive (its CRCs were checked while read).

    The server's count and index list of each staging collection were taken once its indexes
    were built (:func:`_finish_collection`), after its last insert.
    """
    out: list[RestoredCollection] = []
    problems: list[str] = []
    for staged in plan.by_data_ns.values():
        name = staged.meta.collection
        expected = staged.archive_documents
        counted = staged.counted
        if expected is None or counted != expected or staged.documents != expected:
            problems.append(f"{name}: archive {expected} documents, staged {counted}")
        wanted = {str(i.get("name")) for i in staged.meta.indexes} or {"_id_"}
        have = staged.index_names
        if staged.meta.type == "collection" and not wanted <= have:
            problems.append(f"{name}: indexes {sorted(wanted - have)} missing after the build")
        out.append(
            RestoredCollection(name, staged.meta.type, counted or 0, staged.bytes, len(have))
        )
    if problems:
        raise RestoreVerificationFailed(
            "staged restore does not match the archive, nothing live was changed: "
            + "; ".join(problems[:5])
        )
    return out


def _staged_from_journal(database: str, state: Mapping[str, Any], plan: SwapPlan) -> StagedRestore:
    outcome = {k: v for k, v in dict(state["outcome"]).items() if k not in ("collections", "views")}
    started = outcome["started_at"]
    return StagedRestore(
        **{
            **outcome,
            "started_at": started if started.tzinfo else started.replace(tzinfo=UTC),
        },
        collections=[RestoredCollection(**c.outcome) for c in plan.collections],
        views=[v.name for v in plan.views],
        database=database,
        run=plan.run,
    )


def _staged_journal(
    db: Database[Any], run: str
) -> tuple[Mapping[str, Any], SwapPlan, dict[str, str]]:
    """The state document and plan of staged run ``run``, and the live collections; refuses
    when that run is gone or not staged, or its staged copy is incomplete."""
    state = read_journal(db)
    again = "stage the restore again"
    if state is None or state.get("run") != run:
        found = f"run {state.get('run')}" if state else "no restore"
        raise DatabaseError(
            f"staged restore run {run} of database {db.name!r} is gone (the journal holds "
            f"{found}): it was swapped in already or a later restore replaced it; {again}"
        )
    phase = state.get("state")
    if phase == "swapping":  # a retry: the caller finishes this swap
        return state, read_plan(db, state), live_collections(db)
    if phase != "staged":
        raise DatabaseError(
            f"restore run {run} of database {db.name!r} is {phase!r}, not staged; {again}"
        )
    if "layout" not in state:
        raise DatabaseError(
            f"restore run {run} of database {db.name!r} was staged by an earlier version of "
            f"daai-backup; {again}"
        )
    plan = read_plan(db, state)
    live = live_collections(db)
    missing = [c.target for c in plan.collections if c.staging not in live]
    if missing:
        raise DatabaseError(
            f"staged restore run {run} of database {db.name!r} lost the staged copy of "
            f"{', '.join(map(repr, missing[:5]))}; {again}"
        )
    return state, plan, live


def swap_staged(
    client: MongoClient[Any],
    database: str,
    staged: StagedRestore | str,
    *,
    _fail_at: str | None = None,
) -> RestoreResult:
    """Put the copy :func:`stage_restore` staged (given as its result or its run id) in place.

    Live collections the snapshot lacks are computed now, so whatever was created since the
    staging (e.g. while a safety backup ran) is dropped too: the result is exactly the
    snapshot. The plan is journalled as ``swapping`` before the first change, so a failure
    mid-swap is finished by the next restore (or ``finish_interrupted_restore``).

    Refuses with ``DatabaseError``, changing nothing, when that run is no longer the staged
    one (another restore replaced or removed it, or its staged copy is gone). Called again
    for a run whose swap a failure interrupted, it finishes that swap (a task retry).
    """
    run = staged if isinstance(staged, str) else staged.run
    if isinstance(staged, StagedRestore) and staged.database != database:
        raise DatabaseError(
            f"staged restore run {run} belongs to database {staged.database!r}, "
            f"not {database!r}; swap it into its own database"
        )
    db = client.get_database(database)
    t0 = time.monotonic()
    with translated(f"swapping the staged restore of {database!r} in"):
        state, plan, live = _staged_journal(db, run)
        if state.get("state") == "swapping":
            # This run's swap was interrupted (a retry after a failure mid-swap): every
            # step is idempotent, so finishing it is repeating it.
            extras = plan.drop
            apply_swap(db, plan, None)
        else:
            snapshot = {c.target for c in plan.collections} | {v.name for v in plan.views}
            extras = sorted(name for name in live if is_backed_up(name) and name not in snapshot)
            # The drop list first, then the state (the commit point) names it.
            token = secrets.token_hex(4)
            write_drops(db, run, token, extras)
            claimed = db.get_collection(JOURNAL).update_one(
                {"_id": JOURNAL_ID, "run": run, "state": "staged"},
                {"$set": {"state": "swapping", "drop_token": token, "drops": len(extras)}},
            )
            if claimed.matched_count != 1:  # another run took it between the read and now
                raise DatabaseError(
                    f"staged restore run {run} of database {db.name!r} changed while its "
                    "swap started; stage the restore again"
                )
            apply_swap(db, replace(plan, drop=extras), _fail_at)
    swap_seconds = time.monotonic() - t0
    if not isinstance(staged, StagedRestore):
        staged = _staged_from_journal(database, state, plan)
    return RestoreResult(
        database=database,
        collections=staged.collections,
        views=staged.views,
        dropped=extras,
        resumed_interrupted_swap=staged.resumed_interrupted_swap,
        total_documents=staged.total_documents,
        total_bytes=staged.total_bytes,
        load_seconds=staged.load_seconds,
        index_seconds=staged.index_seconds,
        verify_seconds=staged.verify_seconds,
        swap_seconds=swap_seconds,
        started_at=staged.started_at,
        finished_at=datetime.now(UTC),
    )


def discard_staged(client: MongoClient[Any], database: str, run: str) -> bool:
    """Drop the staged copy of run ``run`` if it is still staged (not swapping); whether it was.

    For a flow that staged a restore and then stopped before the swap (its safety backup
    failed, say): the live database was never touched, and this leaves nothing behind. A
    journal of another run, or one already swapping, is left alone.
    """
    db = client.get_database(database)
    with translated(f"discarding the staged restore of {database!r}"):
        journal = read_journal(db)
        if journal is None or journal.get("run") != run or journal.get("state") == "swapping":
            return False
        drop_leftovers(db)
    return True


def restore_database(
    client: MongoClient[Any],
    database: str,
    source: BinaryIO,
    *,
    progress: Callable[[RestoreProgress], None] | None = None,
    batch_bytes: int = 8 * 1024 * 1024,
    batch_documents: int = 1000,
    _fail_at: str | None = None,
) -> RestoreResult:
    """Replace ``database`` with the snapshot in the uncompressed archive ``source``:
    :func:`stage_restore` then :func:`swap_staged`.

    Raises ``ArchiveCorrupt`` for a bad archive, ``RestoreVerificationFailed`` when the staged
    copy does not match, ``TransientDatabaseError`` when the server goes away and
    ``DatabaseError`` for anything else the server refuses. In each case the live database
    is unchanged, or (if the failure hit the swap) is finished by running the restore again.
    """
    staged = stage_restore(
        client,
        database,
        source,
        progress=progress,
        batch_bytes=batch_bytes,
        batch_documents=batch_documents,
        _fail_at=_fail_at,
    )
    if progress:
        progress(RestoreProgress("swap", None, staged.total_documents, staged.total_bytes))
    try:
        result = swap_staged(client, database, staged, _fail_at=_fail_at)
    except Exception:
        _drop_unless_swapping(client.get_database(database))
        raise
    if progress:
        progress(RestoreProgress("done", None, staged.total_documents, staged.total_bytes))
    return result
