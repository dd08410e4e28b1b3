"""The swap: carrying out a journalled plan that puts staged collections in place of live ones.

Each staged collection replaces its live target (a same-database rename, or a copy where the
server's rename would lose options), live collections the snapshot lacks are dropped, views
are recreated, and the journal is dropped last. Every step can be repeated, so a swap that
stopped half-way is finished by running it again (``finish_interrupted_restore``). Also here:
removing the leftovers of an earlier run. See ``docs/decisions.md`` (MongoDB section).
"""

from __future__ import annotations

from typing import Any

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON
from pymongo import MongoClient
from pymongo.database import Database

from daai_backup.mongo.archive_format import CollectionMetadata
from daai_backup.mongo.journal import (
    JOURNAL,
    PlannedCollection,
    SwapPlan,
    pending_swap,
    read_journal,
    read_plan,
)
from daai_backup.mongo.namespaces import RESERVED_PREFIX, is_ours
from daai_backup.mongo.translate import translated

_RAW: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)
_COPY_BATCH_BYTES = 8 * 1024 * 1024
_COPY_BATCH_DOCS = 1000


class _SimulatedCrash(BaseException):
    """Raised by the ``_fail_at`` test seam: behaves like the process dying (no cleanup)."""


def check_crash(fail_at: str | None, step: str) -> None:
    """The ``_fail_at`` test seam: crash here when ``fail_at`` names this step."""
    if fail_at == step:
        raise _SimulatedCrash(step)


def live_collections(db: Database[Any]) -> dict[str, str]:
    """Every collection and view of ``db`` (system and staging ones too): name -> type.

    ``nameOnly``: options can be megabytes per collection (validators), and are not needed.
    """
    infos = db.list_collections(nameOnly=True)
    return {str(i["name"]): str(i.get("type", "collection")) for i in infos}


def drop_leftovers(db: Database[Any]) -> None:
    """Remove staging collections (and the journal) left by an earlier run.

    Only names of the restore's own patterns (``namespaces.is_ours``): a user collection
    that merely starts with the prefix is not ours to drop.
    """
    for name in live_collections(db):
        if is_ours(name) and name != JOURNAL:
            db.drop_collection(name)
    db.drop_collection(JOURNAL)


def rename_keeps_options(db: Database[Any], run: str) -> bool:
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


def swap_method(meta: CollectionMetadata, keeps_options: bool) -> str:
    """ "rename" (metadata only) where it keeps everything; "copy" otherwise.

    Time-series collections are always copied: not every server version renames them, and
    a swap must not start what it cannot finish.
    """
    if meta.type == "timeseries" or (meta.options and not keeps_options):
        return "copy"
    return "rename"


def _copy_over(db: Database[Any], entry: PlannedCollection) -> None:
    """Swap by copy: recreate the target with its options, copy the staged data, index it."""
    staging, target = entry.staging, entry.target
    db.drop_collection(target)
    db.command(SON([("create", target), *entry.options.items()]))
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
    if entry.indexes:
        db.command("createIndexes", target, indexes=list(entry.indexes))
    db.drop_collection(staging)  # last: while it exists, a re-run repeats this copy


def apply_swap(db: Database[Any], plan: SwapPlan, fail_at: str | None) -> None:
    """Carry out a fixed swap plan (a journal in state ``swapping``); every step can be repeated."""
    live = live_collections(db)
    admin = db.client.admin
    for step, entry in enumerate(plan.collections):
        if entry.staging not in live:
            continue  # swapped by an earlier (interrupted) run
        if live.get(entry.target) == "view":
            db.drop_collection(entry.target)
        if entry.method == "copy":
            _copy_over(db, entry)
        else:
            admin.command(
                "renameCollection",
                f"{db.name}.{entry.staging}",
                to=f"{db.name}.{entry.target}",
                dropTarget=True,
            )
        if step == 0:
            check_crash(fail_at, "swap")
    for name in plan.drop:
        db.drop_collection(name)
    for view in plan.views:
        db.drop_collection(view.name)
        db.command(SON([("create", view.name), *view.options.items()]))
    db.drop_collection(JOURNAL)


def finish_pending_swap(db: Database[Any]) -> bool:
    """Finish a swap an interrupted restore journalled; whether there was one."""
    state = pending_swap(db)
    if state is None:
        return False
    apply_swap(db, read_plan(db, state), None)
    return True


def interrupted_restore(client: MongoClient[Any], database: str) -> bool:
    """Whether a restore of ``database`` stopped mid-swap (its live state is torn).

    A restore that stopped while ``loading`` or ``staged`` left the live database untouched:
    that is not an interrupted restore.
    """
    with translated(f"checking {database!r} for an interrupted restore"):
        return pending_swap(client.get_database(database)) is not None


def finish_interrupted_restore(client: MongoClient[Any], database: str) -> bool:
    """Finish the swap of a restore of ``database`` that stopped mid-swap, exactly as the
    next restore would; whether there was one. Safe to repeat.

    Leftover staging collections are dropped only when a swap was finished (the swap's own
    ones are gone by then); with nothing pending, nothing is touched (a ``staged`` restore
    stays staged).
    """
    db = client.get_database(database)
    with translated(f"finishing the interrupted restore of {database!r}"):
        if not finish_pending_swap(db):
            return False
        drop_leftovers(db)
    return True


def clean_abandoned_restore(client: MongoClient[Any], database: str) -> str | None:
    """Remove what a killed or abandoned restore left in ``database``; say what was done
    (one line), None when there was nothing.

    For a caller that holds the tenant's lease, so no restore of ``database`` is running
    (e.g. at the start of any operation of the tenant):

    - journal ``loading`` or ``staged``: drops the staging collections and the journal; live
      data is untouched (it always was);
    - journal ``swapping``: finishes the swap exactly as :func:`finish_interrupted_restore`
      does, so a half-restored database never outlives the next operation of its tenant;
    - no journal: drops collections of the restore's own names if any are left.

    Only the restore's own names are dropped (``namespaces.is_ours``).
    """
    db = client.get_database(database)
    with translated(f"cleaning up an abandoned restore of {database!r}"):
        state = read_journal(db)
        run = state.get("run") if state is not None else None
        if state is not None and state.get("state") == "swapping":
            apply_swap(db, read_plan(db, state), None)
            drop_leftovers(db)
            return (
                f"restore run {run} of database {database!r} was interrupted while swapping: "
                "finished its swap, the database now holds that restore's backup"
            )
        live = live_collections(db)
        leftovers = [n for n in live if is_ours(n) and n != JOURNAL]
        if state is None and not leftovers and JOURNAL not in live:
            return None
        drop_leftovers(db)
    if state is None:
        return (
            f"dropped {len(leftovers)} leftover collection(s) of an earlier restore of "
            f"database {database!r}; live data untouched"
        )
    return (
        f"restore run {run} of database {database!r} was abandoned while "
        f"{state.get('state')}: dropped its {len(leftovers)} staging collection(s) and its "
        "journal; live data untouched"
    )
