"""Restore copies: a backup loaded into a database of its own, for inspection, that expires.

A copy is an ordinary database on the tenants' cluster that holds exactly one backup's state
plus one *marker* collection, ``__daai_restore.copy`` (the restore's reserved prefix: no
backup can hold a collection of that name, the swap never drops it, the restore's leftover
cleanup never matches it). The marker holds one document::

    {_id: "copy", v: 1, tenant, file, actor, state: "loading" | "ready", run,
     created_at, expires_at, completed_at?, collections?, documents?}

The marker is the one source of truth: a database is a copy made by daai-backup exactly when
it holds that document, and the copy belongs to the tenant it names. Nothing else records
copies, so nothing can disagree with it. Lifecycle (see :func:`claim`, :func:`complete`):

1. *claim*: the marker is written first, ``state: "loading"`` (an insert on a fixed ``_id``:
   of two runs racing for one new name, exactly one wins; a replace is a conditional update
   on the same tenant's marker);
2. the backup is staged and swapped in with the restore's own machinery
   (:mod:`daai_backup.mongo.restore`): the archive's database name does not matter, every
   namespace is loaded into the copy's database, verified, then renamed in place;
3. *complete*: the marker flips to ``ready`` (the commit point). A load that fails drops the
   whole database; one that is killed leaves ``loading``, which lists as ``incomplete`` and
   is dropped by the next sweep (:func:`drop_copy`).

A copy's database name is checked by :func:`check_copy_name` (MongoDB's rules, reserved and
tenant databases). Only databases that are not tenant databases are ever read for a marker.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from daai_backup.errors import CopyRefused, InvalidName
from daai_backup.mongo.namespaces import RESERVED_PREFIX
from daai_backup.mongo.translate import translated

#: The marker collection inside a copy, and its one document's ``_id``.
MARKER: Final = f"{RESERVED_PREFIX}copy"
MARKER_ID: Final = "copy"
MARKER_VERSION: Final = 1
#: MongoDB's own databases: never a copy.
SYSTEM_DATABASES: Final = frozenset({"admin", "local", "config"})
#: Database names starting with this (any case) are daai-backup's own.
RESERVED_DATABASE_PREFIX: Final = "__daai"
#: Characters MongoDB refuses in a database name (any platform), and its length limit.
FORBIDDEN_CHARACTERS: Final = '/\\. "$*<>:|?\x00'
MAX_NAME_BYTES: Final = 63


@dataclass(frozen=True)
class CopyInfo:
    """One copy, as its marker describes it."""

    database: str
    tenant: str
    file: str
    actor: str | None
    state: str  # "loading" (or killed while loading: incomplete) or "ready"
    run: str
    created_at: datetime
    expires_at: datetime
    collections: int | None = None
    documents: int | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def expired(self, now: datetime) -> bool:
        return self.expires_at <= now


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        return datetime.fromtimestamp(0, UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _info(database: str, doc: Mapping[str, Any]) -> CopyInfo:
    return CopyInfo(
        database=database,
        tenant=str(doc.get("tenant", "")),
        file=str(doc.get("file", "")),
        actor=doc.get("actor"),
        state=str(doc.get("state", "loading")),
        run=str(doc.get("run", "")),
        created_at=_utc(doc.get("created_at")),
        expires_at=_utc(doc.get("expires_at")),
        collections=doc.get("collections"),
        documents=doc.get("documents"),
    )


def check_copy_name(name: str, *, control_database: str, tenant_databases: Iterable[str]) -> None:
    """Refuse a database name a copy must not get, with one line (``InvalidName``).

    MongoDB's rules (non-empty, under 64 bytes, none of ``/\\. "$*<>:|?`` or NUL);
    MongoDB's own databases, daai-backup's control database and names starting with
    ``__daai``; and every tenant's live database. Compared without case: MongoDB refuses
    a database whose name differs from an existing one only in case, and a copy named like
    a tenant database in other capitals would stand in that tenant's way.
    """
    if not name:
        raise InvalidName("the copy's database name is empty: give one, e.g. acme_hr_copy")
    bad = sorted({c for c in name if c in FORBIDDEN_CHARACTERS})
    if bad:
        shown = " ".join("NUL" if c == "\x00" else "space" if c == " " else c for c in bad)
        raise InvalidName(
            f"{name!r} is not a valid MongoDB database name (it holds {shown}); use letters, "
            "digits, '_' and '-'"
        )
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidName(
            f"database name {name[:20]!r}... is {len(name.encode())} bytes; MongoDB allows "
            f"{MAX_NAME_BYTES}: pick a shorter name"
        )
    folded = name.casefold()
    if folded in SYSTEM_DATABASES or folded == control_database.casefold():
        raise InvalidName(
            f"{name!r} is reserved (MongoDB's own or daai-backup's control database): a copy "
            "needs a database of its own"
        )
    if folded.startswith(RESERVED_DATABASE_PREFIX):
        raise InvalidName(
            f"{name!r} starts with {RESERVED_DATABASE_PREFIX!r}, which is reserved for "
            "daai-backup: pick another name"
        )
    for database in tenant_databases:
        if database.casefold() == folded:
            same = "is" if database == name else f"differs only in case from {database!r},"
            raise InvalidName(
                f"{name!r} {same} a tenant's live database: a copy never goes there; pick "
                "another name (nothing changed)"
            )


def read_copy(client: MongoClient[Any], database: str) -> CopyInfo | None:
    """The copy in ``database``, or None when it holds no marker (reading creates nothing)."""
    with translated(f"reading the copy marker of {database!r}"):
        doc = client[database][MARKER].find_one({"_id": MARKER_ID})
    return None if doc is None else _info(database, doc)


def find_copies(client: MongoClient[Any], *, skip: Iterable[str]) -> list[CopyInfo]:
    """Every copy on the cluster: each database not in ``skip`` (nor MongoDB's own) holding
    a marker; by database name. One listing plus one read per candidate database."""
    skipped = {s.casefold() for s in skip} | SYSTEM_DATABASES
    with translated("listing the databases of the cluster"):
        names = client.list_database_names()
    found = []
    for name in sorted(names):
        if name.casefold() in skipped:
            continue
        info = read_copy(client, name)
        if info is not None:
            found.append(info)
    return found


def case_twin(client: MongoClient[Any], name: str) -> str | None:
    """An existing database whose name differs from ``name`` only in case, if any."""
    with translated("listing the databases of the cluster"):
        names = client.list_database_names()
    return next((n for n in names if n != name and n.casefold() == name.casefold()), None)


def _refuse(
    database: str,
    current: Mapping[str, Any] | None,
    others: list[str],
    *,
    tenant: str,
    replace: bool,
) -> None:
    """The refusals of a copy's target: ``current`` its marker, ``others`` its other
    collections."""
    if current is None:
        if others:
            raise CopyRefused(
                f"database {database!r} exists and is not a copy made by daai-backup: it is "
                "never overwritten; pick another name (nothing changed)"
            )
        return
    if current.get("tenant") != tenant:
        raise CopyRefused(
            f"database {database!r} is a copy made for another tenant: pick another name "
            "(nothing changed)"
        )
    if not replace and current.get("state") == "ready":
        raise CopyRefused(
            f"database {database!r} already holds a copy of {current.get('file')}: add "
            "--replace (flow: replace=True) to load another backup into it, or pick another "
            "name (nothing changed)"
        )


def check_target(client: MongoClient[Any], database: str, *, tenant: str, replace: bool) -> None:
    """Refuse, changing nothing, a target :func:`claim` would refuse (checked early, before
    the lease and the load)."""
    twin = case_twin(client, database)
    if twin is not None:
        raise CopyRefused(
            f"database {twin!r} exists and differs from {database!r} only in case, which "
            "MongoDB refuses: pick another name (nothing changed)"
        )
    db = client[database]
    with translated(f"looking at database {database!r}"):
        others = [n for n in db.list_collection_names() if n != MARKER]
        current = db[MARKER].find_one({"_id": MARKER_ID})
    _refuse(database, current, others, tenant=tenant, replace=replace)


def claim(
    client: MongoClient[Any],
    database: str,
    *,
    tenant: str,
    file: str,
    actor: str | None,
    created_at: datetime,
    expires_at: datetime,
    replace: bool,
) -> str:
    """Make ``database`` this tenant's copy in state ``loading``; return the run token.

    Refuses (``CopyRefused``, nothing changed) a database that exists and is not a copy, a
    copy of another tenant, and a complete copy of this tenant unless ``replace`` (an
    incomplete one, left by a killed load, is replaced anyway: nobody can be reading it).
    A replaced copy is emptied (everything but the marker dropped) once the marker says
    ``loading``.
    """
    db = client[database]
    run = secrets.token_hex(4)
    doc = {
        "v": MARKER_VERSION,
        "tenant": tenant,
        "file": file,
        "actor": actor,
        "state": "loading",
        "run": run,
        "created_at": created_at,
        "expires_at": expires_at,
    }
    with translated(f"claiming database {database!r} for a copy"):
        current = db[MARKER].find_one({"_id": MARKER_ID})
        if current is None:
            check_target(client, database, tenant=tenant, replace=replace)
            try:
                db[MARKER].insert_one({"_id": MARKER_ID, **doc})
            except DuplicateKeyError:
                current = db[MARKER].find_one({"_id": MARKER_ID})
            else:
                if [n for n in db.list_collection_names() if n != MARKER]:
                    # Someone created collections there between the look and the claim.
                    db[MARKER].delete_one({"_id": MARKER_ID, "run": run})
                    raise CopyRefused(
                        f"database {database!r} was created by someone else meanwhile: it is "
                        "not a copy made by daai-backup; pick another name (nothing changed)"
                    )
                return run
        if current is None:  # claimed and dropped again by someone else, just now
            raise CopyRefused(
                f"database {database!r} changed while it was being claimed; try again "
                "(nothing changed)"
            )
        _refuse(database, current, [], tenant=tenant, replace=replace)
        taken = db[MARKER].update_one(
            {"_id": MARKER_ID, "tenant": tenant, "run": current.get("run")}, {"$set": doc}
        )
        if taken.matched_count != 1:
            raise CopyRefused(
                f"the copy in {database!r} changed while it was being replaced; try again "
                "(nothing changed)"
            )
        for name in db.list_collection_names():
            if name != MARKER:
                db.drop_collection(name)
    return run


def complete(
    client: MongoClient[Any], database: str, run: str, *, collections: int, documents: int
) -> None:
    """Flip the copy's marker to ``ready`` (the commit point of a copy)."""
    with translated(f"completing the copy in {database!r}"):
        done = client[database][MARKER].update_one(
            {"_id": MARKER_ID, "run": run, "state": "loading"},
            {
                "$set": {
                    "state": "ready",
                    "completed_at": datetime.now(UTC),
                    "collections": collections,
                    "documents": documents,
                }
            },
        )
    if done.matched_count != 1:
        raise CopyRefused(
            f"the copy in {database!r} was replaced or dropped while it loaded; load it again"
        )


def drop_copy(client: MongoClient[Any], database: str, *, run: str | None = None) -> bool:
    """Drop the copy's whole database if it still holds a marker (of run ``run``, if given).

    Whether it was dropped. Never drops a database without a marker.
    """
    with translated(f"dropping the copy {database!r}"):
        query: dict[str, Any] = {"_id": MARKER_ID}
        if run is not None:
            query["run"] = run
        if client[database][MARKER].find_one(query) is None:
            return False
        client.drop_database(database)
    return True


__all__ = [
    "MARKER",
    "CopyInfo",
    "check_copy_name",
    "check_target",
    "claim",
    "complete",
    "drop_copy",
    "find_copies",
    "read_copy",
]
