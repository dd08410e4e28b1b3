"""One operation per tenant at a time: a lease in a control database of the tenants' cluster.

Backup, restore and retention of one tenant (and, later, rekey and change capture) take the
tenant's lease first. It is one document per tenant in ``<control database>.leases``
(``DAAI_BACKUP_CONTROL_DATABASE``, default ``daai_backup_control``)::

    {_id: "tenant:<id>", holder: <random token>, operation: "restore", detail: <file>,
     owner: {host, pid, run}, acquired_at, renewed_at, expires_at}

**Why MongoDB.** The tenant's own cluster is where every actor meets: a Prefect worker, a
flow run served by another Prefect server, the CLI (which starts a private temporary Prefect
server when ``PREFECT_API_URL`` is unset) and a person's script all have to reach it to touch
the tenant's data, whatever started them. A Prefect concurrency limit only excludes runs that
talk to the same Prefect server: two restores of one tenant once ran at once that way, and a
backup taken during another restore's swap recorded a state that never existed.

**Server time only.** Every expiry decision is made by the one MongoDB server, in one
atomic single-document update that reads ``$$NOW``: acquiring matches the document only when
it has expired (or is already ours), and sets ``expires_at = $$NOW + TTL``. Hosts' wall
clocks may be wrong by minutes without effect; a holder uses its own *monotonic* clock only
to measure how long ago it sent a renewal. Times are compared as ``$toLong`` milliseconds:
SecantusDB (the test server) compares a stored date with ``$$NOW`` wrongly, and the numeric
form means the same on MongoDB.

**Acquiring** is one ``update_one`` with ``upsert=True``, filter ``{_id, $expr: expired or
holder is me}``: a missing document is inserted, an expired one is taken over, and when the
document exists and is live the upsert's insert fails with a duplicate key on ``_id``, which
means "held by someone else". Racing acquirers are ordered by the server: exactly one update
or insert wins. "Or holder is me" makes a retry after an ambiguous network error safe.
Writes use ``w: majority``, so an acknowledged lease survives a failover.

**Holding.** A daemon thread renews every ``TTL / 3`` (10 s of 30 s) with ``{_id, holder:
token}``; a renewal that matches nothing means someone else has the lease (it expired and was
taken over), and the lease is marked lost at once. Release deletes only ``{_id, holder:
token}``, so a holder that lost its lease never deletes its successor's. Callers call
:meth:`Lease.check` at safe points (before a backup is committed to storage, before a
restore's swap), which raises :class:`~daai_backup.errors.LeaseLost`.

**kill -9.** Nothing renews; the lease expires within one TTL (30 s) of the last renewal and
the next waiter's poll (at most 2 s apart) takes it over. Stale documents of holders killed
with nobody waiting are removed by a TTL index a day after they expired (housekeeping only:
correctness never waits for MongoDB's TTL monitor, which runs once a minute).

**Network partition, and the exact reasoning.** Let ``s`` be the holder's monotonic time when
it *sent* its last renewal that succeeded. The server applied it no earlier than ``s`` and set
``expires_at`` to its own now + TTL, so nobody can take the lease over before ``s + TTL``
(measured on any clock that runs at the same rate). The holder treats the lease as valid only
until ``s + TTL - margin`` (``margin = min(1 s, TTL / 10)``): past that, :meth:`Lease.check`
raises and the renewal thread, which wakes at that moment whatever its schedule, marks the
lease lost. So a partitioned holder stops before anyone else can take over. That needs TTL
greater than the renewal interval: a healthy holder must land a renewal within ``TTL -
margin`` of sending the previous one, or it would lose its lease between its own renewals
with nothing wrong; TTL = 3 × interval leaves two failed attempts (each bounded by a client
timeout) before the lease is at risk. The limits: (1) clock *rates* must agree within the
margin (1 s in 30 s; NTP slews far less, but a VM paused and resumed does not count time
honestly); (2) :meth:`Lease.check` is a test at one moment, not a fence: storage cannot verify
a lease token, so a holder paused right after ``check()`` (a GC pause, SIGSTOP, a frozen VM)
or a commit that takes longer than what is left of the TTL can still act after the lease has
passed to someone else. The checks sit right before short steps (the storage commit of a
finished upload; the restore's swap, which writes to the same cluster as the lease, so a
holder cut off from the lease is mostly cut off from the swap too) to keep that window small.

**Re-entrant within one context.** A ``ContextVar`` holds the leases taken in this context;
taking a tenant's lease again there yields the same :class:`Lease` without a new document.
The restore flow holds the lease around its safety-backup subflow, which runs in the same
thread and context. Another thread (a fresh context) waits like anyone else.

**Waiting** polls with a backoff from 0.1 s to 2 s until the lease is taken or the wait limit
(6 h by default) passes (:class:`~daai_backup.errors.LeaseTimeout`, naming the holder), and
calls ``on_wait(holder, waited_seconds)`` at once and then at most every 10 s; see
:func:`waiting_message` for the line to log.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import pymongo
from pymongo import WriteConcern
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern

from daai_backup.errors import LeaseLost, LeaseTimeout, TransientDatabaseError
from daai_backup.mongo.translate import one_line, translated

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection

    from daai_backup.settings import Settings

logger = logging.getLogger(__name__)

COLLECTION: Final = "leases"
DEFAULT_TTL_SECONDS: Final = 30.0
"""A killed holder's lease frees itself this long after its last renewal."""
DEFAULT_WAIT_SECONDS: Final = 6 * 3600.0
"""How long an operation waits for another one of the same tenant (a long restore)."""
REPORT_EVERY_SECONDS: Final = 10.0
"""``on_wait`` is called at most this often while waiting."""
ATTEMPT_TIMEOUT_SECONDS: Final = 10.0
"""Client-side bound of one acquire or release round trip."""
CLEANUP_AFTER_SECONDS: Final = 24 * 3600
"""The TTL index removes a lease document this long after it expired."""
INDEX_NAME: Final = "expired_leases_cleanup"

_POLL_FIRST_SECONDS = 0.1
_POLL_MAX_SECONDS = 2.0
_RENEW_RETRY_SECONDS = 1.0

OnWait = Callable[["LeaseInfo", float], None]
"""``on_wait(holder, waited_seconds)``: called while waiting for another holder."""


def lease_id(tenant_id: str) -> str:
    """The lease document's ``_id`` for a tenant."""
    return f"tenant:{tenant_id}"


def _database(settings_or_db_name: Settings | str) -> str:
    if isinstance(settings_or_db_name, str):
        return settings_or_db_name
    return settings_or_db_name.control_database


def _expired() -> dict[str, Any]:
    """True on the server when the document's lease has passed (or it has no expiry)."""
    return {"$lte": [{"$toLong": "$expires_at"}, {"$toLong": "$$NOW"}]}


def leases_collection(
    client: MongoClient[Any], settings_or_db_name: Settings | str
) -> Collection[Any]:
    """The ``leases`` collection, majority writes and reads: acknowledged leases survive
    a failover."""
    return client[_database(settings_or_db_name)].get_collection(
        COLLECTION,
        write_concern=WriteConcern("majority"),
        read_concern=ReadConcern("majority"),
    )


_indexed: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_indexed_lock = threading.Lock()


def ensure_indexes(client: MongoClient[Any], settings_or_db_name: Settings | str) -> None:
    """Create the leases' cleanup TTL index if missing (idempotent; once per client)."""
    name = _database(settings_or_db_name)
    with _indexed_lock:
        if name in _indexed.get(client, set()):
            return
    with translated(f"creating the lease index in database {name!r}"):
        try:
            leases_collection(client, name).create_index(
                "expires_at", expireAfterSeconds=CLEANUP_AFTER_SECONDS, name=INDEX_NAME
            )
        except OperationFailure as exc:
            if exc.code not in (85, 86):  # IndexOptionsConflict, IndexKeySpecsConflict
                raise
            # An index on expires_at with other options: cleanup only, correctness is unaffected.
            logger.warning("lease cleanup index in %s left as it is: %s", name, one_line(exc))
    with _indexed_lock:
        _indexed.setdefault(client, set()).add(name)


@dataclass(frozen=True)
class LeaseInfo:
    """A lease document as read: who holds a tenant's lease, for what, since when."""

    tenant_id: str
    holder: str
    operation: str
    detail: str | None
    host: str
    pid: int | None
    run: str | None
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> LeaseInfo:
        owner = doc.get("owner") or {}
        epoch = datetime.fromtimestamp(0, UTC)
        return cls(
            tenant_id=str(doc["_id"]).removeprefix("tenant:"),
            holder=str(doc.get("holder", "")),
            operation=str(doc.get("operation") or "operation"),
            detail=doc.get("detail"),
            host=str(owner.get("host") or "an unknown host"),
            pid=owner.get("pid"),
            run=owner.get("run"),
            acquired_at=_utc(doc.get("acquired_at")) or epoch,
            renewed_at=_utc(doc.get("renewed_at")) or epoch,
            expires_at=_utc(doc.get("expires_at")) or epoch,
        )

    def describe(self, now: datetime | None = None) -> str:
        """``the restore of acme-hr (file; started 12:01 UTC on host h, pid 42, run r)``."""
        now = now or datetime.now(UTC)
        fmt = "%H:%M UTC" if self.acquired_at.date() == now.date() else "%Y-%m-%d %H:%M UTC"
        where = f"started {self.acquired_at.strftime(fmt)} on host {self.host}"
        if self.pid is not None:
            where += f", pid {self.pid}"
        if self.run:
            where += f", run {self.run}"
        detail = f"{self.detail}; " if self.detail else ""
        return f"the {self.operation} of {self.tenant_id} ({detail}{where})"


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def format_duration(seconds: float) -> str:
    """``40 s``, ``12 min``, ``2 h 05 min``."""
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def waiting_message(holder: LeaseInfo, waited_seconds: float) -> str:
    """The one line to log while waiting, e.g. ``waiting for the restore of acme-hr (started
    12:01 UTC on host h, run restore-acme-hr) to finish: 40 s so far``."""
    return f"waiting for {holder.describe()} to finish: {format_duration(waited_seconds)} so far"


def waiting_line(holder: LeaseInfo, waited_seconds: float) -> str:
    """The short line a command prints while it waits, e.g. ``waiting for the restore of
    acme to finish (12 s)`` (:func:`waiting_message` is the log's, with who holds it)."""
    what = f"the {holder.operation} of {holder.tenant_id}"
    return f"waiting for {what} to finish ({format_duration(waited_seconds)})"


def current_holder(
    client: MongoClient[Any], settings_or_db_name: Settings | str, tenant_id: str
) -> LeaseInfo | None:
    """Who holds the tenant's lease now (by the server's clock), or None (status displays)."""
    with translated(f"reading the lease of tenant {tenant_id!r}"):
        doc = leases_collection(client, settings_or_db_name).find_one(
            {"_id": lease_id(tenant_id), "$expr": {"$not": [_expired()]}}
        )
    return None if doc is None else LeaseInfo.from_document(doc)


def current_holders(
    client: MongoClient[Any], settings_or_db_name: Settings | str, tenant_ids: Iterable[str]
) -> dict[str, LeaseInfo]:
    """Who holds each tenant's lease now, in one query; tenants nobody holds are left out."""
    ids = [lease_id(t) for t in tenant_ids]
    if not ids:
        return {}
    with translated("reading the tenants' leases"):
        docs = list(
            leases_collection(client, settings_or_db_name).find(
                {"_id": {"$in": ids}, "$expr": {"$not": [_expired()]}}
            )
        )
    infos = (LeaseInfo.from_document(doc) for doc in docs)
    return {info.tenant_id: info for info in infos}


class Lease:
    """A tenant's lease as taken by this process; renewed by a thread until released.

    Made by :func:`tenant_lease`; callers use :meth:`check` at their safe points.
    """

    def __init__(
        self,
        collection: Collection[Any],
        tenant_id: str,
        operation: str,
        *,
        detail: str | None = None,
        owner_run: str | None = None,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        renew_every: float | None = None,
    ) -> None:
        renew_every = ttl_seconds / 3 if renew_every is None else renew_every
        if not 0 < renew_every < ttl_seconds:
            raise ValueError(
                f"lease renewal every {renew_every:g} s must be shorter than its TTL "
                f"({ttl_seconds:g} s), or a healthy holder would lose its lease"
            )
        self.tenant_id = tenant_id
        self.operation = operation
        self.detail = detail
        self.owner: dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "run": owner_run,
        }
        self.token = secrets.token_hex(16)
        self.ttl_seconds = ttl_seconds
        self.renew_every = renew_every
        self.waited_seconds = 0.0
        """How long :meth:`acquire` waited for another holder."""
        self._collection = collection
        self._id = lease_id(tenant_id)
        self._ttl_ms = int(ttl_seconds * 1000)
        self._margin = min(1.0, ttl_seconds / 10)
        self._state = threading.Lock()
        self._valid_until = 0.0  # monotonic; see the module docstring
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._released = False

    # --- state ---------------------------------------------------------------------------

    @property
    def lost(self) -> bool:
        """True once the lease was taken over or went unrenewed for its TTL (never reset)."""
        with self._state:
            self._expire_locked()
            return self._lost is not None

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the lease is still certainly ours; call at safe points."""
        with self._state:
            self._expire_locked()
            reason = self._lost
        if reason is not None:
            raise LeaseLost(
                f"the {self.operation} of tenant {self.tenant_id!r} lost its lease ({reason}) "
                "and stopped before changing anything more, since another operation may now "
                "run; run it again"
            )

    def _expire_locked(self) -> None:
        if self._lost is None and time.monotonic() >= self._valid_until:
            self._lost = f"not renewed for {self.ttl_seconds:g} s: MongoDB unreachable or slow"

    def _mark_lost(self, reason: str) -> None:
        with self._state:
            if self._lost is None:
                self._lost = reason
        logger.warning("lease of tenant %s lost: %s", self.tenant_id, reason)

    # --- acquire -------------------------------------------------------------------------

    def acquire(
        self,
        *,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        on_wait: OnWait | None = None,
        report_every: float = REPORT_EVERY_SECONDS,
    ) -> None:
        """Take the lease, polling while someone else holds it, for up to ``wait_seconds``."""
        started = time.monotonic()
        deadline = started + wait_seconds
        delay = _POLL_FIRST_SECONDS
        last_report: float | None = None
        failing_since: float | None = None
        holder: LeaseInfo | None = None
        while True:
            error: TransientDatabaseError | None = None
            try:
                taken, holder = self._try_acquire()
                failing_since = None
            except TransientDatabaseError as exc:
                # Keep polling through a blip (for up to a TTL); an attempt the server did
                # apply is picked up by the next one ("or holder is me").
                failing_since = failing_since if failing_since is not None else time.monotonic()
                if time.monotonic() - failing_since >= self.ttl_seconds:
                    raise
                taken, error = False, exc
            now = time.monotonic()
            if taken:
                self.waited_seconds = now - started
                self._start_renewing()
                return
            due = last_report is None or now - last_report >= report_every
            if holder is not None and on_wait is not None and due:
                last_report = now
                try:
                    on_wait(holder, now - started)
                except Exception:  # a display problem must not fail the operation
                    logger.debug("on_wait callback failed", exc_info=True)
            if now >= deadline:
                if error is not None:
                    raise error
                who = holder.describe() if holder else "another operation"
                raise LeaseTimeout(
                    f"gave up waiting for the lease of tenant {self.tenant_id!r} after "
                    f"{format_duration(now - started)}: {who} still holds it; try again once "
                    "it has finished"
                )
            time.sleep(min(delay * random.uniform(0.75, 1.25), max(0.0, deadline - now)))  # noqa: S311
            delay = min(delay * 2, _POLL_MAX_SECONDS)

    def _try_acquire(self) -> tuple[bool, LeaseInfo | None]:
        """One attempt: ``(True, None)`` when taken, else ``(False, holder or None)``."""
        mine = {"$eq": ["$holder", self.token]}
        sent = time.monotonic()
        with (
            translated(f"taking the lease of tenant {self.tenant_id!r}"),
            pymongo.timeout(ATTEMPT_TIMEOUT_SECONDS),
        ):
            try:
                self._collection.update_one(
                    {"_id": self._id, "$expr": {"$or": [_expired(), mine]}},
                    [
                        {
                            "$set": {
                                "holder": {"$literal": self.token},
                                "operation": {"$literal": self.operation},
                                "detail": {"$literal": self.detail},
                                "owner": {"$literal": self.owner},
                                "acquired_at": {"$cond": [mine, "$acquired_at", "$$NOW"]},
                                "renewed_at": "$$NOW",
                                "expires_at": {"$add": ["$$NOW", self._ttl_ms]},
                            }
                        }
                    ],
                    upsert=True,
                )
            except DuplicateKeyError:
                doc = self._collection.find_one({"_id": self._id})
                return False, None if doc is None else LeaseInfo.from_document(doc)
            except PyMongoError as exc:
                if exc.timeout:  # a slow server is a passing condition, like a lost connection
                    raise TransientDatabaseError(
                        f"taking the lease of tenant {self.tenant_id!r}: MongoDB did not answer "
                        f"within {ATTEMPT_TIMEOUT_SECONDS:g} s; check the server and try again"
                    ) from exc
                raise
        with self._state:
            self._valid_until = sent + self.ttl_seconds - self._margin
        return True, None

    # --- renew and release ---------------------------------------------------------------

    def _start_renewing(self) -> None:
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"lease-{self.tenant_id}", daemon=True
        )
        self._thread.start()

    def _renew_loop(self) -> None:
        next_at = time.monotonic() + self.renew_every
        while True:
            with self._state:
                valid_until = self._valid_until
            if self._stop.wait(max(0.0, min(next_at, valid_until) - time.monotonic())):
                return
            sent = time.monotonic()
            if sent >= valid_until:
                self._mark_lost(
                    f"not renewed for {self.ttl_seconds:g} s: MongoDB unreachable or slow"
                )
                return
            try:
                with pymongo.timeout(max(0.1, min(self.renew_every, valid_until - sent))):
                    result = self._collection.update_one(
                        {"_id": self._id, "holder": self.token},
                        [
                            {
                                "$set": {
                                    "renewed_at": "$$NOW",
                                    "expires_at": {"$add": ["$$NOW", self._ttl_ms]},
                                }
                            }
                        ],
                    )
            except PyMongoError as exc:
                logger.warning(
                    "lease of tenant %s: renewal failed, retrying: %s",
                    self.tenant_id,
                    one_line(exc),
                )
                next_at = time.monotonic() + min(_RENEW_RETRY_SECONDS, self.renew_every)
                continue
            if result.matched_count == 0:
                self._mark_lost(self._successor())
                return
            with self._state:
                self._valid_until = max(self._valid_until, sent + self.ttl_seconds - self._margin)
            next_at = sent + self.renew_every

    def _successor(self) -> str:
        try:
            with pymongo.timeout(ATTEMPT_TIMEOUT_SECONDS):
                doc = self._collection.find_one({"_id": self._id})
        except PyMongoError:
            doc = None
        if doc is None:
            return "its document was removed"
        return f"taken over by {LeaseInfo.from_document(doc).describe()}"

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours (idempotent, never raises)."""
        if self._released:
            return
        self._released = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.renew_every + 1.0)
        try:
            with pymongo.timeout(ATTEMPT_TIMEOUT_SECONDS):
                self._collection.delete_one({"_id": self._id, "holder": self.token})
        except PyMongoError as exc:
            logger.warning(
                "lease of tenant %s not released (%s): it expires within %g s",
                self.tenant_id,
                one_line(exc),
                self.ttl_seconds,
            )


_held: ContextVar[Mapping[tuple[str, str], Lease]] = ContextVar(
    "daai_backup_held_leases", default=MappingProxyType({})
)


def held_lease(settings_or_db_name: Settings | str, tenant_id: str) -> Lease | None:
    """The tenant's lease if this context holds it."""
    return _held.get().get((_database(settings_or_db_name), tenant_id))


@contextmanager
def tenant_lease(
    client: MongoClient[Any],
    settings_or_db_name: Settings | str,
    tenant_id: str,
    operation: str,
    *,
    detail: str | None = None,
    owner_run: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    on_wait: OnWait | None = None,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    renew_every: float | None = None,
    report_every: float = REPORT_EVERY_SECONDS,
) -> Iterator[Lease]:
    """Hold the tenant's lease for the block; re-entrant within one context.

    Waits up to ``wait_seconds`` for another holder (``LeaseTimeout`` after), calling
    ``on_wait``; inside, call ``lease.check()`` before each step that must not run once
    another operation may have started.
    """
    database = _database(settings_or_db_name)
    held = _held.get()
    key = (database, tenant_id)
    if key in held:
        yield held[key]
        return
    ensure_indexes(client, database)
    lease = Lease(
        leases_collection(client, database),
        tenant_id,
        operation,
        detail=detail,
        owner_run=owner_run,
        ttl_seconds=ttl_seconds,
        renew_every=renew_every,
    )
    lease.acquire(wait_seconds=wait_seconds, on_wait=on_wait, report_every=report_every)
    token = _held.set(MappingProxyType({**held, key: lease}))
    try:
        yield lease
    finally:
        _held.reset(token)
        lease.release()


__all__ = [
    "DEFAULT_TTL_SECONDS",
    "DEFAULT_WAIT_SECONDS",
    "Lease",
    "LeaseInfo",
    "OnWait",
    "current_holder",
    "current_holders",
    "ensure_indexes",
    "format_duration",
    "held_lease",
    "lease_id",
    "leases_collection",
    "tenant_lease",
    "waiting_line",
    "waiting_message",
]
