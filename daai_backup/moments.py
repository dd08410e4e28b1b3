"""Restore to a moment: which moments a tenant can be restored to, and from which snapshot.

Pure functions over two facts: each snapshot's cluster time (its manifest's ``cluster_time``
for a ``consistency: "snapshot"`` backup, ``consistent_at`` for a ``"consistent"`` one, whose
staging replays its own change events up to it; ``operations.snapshots``) and the change
capture's coverage, the closed cluster-time ranges in which it holds every event of the
tenant. A moment (a wall-clock
second in the tenant's time zone, unless the text names one) is the cluster time
``Timestamp(second, 2**32 - 1)``: every event of that second included. It is recoverable when
a snapshot at ``s <= moment`` and one coverage range ``[a, b]`` with ``a <= s`` and
``moment <= b`` exist; the newest such snapshot is used.

The change capture itself plugs in as a :class:`ChangeSource` (``daai_backup.capture`` has
that shape); ``operations.change_source`` is the one place that picks it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

from bson.timestamp import Timestamp

from daai_backup.errors import MomentInvalid, MomentNotCovered
from daai_backup.format.keys import Keyring
from daai_backup.repository.catalog import zone
from daai_backup.repository.folder import BackupFolder

#: The last increment of a second: a moment includes every event of its second.
END_OF_SECOND: Final = 2**32 - 1

Range = tuple[Timestamp, Timestamp]


class ChangeSource(Protocol):
    """The captured change events of tenants (``daai_backup.capture`` is one)."""

    def read_changes(
        self,
        folder: BackupFolder,
        keyring: Keyring,
        tenant_id: str,
        after: Timestamp,
        until: Timestamp,
    ) -> Iterator[dict[str, Any]]:
        """The tenant's decoded change events with ``after < clusterTime <= until``, in
        stream order (replay tolerates duplicates)."""
        ...

    def coverage(self, folder: BackupFolder) -> list[Range]:
        """The closed cluster-time ranges in which the folder holds every event."""
        ...


@dataclass(frozen=True)
class Snapshot:
    file: str
    at: Timestamp


@dataclass(frozen=True)
class MomentPlan:
    """Restore ``file`` (its snapshot read at ``snapshot``), then replay to ``until``."""

    file: str
    snapshot: Timestamp
    until: Timestamp
    moment: datetime  # the moment asked for, in the zone it was read in


_ZONE_SUFFIX = re.compile(r"^(?P<wall>.+?)\s+(?P<zone>[A-Za-z_]+(?:/[A-Za-z_+\-0-9]+)*)$")


def parse_moment(text: str, tz: str) -> datetime:
    """A moment's text to an aware time: ``2026-11-28 14:31:59`` in ``tz``; an offset
    (``+05:30``, ``Z``) or a trailing zone name (``UTC``, ``Europe/Berlin``) overrides it.

    Whole seconds only. A wall time a DST switch skips takes the offset after the switch. A
    wall time the switch repeats (02:30 twice on the night clocks go back) is refused: it
    names two moments an hour apart, and a restore to the wrong one is a full restore of
    the live workspace; the message gives both with their offsets to pick from. Moments
    outside what a cluster time can hold (1970 to 2106) are refused too.
    """
    raw = text.strip()
    where: ZoneInfo = zone(tz)
    found = _ZONE_SUFFIX.match(raw)
    if found and not found["zone"].isdigit():
        where = zone(found["zone"])
        raw = found["wall"]
    try:
        wall = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise MomentInvalid(
            f"{text!r} is not a moment: write it as 2026-11-28 14:31:59 (the tenant's time "
            "zone), optionally followed by a zone (UTC, Europe/Berlin) or an offset (+05:30)"
        ) from None
    if wall.microsecond:
        raise MomentInvalid(f"{text!r}: a moment is a whole second; leave out the fraction")
    if wall.tzinfo is None:
        wall = _one_moment(text, wall, where)
    if not _EARLIEST <= wall <= _LATEST:
        raise MomentInvalid(
            f"{text!r} is outside the times a backup can reach (1970 to 2106): check the year"
        )
    return wall


def _offset(moment: datetime) -> str:
    minutes = int((moment.utcoffset() or timedelta(0)).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{moment:%Y-%m-%d %H:%M:%S}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _one_moment(text: str, wall: datetime, where: ZoneInfo) -> datetime:
    """The one instant a wall time names in ``where``; refuses a time the zone skips or
    repeats at a DST switch, naming what to write instead."""
    first, second = wall.replace(tzinfo=where, fold=0), wall.replace(tzinfo=where, fold=1)
    if first.astimezone(UTC).astimezone(where).replace(tzinfo=None) != wall:
        raise MomentInvalid(
            f"{text!r} does not exist in {where.key} (clocks jump forward that night): "
            "pick a second before or after the jump"
        )
    if first.utcoffset() != second.utcoffset():
        raise MomentInvalid(
            f"{text!r} happens twice in {where.key} (clocks go back that night): say which "
            f"with an offset, {_offset(first)} or {_offset(second)}"
        )
    return first


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)  # the last second of a uint32 time


def moment_timestamp(moment: datetime) -> Timestamp:
    """The last cluster time of the moment's second (every event of it included)."""
    return Timestamp(int(moment.timestamp()), END_OF_SECOND)


def merged(coverage: Iterable[Range]) -> list[Range]:
    """Coverage ranges sorted, with overlapping or touching ones joined."""
    out: list[Range] = []
    for first, last in sorted(coverage, key=lambda r: r[0]):
        if out and first <= _next(out[-1][1]):
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def _next(at: Timestamp) -> Timestamp:
    return Timestamp(at.time, at.inc + 1) if at.inc < END_OF_SECOND else Timestamp(at.time + 1, 0)


def recoverable(snapshots: Iterable[Snapshot], coverage: Iterable[Range]) -> list[Range]:
    """The cluster-time ranges any point of which can be restored: from the oldest snapshot
    inside a coverage range to that range's end."""
    times = sorted(s.at for s in snapshots)
    out: list[Range] = []
    for first, last in merged(coverage):
        inside = [t for t in times if first <= t <= last]
        if inside:
            out.append((inside[0], last))
    return out


def choose(snapshots: Sequence[Snapshot], coverage: Iterable[Range], until: Timestamp) -> Snapshot:
    """The newest snapshot at or before ``until`` whose changes reach ``until``.

    Raises :class:`MomentNotCovered` (naming the recoverable ranges, UTC) otherwise.
    """
    ranges = merged(coverage)
    before = [s for s in snapshots if s.at <= until]
    if before:
        newest = max(before, key=lambda s: s.at)
        if newest.at == until or any(a <= newest.at and until <= b for a, b in ranges):
            return newest
    raise MomentNotCovered(
        f"no snapshot and captured changes reach {time_text(until, 'UTC')}: "
        f"{ranges_text(recoverable(snapshots, ranges), 'UTC')}; pick a moment inside them"
    )


def time_text(at: Timestamp, tz: str) -> str:
    when = datetime.fromtimestamp(at.time, UTC).astimezone(zone(tz))
    return f"{when:%Y-%m-%d %H:%M:%S %Z}"


def seconds(ranges: Iterable[Range]) -> list[tuple[int, int]]:
    """The whole seconds (epoch) each range lets a restore reach: from the snapshot's second
    to the last second whose every event is covered."""
    out = []
    for first, last in ranges:
        end = last.time if last.inc == END_OF_SECOND else last.time - 1
        if end >= first.time:
            out.append((first.time, end))
    return out


def ranges_text(ranges: Iterable[Range], tz: str) -> str:
    """``recoverable: any second from 2026-11-28 09:00:00 IST to 2026-11-28 14:32:10 IST``
    (one clause per range; "nothing" when there is none)."""
    parts = [
        f"any second from {time_text(Timestamp(a, 0), tz)} to {time_text(Timestamp(b, 0), tz)}"
        for a, b in seconds(ranges)
    ]
    return "recoverable: " + ("; ".join(parts) if parts else "nothing (no change capture yet)")
