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
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

from bson.timestamp import Timestamp

from daai_backup.errors import MomentInvalid, MomentNotCovered
from daai_backup.format.keys import Keyring
from daai_backup.policy.schedule_times import localize
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

    Whole seconds only. A wall time a DST switch skips takes the offset after the switch, a
    repeated one its first occurrence (as the schedules read them).
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
        return localize(wall, where)
    return wall


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
