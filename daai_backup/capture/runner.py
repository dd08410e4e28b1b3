"""The capture loop: one cluster-wide change stream, routed to tenants, stored as segments.

::

    client.watch(show_expanded_events=True)      one stream for the whole cluster, raw BSON
      -> route by ns.db through the registry    unknown databases and suspended tenants skipped
      -> per tenant buffer                       events kept exactly as the server sent them
      -> flush: one segment per tenant           [next_start, boundary], stored in parallel
      -> resume point saved                      only after every segment of the flush stored

**Boundaries.** A flush closes every tenant's range at one cluster time, the *boundary*, up
to which every event has been read: when the stream is caught up (``try_next`` returned
nothing), the majority commit point read before draining (or the newest event, if later);
otherwise just before the newest event's cluster time, whose events stay buffered for the
next flush. So a transaction (several events at one cluster time) is never split between
segments, and the resume token saved is the one of the last event stored (or the stream's
post-batch token when caught up).

**When.** A flush happens when the oldest buffered event is ``max_lag_s`` old, when the
buffers hold ``buffer_bytes``, when a run ends (``--once``, Ctrl-C, the end of a bounded
flow run), and at least every ``max_lag_s`` while idle (to move the resume point and the lag
heartbeat). A tenant without events gets an empty segment when its open range is
``idle_segment_s`` long (and at the end of a run), so an idle tenant's coverage keeps up.

**Registry.** Re-read every ``registry_refresh_s`` (after a flush): a tenant added starts a
new range just after what was read so far; a tenant removed or suspended stops (its
coverage ends at the last flush; a later range starts after a gap).

**History loss** (the oplog rolled past the resume point, a token the server refuses, an
``invalidate``): a gap record in every captured tenant's folder from its ``next_start`` to
the new start, the resume point dropped, the stream reopened at the present; the outcome
lists the tenants (the flow takes fresh backups and notifies). A cross-database rename into
a tenant's database cannot be replayed from that tenant's events: a gap for it too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from bson import Timestamp
from bson.raw_bson import RawBSONDocument

from daai_backup.capture import segments as seg
from daai_backup.capture import state
from daai_backup.errors import (
    ChangeStreamUnavailable,
    ConfigError,
    DaaiBackupError,
    TransientDatabaseError,
)
from daai_backup.repository.folder import BackupFolder, folder_for_tenant
from daai_backup.storage import join_key

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.change_stream import ChangeStream

    from daai_backup.format.keys import MasterKey
    from daai_backup.settings import Settings
    from daai_backup.tenants import Tenant, TenantRegistry

logger = logging.getLogger(__name__)

HISTORY_LOST_CODES: Final = frozenset({9, 136, 260, 280, 286})
"""FailedToParse (a token the server cannot read), CappedPositionLost, InvalidResumeToken,
ChangeStreamFatalError, ChangeStreamHistoryLost: the stream cannot resume where it stopped."""
NOT_REPLICA_SET_CODES: Final = frozenset({40573})
"""``$changeStream`` is only supported on replica sets (a standalone ``mongod``)."""
IDLE_SEGMENT_S: Final = 3600.0
REGISTRY_REFRESH_S: Final = 30.0
BATCH_EVENTS: Final = 2000
BATCH_SECONDS: Final = 0.5
WRITERS: Final = 8
LAG_SAMPLES: Final = 200_000
TEST_PAUSE_ENV: Final = "DAAI_BACKUP_CAPTURE_TEST_PAUSE"
"""Test hook (``mid-upload`` or ``before-save``): pause there so a test can kill -9."""


def predecessor(ts: Timestamp) -> Timestamp:
    if ts.inc == 0:
        return Timestamp(ts.time - 1, 0xFFFFFFFF)
    return Timestamp(ts.time, ts.inc - 1)


@dataclass
class CaptureOutcome:
    """What one capture run did."""

    events: int = 0
    """Events stored (in segments), all tenants."""
    segments: int = 0
    skipped: int = 0
    """Events read that belong to no captured tenant."""
    per_tenant: dict[str, int] = field(default_factory=dict)
    position: Timestamp | None = None
    """The resume point saved last: everything at or before it is stored."""
    lag_s: dict[str, float] = field(default_factory=dict)
    """Per tenant, commit -> stored of the oldest event of its last flush (0: none)."""
    history_lost: dict[str, str] = field(default_factory=dict)
    """Tenants whose changes were lost, with why: they need a fresh backup now."""
    gaps: list[tuple[str, seg.Gap]] = field(default_factory=list)
    lag_samples: list[float] = field(default_factory=list)
    """Commit -> stored seconds of stored events (up to :data:`LAG_SAMPLES`), for benches."""
    tenants: list[str] = field(default_factory=list)
    """The tenants captured at the end of the run."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe summary (flow results, ``--json``)."""
        return {
            "events": self.events,
            "segments": self.segments,
            "skipped": self.skipped,
            "per_tenant": dict(self.per_tenant),
            "position": None
            if self.position is None
            else {"t": self.position.time, "i": self.position.inc},
            "lag_s": {k: round(v, 3) for k, v in self.lag_s.items()},
            "history_lost": dict(self.history_lost),
            "tenants": list(self.tenants),
        }


@dataclass
class _Pending:
    events: list[bytes] = field(default_factory=list)
    times: list[Timestamp] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    nbytes: int = 0


class _HistoryLost(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def history_lost_error(exc: BaseException) -> bool:
    """Whether a pymongo error says the stream cannot resume where it stopped."""
    from pymongo.errors import OperationFailure

    return isinstance(exc, OperationFailure) and exc.code in HISTORY_LOST_CODES


def majority_time(client: MongoClient[Any]) -> Timestamp:
    """The cluster's majority commit point: every event at or before it can be read."""
    hello = client.admin.command("hello")
    last = hello.get("lastWrite") or {}
    ts = (last.get("majorityOpTime") or {}).get("ts")
    if isinstance(ts, Timestamp):
        return ts
    reply = client.admin.command("ping")
    op = reply.get("operationTime")
    if isinstance(op, Timestamp):
        return op
    raise ChangeStreamUnavailable(
        "the MongoDB server reports no cluster time: change capture needs a replica set or a "
        "sharded cluster, not a standalone mongod"
    )


def oldest_oplog_time(client: MongoClient[Any]) -> Timestamp | None:
    """The oldest entry of the oplog, or None when it cannot be read (permissions, mongos)."""
    from pymongo.errors import PyMongoError

    try:
        doc = client.local["oplog.rs"].find_one({}, {"ts": 1}, sort=[("$natural", 1)])
    except PyMongoError:
        return None
    ts = doc.get("ts") if doc else None
    return ts if isinstance(ts, Timestamp) else None


def check_change_streams(client: MongoClient[Any]) -> str:
    """One line saying the cluster gives change streams; ``ChangeStreamUnavailable`` if not."""
    from pymongo.errors import OperationFailure, PyMongoError

    try:
        hello = client.admin.command("hello")
    except PyMongoError as exc:
        raise TransientDatabaseError(
            f"cannot reach MongoDB ({type(exc).__name__}): check DAAI_BACKUP_MONGODB_URI"
        ) from None
    if not hello.get("setName") and hello.get("msg") != "isdbgrid":
        raise ChangeStreamUnavailable(
            "this MongoDB server is a standalone mongod: it has no oplog, so it cannot give "
            "change streams and point-in-time capture is off; run it as a replica set "
            "(a one-member set is enough) to capture changes"
        )
    try:
        with client.watch(max_await_time_ms=1) as stream:
            stream.try_next()
    except OperationFailure as exc:
        raise ChangeStreamUnavailable(
            f"the cluster refuses change streams ({exc.code}: {str(exc)[:120]}): capture "
            "needs a replica set or sharded cluster and the changeStream/find privilege on "
            "the whole cluster"
        ) from None
    kind = f"replica set {hello['setName']!r}" if hello.get("setName") else "sharded cluster"
    oplog = oldest_oplog_time(client)
    window = (
        f"; oplog reaches back to {seg.ts_datetime(oplog):%Y-%m-%d %H:%M UTC}"
        if oplog is not None
        else ""
    )
    return f"{kind} gives change streams{window}"


class _PausingReader(io.RawIOBase):
    """Test hook: hands out half the bytes, then stops for a test to kill the process."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0
        self._paused = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._paused and self._at >= len(self._data) // 2:
            self._paused = True
            print("CAPTURE-TEST-PAUSE mid-upload", file=sys.stderr, flush=True)
            time.sleep(60)
        end = min(len(self._data), self._at + len(buffer), max(1, len(self._data) // 2))
        if self._paused:
            end = min(len(self._data), self._at + len(buffer))
        n = end - self._at
        buffer[:n] = self._data[self._at : end]
        self._at = end
        return n


class Capture:
    """One cluster's change capture. Build once, call :meth:`run`."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry_loader: Callable[[], TenantRegistry] | None = None,
        max_lag_s: float | None = None,
        buffer_bytes: int | None = None,
        idle_segment_s: float = IDLE_SEGMENT_S,
        registry_refresh_s: float = REGISTRY_REFRESH_S,
        max_await_ms: int = 500,
    ) -> None:
        from daai_backup.tenant_sources import load_registry

        self.settings = settings
        self._load_registry = registry_loader or (lambda: load_registry(settings))
        self.max_lag_s = float(max_lag_s or settings.capture_max_lag_seconds)
        self.buffer_bytes = int(buffer_bytes or settings.capture_buffer_mb * 1_000_000)
        self.idle_segment_s = idle_segment_s
        self.registry_refresh_s = registry_refresh_s
        self.max_await_ms = max_await_ms
        self._master: MasterKey = settings.keyring.require_current()
        self._folders: dict[tuple[str, str | None], BackupFolder] = {}
        self._tenants: dict[str, Tenant] = {}
        self._by_db: dict[str, str] = {}
        self._positions: dict[str, state.TenantPosition] = {}
        self._pending: dict[str, _Pending] = {}
        self._buffered = 0
        self._cur_ct: Timestamp | None = None
        self._cur_token: Any = None
        self._safe_token: Any = None
        self._last_boundary: Timestamp | None = None
        self._last_refresh = 0.0
        self._out = CaptureOutcome()
        self._test_pause = os.environ.get(TEST_PAUSE_ENV, "")

    # --- clients ------------------------------------------------------------------------

    def _clients(self) -> tuple[MongoClient[Any], MongoClient[Any]]:
        from pymongo import MongoClient

        uri = self.settings.mongodb_uri.get_secret_value()
        plain: MongoClient[Any] = MongoClient(
            uri, serverSelectionTimeoutMS=10_000, tz_aware=True, appname="daai-backup-capture"
        )
        raw: MongoClient[Any] = MongoClient(
            uri,
            serverSelectionTimeoutMS=10_000,
            document_class=RawBSONDocument,
            appname="daai-backup-capture",
        )
        return plain, raw

    def folder(self, tenant: Tenant) -> BackupFolder:
        key = (tenant.id, tenant.storage_url)
        found = self._folders.get(key)
        if found is None:
            found = self._folders[key] = folder_for_tenant(
                tenant.id,
                tenant.storage_url,
                self.settings.storage_url,
                s3_endpoint_url=self.settings.s3_endpoint_url,
            )
        return found

    # --- registry -----------------------------------------------------------------------

    def _read_registry(self) -> dict[str, Tenant] | None:
        try:
            registry = self._load_registry()
            registry.check_storage_roots(self.settings.storage_url)
            registry.check_databases(self.settings.control_database)
        except (DaaiBackupError, OSError) as exc:
            if not self._tenants:
                raise
            logger.warning("tenant registry not re-read (%s): capturing as before", exc)
            return None
        return {t.id: t for t in registry.values() if t.subscription == "active"}

    def _apply_registry(self, active: dict[str, Tenant], start: Timestamp) -> None:
        """Start tenants new to the capture at ``start``; stop those gone or suspended."""
        for tid in list(self._positions):
            tenant = active.get(tid)
            if tenant is None or tenant.database != self._positions[tid].database:
                logger.info("capture of tenant %s stops (removed, suspended or moved)", tid)
                del self._positions[tid]
                dropped = self._pending.pop(tid, None)
                if dropped is not None:
                    self._buffered -= dropped.nbytes
        for tid, tenant in active.items():
            if tid not in self._positions:
                logger.info("capture of tenant %s starts at %s", tid, seg.ts_text(start))
                self._positions[tid] = state.TenantPosition(tenant.database, start)
        self._tenants = active
        self._by_db = {p.database: tid for tid, p in self._positions.items()}
        self._last_refresh = time.monotonic()

    # --- the stream ---------------------------------------------------------------------

    def _open(self, plain: MongoClient[Any], raw: MongoClient[Any]) -> ChangeStream[Any]:
        from pymongo.errors import OperationFailure, PyMongoError

        point = state.load(plain, self.settings)
        active = self._read_registry() or {}
        self._tenants = active
        probe = majority_time(plain)
        reason: str | None = None
        if point is not None:
            oldest = oldest_oplog_time(plain)
            if oldest is not None and oldest > point.position:
                reason = (
                    f"the oplog now starts at {seg.ts_text(oldest)}, after the capture's "
                    f"resume point {seg.ts_text(point.position)}"
                )
            else:
                try:
                    if point.resume_token is not None:
                        stream = raw.watch(
                            show_expanded_events=True,
                            resume_after=point.resume_token,
                            max_await_time_ms=self.max_await_ms,
                        )
                    else:
                        stream = raw.watch(
                            show_expanded_events=True,
                            start_at_operation_time=seg.successor(point.position),
                            max_await_time_ms=self.max_await_ms,
                        )
                except OperationFailure as exc:
                    if exc.code in NOT_REPLICA_SET_CODES:
                        raise ChangeStreamUnavailable(str(check_change_streams(plain))) from None
                    if not history_lost_error(exc):
                        raise TransientDatabaseError(
                            f"change stream could not resume ({exc.code}): {str(exc)[:200]}"
                        ) from None
                    reason = f"the server refused the resume point ({exc.code}: {str(exc)[:120]})"
                else:
                    self._positions = {tid: p for tid, p in point.tenants.items() if tid in active}
                    self._last_boundary = point.position
                    self._apply_registry(active, seg.successor(point.position))
                    return stream
            self._record_loss(point.tenants, probe, reason, plain)
        try:
            stream = raw.watch(
                show_expanded_events=True,
                start_at_operation_time=probe,
                max_await_time_ms=self.max_await_ms,
            )
        except OperationFailure as exc:
            if exc.code in NOT_REPLICA_SET_CODES:
                check_change_streams(plain)
            raise ChangeStreamUnavailable(
                f"the cluster refuses change streams ({exc.code}): {str(exc)[:200]}"
            ) from None
        except PyMongoError as exc:
            raise TransientDatabaseError(f"change stream: {type(exc).__name__}: {exc}") from None
        self._positions = {}
        self._last_boundary = predecessor(probe)
        self._apply_registry(active, probe)
        return stream

    def _record_loss(
        self,
        tenants: dict[str, state.TenantPosition],
        new_start: Timestamp,
        reason: str,
        plain: MongoClient[Any],
    ) -> None:
        """A gap in every captured tenant's folder; the resume point is dropped."""
        logger.error("change history lost: %s; capture restarts at the present", reason)
        for tid, pos in tenants.items():
            tenant = self._tenants.get(tid)
            if tenant is None:
                continue
            self._gap(tenant, pos.next_start, predecessor(new_start), reason)
        state.clear(plain, self.settings)

    def _gap(self, tenant: Tenant, start: Timestamp, end: Timestamp, reason: str) -> None:
        gap = seg.write_gap(self.folder(tenant), start, end, reason)
        self._out.gaps.append((tenant.id, gap))
        self._out.history_lost[tenant.id] = reason

    def _route(self, doc: RawBSONDocument) -> None:
        at = doc["clusterTime"]
        token = doc["_id"]
        if self._cur_ct is None or at != self._cur_ct:
            self._safe_token = self._cur_token
            self._cur_ct = at
        self._cur_token = token
        op = doc.get("operationType")
        if op == "invalidate":
            raise _HistoryLost("the change stream was invalidated")
        ns = doc.get("ns") or {}
        database = ns.get("db")
        if op == "rename":
            target = (doc.get("to") or {}).get("db")
            other = (
                self._by_db.get(target) if isinstance(target, str) and target != database else None
            )
            if other is not None and other in self._tenants:
                # Documents arrive in the target without events of its own: not replayable.
                self._gap(
                    self._tenants[other],
                    at,
                    at,
                    f"a collection was renamed into the tenant's database from {database!r}: "
                    "its documents cannot be replayed from the tenant's own changes",
                )
        tid = self._by_db.get(database) if isinstance(database, str) else None
        if tid is None or at < self._positions[tid].next_start:
            self._out.skipped += 1
            return
        pending = self._pending.setdefault(tid, _Pending())
        data = bytes(doc.raw)
        wall = doc.get("wallTime")
        pending.events.append(data)
        pending.times.append(at)
        pending.walls.append(wall.timestamp() if isinstance(wall, datetime) else float(at.time))
        pending.nbytes += len(data)
        self._buffered += len(data)

    def _oldest_pending_age(self, now: float) -> float:
        oldest = min((p.walls[0] for p in self._pending.values() if p.walls), default=None)
        return 0.0 if oldest is None else now - oldest

    # --- flush --------------------------------------------------------------------------

    def _flush(
        self,
        plain: MongoClient[Any],
        stream: ChangeStream[Any],
        pool: ThreadPoolExecutor,
        *,
        caught_up: bool,
        probe: Timestamp,
        final: bool,
    ) -> None:
        if caught_up:
            boundary = probe if self._cur_ct is None or probe > self._cur_ct else self._cur_ct
            token = stream.resume_token or self._cur_token
            cut: Timestamp | None = None  # everything buffered goes
        else:
            if self._safe_token is None or self._cur_ct is None:
                return  # every event read so far shares one cluster time: wait for more
            boundary = predecessor(self._cur_ct)
            token = self._safe_token
            cut = self._cur_ct  # events at the newest time stay for the next flush
        if self._last_boundary is not None and boundary < self._last_boundary:
            boundary = self._last_boundary
        taken: dict[str, int] = {}
        for tid, pending in self._pending.items():
            n = len(pending.events)
            if cut is not None:
                while n and pending.times[n - 1] >= cut:
                    n -= 1
            taken[tid] = n
        jobs = []
        for tid, pos in self._positions.items():
            n = taken.get(tid, 0)
            if boundary < pos.next_start:
                continue
            idle = boundary.time - pos.next_start.time >= self.idle_segment_s
            if n or final or idle:
                events = self._pending[tid].events[:n] if n else []
                tenant = self._tenants[tid]
                job = pool.submit(self._store, tenant, pos.next_start, boundary, events)
                jobs.append((tid, job))
        for _tid, job in jobs:
            job.result()  # a failed write raises: nothing is saved, buffers stay for a retry
        if self._test_pause == "before-save" and jobs:
            print("CAPTURE-TEST-PAUSE before-save", file=sys.stderr, flush=True)
            time.sleep(60)
        now = time.time()
        for tid, _job in jobs:
            pos = self._positions[tid]
            n = taken.get(tid, 0)
            found = self._pending.get(tid)
            if n and found is not None:
                pending = found
                lags = [now - w for w in pending.walls[:n]]
                pos.lag_s = max(lags)
                room = LAG_SAMPLES - len(self._out.lag_samples)
                if room > 0:
                    self._out.lag_samples.extend(lags[:room])
                self._out.per_tenant[tid] = self._out.per_tenant.get(tid, 0) + n
                self._out.events += n
            else:
                pos.lag_s = 0.0
            pos.next_start = seg.successor(boundary)
            self._out.segments += 1
        for tid, n in taken.items():
            pending = self._pending[tid]
            if n:
                del pending.events[:n], pending.times[:n], pending.walls[:n]
                pending.nbytes = sum(len(e) for e in pending.events)
        self._pending = {tid: p for tid, p in self._pending.items() if p.events}
        self._buffered = sum(p.nbytes for p in self._pending.values())
        point = state.ResumePoint(
            resume_token=dict(token) if token is not None else None,
            position=boundary,
            saved_at=datetime.now(UTC),
            tenants=dict(self._positions),
        )
        state.save(plain, self.settings, point)
        self._last_boundary = boundary
        self._out.position = boundary
        self._out.lag_s = {tid: p.lag_s for tid, p in self._positions.items()}

    def _store(
        self, tenant: Tenant, start: Timestamp, end: Timestamp, events: list[bytes]
    ) -> seg.SegmentName:
        folder = self.folder(tenant)
        if self._test_pause == "mid-upload" and events:
            name, sealed = seg.seal_segment(self._master, tenant.id, start, end, events)
            key = join_key(folder.changes_prefix, name.filename)
            folder.storage.put_stream(key, _PausingReader(sealed))  # type: ignore[arg-type]
            return name
        return seg.write_segment(folder, self._master, tenant.id, start, end, events)

    # --- the run ------------------------------------------------------------------------

    def run(
        self,
        *,
        once: bool = False,
        seconds: float | None = None,
        stop: threading.Event | None = None,
    ) -> CaptureOutcome:
        """Capture until caught up (``once``), ``seconds`` passed, or ``stop`` is set.

        Every way out of a normal run flushes and saves the resume point; an exception
        leaves the last saved resume point, so the next run re-reads (never loses) events.
        """
        from pymongo.errors import PyMongoError

        self._out = CaptureOutcome()
        plain, raw = self._clients()
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            with ThreadPoolExecutor(WRITERS, thread_name_prefix="capture-store") as pool:
                stream = self._open(plain, raw)
                once_target = majority_time(plain) if once else None
                last_save = time.monotonic()
                try:
                    while True:
                        final = bool(
                            (stop is not None and stop.is_set())
                            or (deadline is not None and time.monotonic() >= deadline)
                        )
                        probe = majority_time(plain)
                        caught_up = False
                        started, n = time.monotonic(), 0
                        try:
                            while True:
                                doc = stream.try_next()
                                if doc is None:
                                    caught_up = True
                                    break
                                self._route(doc)
                                n += 1
                                if (
                                    n >= BATCH_EVENTS
                                    or time.monotonic() - started >= BATCH_SECONDS
                                    or self._buffered >= self.buffer_bytes
                                    or (
                                        once_target is not None
                                        and self._cur_ct is not None
                                        and self._cur_ct > once_target
                                    )
                                ):
                                    break
                        except _HistoryLost as lost:
                            stream = self._reopen_after_loss(plain, raw, stream, pool, lost.reason)
                            continue
                        except PyMongoError as exc:
                            if history_lost_error(exc):
                                stream = self._reopen_after_loss(
                                    plain, raw, stream, pool, f"the stream failed: {exc}"
                                )
                                continue
                            raise TransientDatabaseError(
                                f"change stream failed ({type(exc).__name__}: {str(exc)[:200]}): "
                                "capture resumes from its saved point when run again"
                            ) from None
                        reached = once_target is not None and (
                            caught_up or (self._cur_ct is not None and self._cur_ct > once_target)
                        )
                        now_mono = time.monotonic()
                        due = (
                            final
                            or reached
                            or self._buffered >= self.buffer_bytes
                            or self._oldest_pending_age(time.time()) >= self.max_lag_s * 0.8
                            or now_mono - last_save >= self.max_lag_s
                        )
                        if due:
                            self._flush(
                                plain,
                                stream,
                                pool,
                                caught_up=caught_up,
                                probe=probe,
                                final=final or reached,
                            )
                            last_save = now_mono
                            if final or reached:
                                break
                            if now_mono - self._last_refresh >= self.registry_refresh_s:
                                active = self._read_registry()
                                if active is not None:
                                    after = self._cur_ct or probe
                                    if self._last_boundary is not None and (
                                        self._last_boundary > after
                                    ):
                                        after = self._last_boundary
                                    self._apply_registry(active, seg.successor(after))
                finally:
                    stream.close()
        finally:
            plain.close()
            raw.close()
        self._out.tenants = sorted(self._positions)
        return self._out

    def _reopen_after_loss(
        self,
        plain: MongoClient[Any],
        raw: MongoClient[Any],
        stream: ChangeStream[Any],
        pool: ThreadPoolExecutor,
        reason: str,
    ) -> ChangeStream[Any]:
        """Store what was read safely, record gaps, restart at the present."""
        with contextlib.suppress(Exception):
            if self._safe_token is not None:
                self._flush(
                    plain, stream, pool, caught_up=False, probe=majority_time(plain), final=False
                )
        with contextlib.suppress(Exception):
            stream.close()
        positions = dict(self._positions)
        self._pending.clear()
        self._buffered = 0
        self._cur_ct = self._cur_token = self._safe_token = None
        self._record_loss(positions, majority_time(plain), reason, plain)
        return self._open(plain, raw)


def run_capture(
    settings: Settings,
    *,
    once: bool = False,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    registry_loader: Callable[[], TenantRegistry] | None = None,
    **options: Any,
) -> CaptureOutcome:
    """Build a :class:`Capture` and run it (see :meth:`Capture.run`)."""
    if not settings.mongodb_uri.get_secret_value():
        raise ConfigError("DAAI_BACKUP_MONGODB_URI is empty: set the cluster to capture")
    capture = Capture(settings, registry_loader=registry_loader, **options)
    return capture.run(once=once, seconds=seconds, stop=stop)
