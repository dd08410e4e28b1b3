"""The frequency table: the one place that says how often a tenant is backed up and how long
each kind of backup is kept.

Labels are what the product's documentation and the backup file names use. ``interval`` is
``None`` for backups that are not scheduled (``manual``, ``pre-restore``, ``imported``).
Retention is a count of scheduled backups to keep, or an age limit with a floor of newest
ones; the pure function that applies it lives in :mod:`daai_backup.policy.retention`.

Schedules fire at :data:`SCHEDULE_HOUR`:00 in the tenant's time zone, as true intervals from a
fixed anchor (:mod:`daai_backup.policy.schedule_times`; the deployments render it as an RRule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from daai_backup.errors import ConfigError

SCHEDULE_HOUR: Final = 1
"""Scheduled backups fire at 01:00 in the tenant's time zone (plus its stable offset)."""

DEFAULT_FREQUENCY: Final = "15-day"


@dataclass(frozen=True)
class Retention:
    """How many backups of one label to keep.

    ``keep_last``: keep this many newest backups of the label (scheduled labels).
    ``max_age``: delete backups older than this ...
    ``keep_at_least``: ... but always keep this many newest ones regardless of age.
    """

    keep_last: int | None = None
    max_age: timedelta | None = None
    keep_at_least: int = 0

    def describe(self) -> str:
        if self.keep_last is not None:
            return f"keep the newest {self.keep_last}"
        assert self.max_age is not None
        days = self.max_age.days
        floor = f", and always the newest {self.keep_at_least}" if self.keep_at_least else ""
        return f"keep {days} days{floor}"


@dataclass(frozen=True)
class Frequency:
    """One row of the frequency table."""

    label: str
    interval: timedelta | None
    production_allowed: bool
    retention: Retention
    scheduled: bool

    @property
    def sandbox_only(self) -> bool:
        return self.scheduled and not self.production_allowed


def _scheduled(label: str, every: timedelta, keep: int, production: bool = True) -> Frequency:
    return Frequency(label, every, production, Retention(keep_last=keep), scheduled=True)


FREQUENCIES: Final[dict[str, Frequency]] = {
    f.label: f
    for f in (
        _scheduled("monthly", timedelta(days=30), 12),
        _scheduled("15-day", timedelta(days=15), 12),
        _scheduled("7-day", timedelta(days=7), 8),
        _scheduled("3-day", timedelta(days=3), 10),
        _scheduled("24-hour", timedelta(hours=24), 14),
        _scheduled("daily", timedelta(days=1), 7, production=False),
        Frequency(
            "manual",
            None,
            True,
            Retention(max_age=timedelta(days=30), keep_at_least=3),
            scheduled=False,
        ),
        Frequency("pre-restore", None, True, Retention(max_age=timedelta(days=7)), scheduled=False),
        # A mongodump archive brought in with `daai-backup import`: kept like a manual backup
        # (docs/decisions.md, "Backup manifests, describe and import"); hold it to keep it.
        Frequency(
            "imported",
            None,
            True,
            Retention(max_age=timedelta(days=30), keep_at_least=3),
            scheduled=False,
        ),
    )
}
"""Every label, in the order of the product's documentation."""

SCHEDULED_LABELS: Final = tuple(label for label, f in FREQUENCIES.items() if f.scheduled)
ALL_LABELS: Final = tuple(FREQUENCIES)
MANUAL: Final = "manual"
PRE_RESTORE: Final = "pre-restore"
IMPORTED: Final = "imported"


def frequency(label: str) -> Frequency:
    """The row for ``label``; a clear error naming the valid labels otherwise."""
    try:
        return FREQUENCIES[label]
    except KeyError:
        raise ConfigError(
            f"unknown frequency {label!r}: use one of {', '.join(ALL_LABELS)}"
        ) from None


def scheduled_frequency(label: str, environment: str) -> Frequency:
    """A label a tenant may be scheduled with in ``environment`` (production or sandbox)."""
    row = frequency(label)
    if not row.scheduled:
        raise ConfigError(
            f"frequency {label!r} is not a schedule: use one of {', '.join(SCHEDULED_LABELS)}"
        )
    if environment == "production" and not row.production_allowed:
        allowed = ", ".join(lbl for lbl in SCHEDULED_LABELS if FREQUENCIES[lbl].production_allowed)
        raise ConfigError(
            f"frequency {label!r} is for sandbox workspaces only: a production tenant uses one "
            f"of {allowed} (24-hour is the production daily option)"
        )
    return row
