"""A tenant's write activity from its change segments: counts per minute and collection,
and the bursts that look like mass changes, each with the moment just before it.

Counting streams the events of the covered range (``daai_backup.capture`` segments, every
DBK1 check applies) through :func:`light_events`, which decodes only the top level of each
event (``clusterTime``, ``operationType``, ``ns``, ``to``; documents stay raw bytes) and
drops the copies that overlapping segments hold, as ``read_changes`` does. Events are
gathered in chunks of :data:`CHUNK_EVENTS`, each chunk is counted with pandas (group by
minute, collection, kind: count, first and last second), and the chunk's counts are added
to the running ones. Memory is therefore bounded by minutes x collections x kinds, never by
the number of events (``bench/bench_timeline.py`` measures it).

A *burst* (:func:`find_bursts`) is what a person looks for before a restore:

- a run of consecutive minutes in which one collection's inserts, updates, replaces or
  deletes each reach ``max(min_events, factor x median)``, the median being that
  collection's count of that kind per minute over every *other* minute of the range (idle
  minutes count as 0, so a quiet tenant's threshold is ``min_events``; a busy one's is ``factor``
  times its usual rate); one burst per collection and kind;
- every ``drop``, ``rename`` and ``dropDatabase`` event, whatever the counts.

Each burst has its first and last second, its counts, and the *moment before*: the second
before its first event, in the tenant's zone, as ``restore --at`` reads it. Restoring to it
brings back the data as it was before the burst (changes in the burst's first second but
before its first event are left out too: a moment is a whole second).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp

from daai_backup.capture.segments import covered_range, open_segment
from daai_backup.errors import ChangesNotCovered
from daai_backup.moments import END_OF_SECOND
from daai_backup.repository.catalog import zone

if TYPE_CHECKING:
    import pandas as pd

    from daai_backup.format.keys import Keyring
    from daai_backup.operations import EngineContext
    from daai_backup.repository.folder import BackupFolder
    from daai_backup.tenants import Tenant

#: Events counted per pandas chunk (a chunk's tuples are the only per-event memory).
CHUNK_EVENTS: Final = 50_000
#: A burst needs at least this many changes of one kind in a minute...
MIN_BURST_EVENTS: Final = 100
#: ...and this many times the collection's median per minute of that kind.
BURST_FACTOR: Final = 10.0
#: Bucket sizes (seconds) the table and chart use; the smallest giving at most
#: :data:`MAX_BUCKETS` buckets over the range is chosen.
BUCKETS: Final = (60, 300, 900, 3600, 6 * 3600, 86400)
MAX_BUCKETS: Final = 240

KINDS: Final = ("inserts", "updates", "replaces", "deletes", "ddl")
_KIND_OF: Final = {
    "insert": "inserts",
    "update": "updates",
    "replace": "replaces",
    "delete": "deletes",
}
#: DDL events that are bursts by themselves: they take a collection's data away at once.
DESTRUCTIVE: Final = {"drop": "drop", "rename": "rename", "dropDatabase": "drop database"}
_MASS: Final = {
    "inserts": "bulk insert (import)",
    "updates": "bulk update",
    "replaces": "bulk replace",
    "deletes": "bulk delete",
}
#: Events that change no data: not counted.
_NOT_COUNTED: Final = frozenset(
    {"invalidate", "shardCollection", "reshardCollection", "refineCollectionShardKey"}
)
#: The name a database-wide event (``dropDatabase``) is counted under.
DATABASE: Final = "(database)"
_RAW: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)


@dataclass(frozen=True)
class LightEvent:
    """What the timeline needs of a change event."""

    at: Timestamp
    op: str
    collection: str
    to: str = ""


def light_events(
    folder: BackupFolder, keyring: Keyring, tenant_id: str, after: Timestamp, until: Timestamp
) -> Iterator[LightEvent]:
    """The tenant's events with ``after < clusterTime <= until``, each once, in stream order,
    decoded only as far as the timeline needs (``read_changes`` decodes every document).

    Raises ``ChangesNotCovered`` when the segments do not cover the range.
    """
    if until <= after:
        return
    newest: Timestamp | None = None
    tokens: set[bytes] = set()
    for name in covered_range(folder, after, until):
        for raw in open_segment(folder, keyring, tenant_id, name):
            event = bson.decode(raw, codec_options=_RAW)
            at = event["clusterTime"]
            if not after < at <= until or (newest is not None and at < newest):
                continue
            token = event["_id"].raw
            if at == newest:
                if token in tokens:
                    continue
            else:
                newest, tokens = at, set()
            tokens.add(token)
            ns = event.get("ns") or {}
            to = event.get("to") or {}
            yield LightEvent(
                at,
                str(event["operationType"]),
                str(ns.get("coll") or DATABASE),
                str(to.get("coll") or ""),
            )


@dataclass(frozen=True)
class Burst:
    """A mass change: one collection, one kind (or one destructive DDL event)."""

    collection: str
    what: str
    """"bulk delete", "bulk insert (import)", "bulk update", "bulk replace", "drop",
    "rename", "drop database"."""
    first: datetime
    last: datetime
    counts: dict[str, int]
    before: datetime
    """The second before the first event (the tenant's zone)."""
    detail: str = ""

    @property
    def at(self) -> str:
        """The moment before, as ``restore --at`` reads it."""
        return moment_text(self.before)

    def restore_command(self, tenant: str) -> str:
        return f'daai-backup restore --tenant {tenant} --at "{self.at}" --actor YOU --confirm ...'


@dataclass
class Timeline:
    """A tenant's activity over ``[start, end]`` (UTC seconds, in the tenant's zone ``tz``)."""

    tenant: str
    tz: str
    start: datetime
    end: datetime
    bucket_seconds: int
    events: int
    minutes: pd.DataFrame
    """One row per minute, collection and kind with events: minute (UTC epoch seconds),
    collection, kind, count, first, last (epoch seconds)."""
    bursts: list[Burst] = field(default_factory=list)
    covered: list[tuple[datetime, datetime]] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """Counts per bucket and collection (columns: Bucket, Collection, inserts, updates,
        replaces, deletes, ddl, total), oldest first, the bucket's start in the tenant's
        zone."""
        import pandas as pd

        columns = ["Bucket", "Collection", *KINDS, "total"]
        if self.minutes.empty:
            return pd.DataFrame(columns=columns)
        frame = self.minutes.copy()
        frame["bucket"] = frame["minute"] - frame["minute"] % self.bucket_seconds
        if self.bucket_seconds >= 86400:  # days: midnight in the tenant's zone
            offset = frame["minute"].map(lambda s: _utcoffset(s, self.tz))
            local = frame["minute"] + offset
            frame["bucket"] = local - local % 86400 - offset
        wide = (
            frame.pivot_table(
                index=["bucket", "collection"],
                columns="kind",
                values="count",
                aggfunc="sum",
                fill_value=0,
            )
            .reindex(columns=list(KINDS), fill_value=0)
            .reset_index()
        )
        wide["total"] = wide[list(KINDS)].sum(axis=1)
        where = zone(self.tz)
        wide["Bucket"] = wide["bucket"].map(
            lambda s: f"{datetime.fromtimestamp(int(s), UTC).astimezone(where):%Y-%m-%d %H:%M}"
        )
        wide = wide.rename(columns={"collection": "Collection"})
        for kind in [*KINDS, "total"]:
            wide[kind] = wide[kind].astype("int64")
        return wide.sort_values(["bucket", "Collection"])[columns].reset_index(drop=True)

    def bursts_frame(self) -> pd.DataFrame:
        import pandas as pd

        rows = [
            {
                "What": b.what,
                "Collection": b.collection,
                "First": f"{b.first:%Y-%m-%d %H:%M:%S}",
                "Last": f"{b.last:%Y-%m-%d %H:%M:%S}",
                "Changes": ", ".join(f"{n:,} {k}" for k, n in b.counts.items() if n)
                + (f" ({b.detail})" if b.detail else ""),
                "Moment before (restore --at)": b.at,
            }
            for b in self.bursts
        ]
        return pd.DataFrame(
            rows,
            columns=[
                "What",
                "Collection",
                "First",
                "Last",
                "Changes",
                "Moment before (restore --at)",
            ],
        )

    def totals(self) -> dict[str, int]:
        if self.minutes.empty:
            return dict.fromkeys(KINDS, 0)
        sums = self.minutes.groupby("kind")["count"].sum()
        return {k: int(sums.get(k, 0)) for k in KINDS}


def _utcoffset(epoch: int, tz: str) -> int:
    offset = datetime.fromtimestamp(int(epoch), UTC).astimezone(zone(tz)).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def moment_text(moment: datetime) -> str:
    """A second as ``restore --at`` reads it in the moment's zone: ``2026-11-28 14:31:59``;
    with the offset (``+01:00``) when that wall time is ambiguous there (a DST repeat)."""
    wall = f"{moment:%Y-%m-%d %H:%M:%S}"
    if isinstance(moment.tzinfo, ZoneInfo):
        plain = moment.replace(tzinfo=None)
        twice = (
            plain.replace(tzinfo=moment.tzinfo, fold=0).utcoffset()
            != plain.replace(tzinfo=moment.tzinfo, fold=1).utcoffset()
        )
        if twice:  # --at refuses such a wall time without its offset
            offset = moment.strftime("%z")
            return f"{wall}{offset[:3]}:{offset[3:]}"
    return wall


# -- counting ------------------------------------------------------------------------------


def _kind(op: str) -> str | None:
    if op in _NOT_COUNTED:
        return None
    return _KIND_OF.get(op, "ddl")


class Counter:
    """Per-minute counts of a stream of events, chunk by chunk (memory: minutes x
    collections x kinds, plus one chunk); :meth:`destructive` keeps the DDL bursts."""

    def __init__(self, tz: str, chunk: int = CHUNK_EVENTS) -> None:
        self.tz = tz
        self.chunk = chunk
        self.rows: list[tuple[int, str, str]] = []
        self.parts: list[pd.DataFrame] = []
        self.total: pd.DataFrame | None = None
        self.events = 0
        self.destructive: list[Burst] = []

    def add(self, event: LightEvent) -> None:
        kind = _kind(event.op)
        if kind is None:
            return
        self.events += 1
        second = event.at.time
        self.rows.append((second, event.collection, kind))
        if event.op in DESTRUCTIVE:
            when = _local(second, self.tz)
            detail = f"to {event.to}" if event.to else ""
            self.destructive.append(
                Burst(
                    event.collection,
                    DESTRUCTIVE[event.op],
                    when,
                    when,
                    {"ddl": 1},
                    when - timedelta(seconds=1),
                    detail,
                )
            )
        if len(self.rows) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        import pandas as pd

        if not self.rows:
            return
        chunk = pd.DataFrame(self.rows, columns=["second", "collection", "kind"])
        self.rows = []
        chunk["minute"] = chunk["second"] - chunk["second"] % 60
        counted = (
            chunk.groupby(["minute", "collection", "kind"])["second"]
            .agg(count="size", first="min", last="max")
            .reset_index()
        )
        self.parts.append(counted)
        if len(self.parts) >= 8:  # fold: the running counts stay one frame
            self._fold()

    def _fold(self) -> None:
        import pandas as pd

        frames = ([self.total] if self.total is not None else []) + self.parts
        self.parts = []
        both = pd.concat(frames, ignore_index=True)
        self.total = (
            both.groupby(["minute", "collection", "kind"])
            .agg(count=("count", "sum"), first=("first", "min"), last=("last", "max"))
            .reset_index()
        )

    def result(self) -> pd.DataFrame:
        import pandas as pd

        self._flush()
        self._fold()
        if self.total is None:
            return pd.DataFrame(columns=["minute", "collection", "kind", "count", "first", "last"])
        return self.total.sort_values(["minute", "collection", "kind"]).reset_index(drop=True)


def _local(second: int, tz: str) -> datetime:
    return datetime.fromtimestamp(second, UTC).astimezone(zone(tz))


def find_bursts(
    minutes: pd.DataFrame,
    span_minutes: int,
    tz: str,
    *,
    min_events: int = MIN_BURST_EVENTS,
    factor: float = BURST_FACTOR,
) -> list[Burst]:
    """The mass changes among per-minute counts (see the module for the rule), oldest first.

    ``span_minutes``: how many minutes the range has (idle ones count as 0 in the median).
    """
    import numpy as np

    out: list[Burst] = []
    if minutes.empty:
        return out
    span = max(span_minutes, 1)
    for (collection, kind), group in minutes.groupby(["collection", "kind"], sort=True):
        if kind not in _MASS:
            continue
        counts = group["count"].to_numpy()
        ranked = np.sort(np.concatenate([counts, np.zeros(max(span - len(counts), 0))]))
        hot_rows = [
            bool(c >= min_events and c >= factor * _median_without(ranked, float(c)))
            for c in counts
        ]
        hot = group[hot_rows].sort_values("minute")
        run: list[tuple[int, int, int, int]] = []
        rows = hot[["minute", "first", "last", "count"]].to_numpy(dtype="int64").tolist()
        for minute, first, last, count in rows:
            if run and minute != run[-1][0] + 60:
                out.append(_burst(str(collection), str(kind), run, tz))
                run = []
            run.append((minute, first, last, count))
        if run:
            out.append(_burst(str(collection), str(kind), run, tz))
    return out


def _median_without(ranked: Any, value: float) -> float:
    """The median of the sorted array ``ranked`` without one occurrence of ``value``."""
    import numpy as np

    i = int(np.searchsorted(ranked, value))
    n = len(ranked) - 1
    if n <= 0:
        return 0.0

    def at(rank: int) -> float:
        return float(ranked[rank] if rank < i else ranked[rank + 1])

    if n % 2:
        return at(n // 2)
    return (at(n // 2 - 1) + at(n // 2)) / 2


def _burst(collection: str, kind: str, run: Sequence[tuple[int, int, int, int]], tz: str) -> Burst:
    first = _local(min(r[1] for r in run), tz)
    last = _local(max(r[2] for r in run), tz)
    total = sum(r[3] for r in run)
    return Burst(collection, _MASS[kind], first, last, {kind: total}, first - timedelta(seconds=1))


def bucket_for(seconds: float) -> int:
    """The smallest bucket size that shows ``seconds`` in at most :data:`MAX_BUCKETS` rows."""
    for size in BUCKETS:
        if seconds / size <= MAX_BUCKETS:
            return size
    return BUCKETS[-1]


def build_timeline(
    folder: BackupFolder,
    keyring: Keyring,
    tenant_id: str,
    tz: str,
    coverage: Sequence[tuple[Timestamp, Timestamp]],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    min_events: int = MIN_BURST_EVENTS,
    factor: float = BURST_FACTOR,
    chunk: int = CHUNK_EVENTS,
) -> Timeline:
    """The tenant's timeline over the covered parts of ``[since, until]`` (default: all of
    the coverage). Refuses (``ChangesNotCovered``, saying what is covered) a tenant without
    captured changes, or a range that no covered range reaches."""
    where = zone(tz)
    if not coverage:
        raise ChangesNotCovered(
            f"tenant {tenant_id!r} has no captured changes: change capture has stored none "
            "for it yet (`daai-backup capture`, or the capture deployment)"
        )
    shown = "; ".join(
        f"{_local(a.time, tz):%Y-%m-%d %H:%M:%S %Z} to {_local(b.time, tz):%Y-%m-%d %H:%M:%S %Z}"
        for a, b in coverage
    )
    low = Timestamp(int(since.timestamp()), 0) if since else coverage[0][0]
    high = Timestamp(int(until.timestamp()), END_OF_SECOND) if until else coverage[-1][1]
    if high < low:
        raise ChangesNotCovered("--since is after --until: swap them")
    pieces = [(max(a, low), min(b, high)) for a, b in coverage if b >= low and a <= high]
    if not pieces:
        raise ChangesNotCovered(
            f"tenant {tenant_id!r}: the captured changes do not reach "
            f"{_local(low.time, tz):%Y-%m-%d %H:%M:%S %Z} to "
            f"{_local(high.time, tz):%Y-%m-%d %H:%M:%S %Z} (covered: {shown}): pick a range "
            "inside them"
        )
    counter = Counter(tz, chunk)
    for a, b in pieces:
        after = Timestamp(a.time, a.inc - 1) if a.inc else Timestamp(a.time - 1, END_OF_SECOND)
        for event in light_events(folder, keyring, tenant_id, after, b):
            counter.add(event)
    minutes = counter.result()
    start_s, end_s = pieces[0][0].time, pieces[-1][1].time
    span_minutes = (end_s - start_s) // 60 + 1
    bursts = find_bursts(minutes, span_minutes, tz, min_events=min_events, factor=factor)
    bursts = sorted([*bursts, *counter.destructive], key=lambda b: (b.first, b.collection))
    return Timeline(
        tenant=tenant_id,
        tz=tz,
        start=datetime.fromtimestamp(start_s, UTC).astimezone(where),
        end=datetime.fromtimestamp(end_s, UTC).astimezone(where),
        bucket_seconds=bucket_for(end_s - start_s),
        events=counter.events,
        minutes=minutes,
        bursts=bursts,
        covered=[(_local(a.time, tz), _local(b.time, tz)) for a, b in coverage],
    )


# -- the engine call ------------------------------------------------------------------------


def tenant_timeline(
    ctx: EngineContext,
    tenant: Tenant,
    *,
    actor: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
    min_events: int = MIN_BURST_EVENTS,
    factor: float = BURST_FACTOR,
) -> Timeline:
    """The tenant's timeline (``daai-backup timeline``, the ``timeline`` flow).

    Reads only the tenant's own change segments (one LIST, then the segments of the range);
    never the live database; needs the ``restore`` permission (it shows the tenant's
    activity). Refuses before reading: an actor without it, a tenant without captured
    changes, a range outside the covered ones (saying what is covered).
    """
    from daai_backup.inspection.sources import require_reader
    from daai_backup.operations import change_source

    require_reader(tenant, actor)
    folder = ctx.folder(tenant)
    source = change_source(ctx, tenant)
    return build_timeline(
        folder,
        ctx.settings.keyring,
        tenant.id,
        ctx.timezone(tenant),
        source.coverage(folder),
        since=since,
        until=until,
        min_events=min_events,
        factor=factor,
    )
