"""Which backups to keep and which to delete: a pure function of the list, the policy and now.

The rules come from the frequency table (:data:`daai_backup.policy.FREQUENCIES`); no number
is restated here.

- **Scheduled** backups (every label with ``scheduled=True``) form ONE pool, ordered by time,
  newest first; the newest ``keep_last`` of the tenant's *active* frequency are kept, the rest
  deleted. Backups taken under a previous frequency count toward the active one's keep: after
  a switch from 15-day to 24-hour the old 15-day backups are kept until 14 newer scheduled
  backups exist, so the tenant never has fewer restore points than its frequency promises
  and a switch never deletes a burst of backups at once.
- **Age-limited** labels (``manual``, ``pre-restore``): older than ``max_age`` is deleted,
  except the newest ``keep_at_least`` of that label.
- **Never deleted**: the newest good backup overall (whatever its label), a held backup
  (held backups are outside the pools and do not count toward a keep), a backup known to be
  bad (verify reported it; deleting it is a person's decision, and it does not count toward a
  keep either), a backup with a label this build does not know, and anything at all when the
  listing was incomplete (``listing_complete=False``: a partial list could make old backups
  look like the newest).
- **Good means verified.** With ``known_good`` (the files whose last verification passed;
  the retention flow always passes it), a backup is deleted only if a newer backup that is
  known good remains: the newest known-good backup is "the newest good backup", backups newer
  than it that are not verified yet are kept (and do not count toward a keep: they may turn
  out bad), and with no known-good backup at all nothing is deleted. ``known_good=None``
  means the caller vouches for every file not in ``known_bad`` (tests of the pool rules).

Applying the plan (deleting objects) is the caller's job; see ``flows/retention.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from daai_backup import policy
from daai_backup.errors import ConfigError


class Retainable(Protocol):
    """What retention needs to know about a backup (``catalog.BackupEntry`` has it)."""

    @property
    def file(self) -> str: ...

    @property
    def frequency(self) -> str: ...

    @property
    def taken_at(self) -> datetime: ...

    @property
    def held(self) -> bool: ...


E = TypeVar("E", bound=Retainable)


@dataclass(frozen=True)
class RetentionPlan(Generic[E]):
    """``keep`` and ``delete`` partition the input (each newest first); every file has a reason."""

    keep: list[E] = field(default_factory=list)
    delete: list[E] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


def _newest_first(entries: Sequence[E]) -> list[E]:
    return sorted(entries, key=lambda e: (e.taken_at, e.file), reverse=True)


def plan(
    entries: Sequence[E],
    active_frequency: str,
    now: datetime,
    *,
    listing_complete: bool = True,
    known_bad: Collection[str] = (),
    known_good: Collection[str] | None = None,
) -> RetentionPlan[E]:
    """Decide, for every backup of one tenant, whether it is kept or deleted, and why."""
    active = policy.frequency(active_frequency)
    if not active.scheduled or active.retention.keep_last is None:
        raise ConfigError(
            f"frequency {active_frequency!r} is not a schedule: retention needs the tenant's "
            f"active scheduled frequency ({', '.join(policy.SCHEDULED_LABELS)})"
        )
    ordered = _newest_first(entries)
    reasons: dict[str, str] = {}
    deleting: set[str] = set()

    if not listing_complete:
        for entry in ordered:
            reasons[entry.file] = "listing incomplete: nothing is deleted"
        return RetentionPlan(keep=ordered, delete=[], reasons=reasons)

    bad = set(known_bad)
    good = None if known_good is None else set(known_good) - bad
    newest_good = next(
        (e for e in ordered if e.file not in bad and (good is None or e.file in good)), None
    )
    if newest_good is None and good is not None:
        for entry in ordered:
            reasons[entry.file] = (
                "known bad (verify failed): kept for a person to inspect"
                if entry.file in bad
                else "no backup is known good (verified) yet: nothing is deleted"
            )
        return RetentionPlan(keep=ordered, delete=[], reasons=reasons)
    unverified_newer: set[str] = set()
    if good is not None and newest_good is not None:
        newer = ordered[: ordered.index(newest_good)]
        unverified_newer = {e.file for e in newer if e.file not in good}

    # Protected first: these never reach a pool.
    pools: dict[str, list[E]] = {}
    for entry in ordered:
        if entry.held:
            reasons[entry.file] = "held: kept until the hold is released"
        elif entry is newest_good:
            reasons[entry.file] = "newest good backup: always kept"
        elif entry.file in bad:
            reasons[entry.file] = "known bad (verify failed): kept for a person to inspect"
        elif entry.file in unverified_newer:
            reasons[entry.file] = "newer than the newest verified backup: kept until verified"
        elif entry.frequency not in policy.FREQUENCIES:
            reasons[entry.file] = f"unknown label {entry.frequency!r}: kept"
        else:
            row = policy.FREQUENCIES[entry.frequency]
            pool = "scheduled" if row.scheduled else row.label
            pools.setdefault(pool, []).append(entry)

    # The newest good backup counts toward its pool's keep, though it is never deleted.
    if newest_good is not None and not newest_good.held:
        newest_row = policy.FREQUENCIES.get(newest_good.frequency)
        if newest_row is not None:
            pool = "scheduled" if newest_row.scheduled else newest_row.label
            pools.setdefault(pool, []).insert(0, newest_good)

    keep_last = active.retention.keep_last
    for rank, entry in enumerate(pools.pop("scheduled", []), start=1):
        if entry is newest_good:
            continue
        if rank <= keep_last:
            reasons[entry.file] = (
                f"scheduled #{rank} of the newest {keep_last} ({active.label} is active)"
            )
        else:
            deleting.add(entry.file)
            reasons[entry.file] = (
                f"scheduled #{rank}: beyond the newest {keep_last} ({active.label} is active)"
            )

    for label, members in pools.items():
        rule = policy.FREQUENCIES[label].retention
        assert rule.max_age is not None, f"{label} has neither keep_last nor max_age"
        days = rule.max_age.days
        for rank, entry in enumerate(members, start=1):
            if entry is newest_good:
                continue
            age = now - entry.taken_at
            if rank <= rule.keep_at_least:
                reasons[entry.file] = (
                    f"{label} #{rank}: always keep the newest {rule.keep_at_least}"
                )
            elif age > rule.max_age:
                deleting.add(entry.file)
                reasons[entry.file] = f"{label} older than {days} days ({age.days} days old)"
            else:
                reasons[entry.file] = f"{label} within {days} days"

    keep = [e for e in ordered if e.file not in deleting]
    delete = [e for e in ordered if e.file in deleting]
    return RetentionPlan(keep=keep, delete=delete, reasons=reasons)


# --- change segments (point-in-time recovery) --------------------------------------------

ClusterTime = tuple[int, int]
"""A cluster time as ``(seconds, increment)``."""


def change_cutoff(
    now: datetime, window_days: float, kept_snapshots: Collection[ClusterTime]
) -> ClusterTime:
    """The cluster time before which no change segment is needed any more.

    Point-in-time restore is promised for the last ``window_days``: a moment in the window
    needs the newest kept snapshot at or before it and every segment from that snapshot on.
    So the cutoff is the cluster time of the newest kept snapshot at or before the window's
    start (``kept_snapshots``: the cluster times of the snapshots retention keeps), or the
    window's start when no kept snapshot is that old (moments before the oldest snapshot
    cannot be restored anyway).
    """
    from datetime import timedelta

    window_start: ClusterTime = (int((now - timedelta(days=window_days)).timestamp()), 0)
    older = [t for t in kept_snapshots if t <= window_start]
    return max(older) if older else window_start


def plan_changes(
    segments: Sequence[tuple[str, ClusterTime, ClusterTime]], cutoff: ClusterTime
) -> list[str]:
    """The segments (``(name, start, end)``) to delete: those that end before ``cutoff``.

    Everything from the cutoff on stays, so the chain a kept snapshot needs to reach forward
    is never broken: only whole segments older than every chain in use go.
    """
    return [name for name, _start, end in segments if end < cutoff]
