"""When a tenant's scheduled backups run: the one place that knows the anchor and the offset.

Every scheduled backup fires at :data:`~daai_backup.policy.SCHEDULE_HOUR`:00 in the tenant's
time zone plus a stable per-tenant offset, every N calendar days from a fixed anchor date
(:data:`EPOCH`). ``deployments/schedules.py`` turns this into the Prefect ``RRule`` the
deployments register (``DTSTART`` = :func:`anchor_wall_time`, ``FREQ=DAILY;INTERVAL=N``);
:func:`next_backup_time` computes the same fire times without Prefect, for the fleet view and
the CLI. A test compares the two on zones with and without daylight saving.

- ``offset`` is ``sha256(tenant id) mod spread_minutes`` minutes: stable across processes and
  machines (unlike ``hash()``), about uniform over the window.
- Fire times are local wall times ``anchor + k * N days``. A wall time that does not exist
  (inside a spring-forward gap) is read with the offset *after* the switch, as Prefect's RRule
  (dateutil) does: 02:30 in New York on the switch day fires at 01:30 EST (06:30 UTC). A wall
  time that occurs twice (autumn) fires at its first occurrence.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from daai_backup import policy
from daai_backup.tenants import Tenant

EPOCH: Final = date(2024, 1, 1)
"""The fixed date every anchor is on (a Monday; any fixed date works)."""


def offset_minutes(tenant_id: str, spread_minutes: int) -> int:
    """Stable offset of ``tenant_id`` inside a window of ``spread_minutes`` (0 if no window)."""
    if spread_minutes <= 0:
        return 0
    digest = hashlib.sha256(tenant_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % spread_minutes


def anchor_wall_time(tenant_id: str, spread_minutes: int) -> datetime:
    """The naive local wall time of the tenant's first slot: 01:00 on :data:`EPOCH` + offset."""
    start = datetime.combine(EPOCH, time(policy.SCHEDULE_HOUR))
    return start + timedelta(minutes=offset_minutes(tenant_id, spread_minutes))


def anchor_date(tenant: Tenant, *, default_timezone: str, spread_minutes: int) -> datetime:
    """The tenant's anchor as an aware datetime in its zone."""
    return localize(anchor_wall_time(tenant.id, spread_minutes), tenant.zone(default_timezone))


def interval_days(label: str) -> int:
    """N of ``FREQ=DAILY;INTERVAL=N`` for a scheduled label (ValueError if not whole days)."""
    row = policy.frequency(label)
    if row.interval is None:
        raise ValueError(f"frequency {label!r} is not a schedule")
    days, rest = divmod(row.interval, timedelta(days=1))
    if rest or days < 1:
        raise ValueError(f"frequency {label!r} is not a whole number of days")
    return days


def plain_datetime(moment: datetime) -> datetime:
    """``moment`` as a standard ``datetime`` in UTC (a subclass such as the pendulum times
    Prefect's client returns has arithmetic of its own that mixes badly with timedelta)."""
    utc = moment.astimezone(UTC)
    return datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, UTC
    )


def localize(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a naive local ``wall`` time fires at, the way Prefect's RRule reads it.

    A time inside a DST gap takes the offset after the switch (``fold=1`` for zoneinfo, which
    is what dateutil does); a repeated time takes its first occurrence (``fold=0``).
    """
    first = wall.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        return wall.replace(tzinfo=zone, fold=1).astimezone(UTC).astimezone(zone)
    return first


def fire_times(
    tenant_id: str,
    zone: ZoneInfo,
    days: int,
    spread_minutes: int,
    *,
    on_or_after: datetime,
) -> tuple[datetime, datetime]:
    """The slot before ``on_or_after`` and the first slot at or after it (aware, in ``zone``)."""
    if on_or_after.tzinfo is None:
        raise ValueError("on_or_after needs a time zone")
    on_or_after = plain_datetime(on_or_after)
    anchor = anchor_wall_time(tenant_id, spread_minutes)
    local = on_or_after.astimezone(zone).replace(tzinfo=None)
    step = timedelta(days=days)
    k = (local - anchor) // step  # the slot whose wall time is at or before now's wall time
    for candidate in range(k - 1, k + 3):
        at = localize(anchor + candidate * step, zone)
        if at >= on_or_after:
            return localize(anchor + (candidate - 1) * step, zone), at
    raise AssertionError("unreachable: slots are at least a day apart")  # pragma: no cover


def next_backup_time(
    tenant: Tenant,
    now: datetime,
    default_timezone: str,
    spread_minutes: int,
    *,
    label: str | None = None,
) -> datetime:
    """The tenant's next scheduled backup at or after ``now``, in the tenant's time zone.

    Compare results as instants (``.timestamp()`` or ``astimezone(UTC)``): Python's ``==``
    between zones is always False for a wall time that occurs twice (PEP 495).

    ``label`` defaults to the frequency in force at ``now`` (the override until it expires).
    When an override ends before its next slot, the next run is the tenant's own frequency's
    first slot after the override ends (the hourly schedule sync makes that switch, within
    the hour). Suspension is the caller's business: a suspended tenant's deployment is
    paused and runs nothing.
    """
    zone = tenant.zone(default_timezone)
    now = plain_datetime(now)
    active = label or tenant.active_frequency(now)
    _, at = fire_times(tenant.id, zone, interval_days(active), spread_minutes, on_or_after=now)
    override = tenant.frequency_override
    if label is None and override is not None and now < override.until <= at:
        own = interval_days(tenant.frequency)
        _, at = fire_times(tenant.id, zone, own, spread_minutes, on_or_after=override.until)
    return at


def previous_backup_time(
    tenant: Tenant, now: datetime, default_timezone: str, spread_minutes: int
) -> datetime:
    """The tenant's last scheduled slot before ``now`` at the frequency in force now."""
    zone = tenant.zone(default_timezone)
    days = interval_days(tenant.active_frequency(now))
    before, _ = fire_times(tenant.id, zone, days, spread_minutes, on_or_after=now)
    return before


__all__ = [
    "EPOCH",
    "anchor_date",
    "anchor_wall_time",
    "fire_times",
    "interval_days",
    "localize",
    "next_backup_time",
    "offset_minutes",
    "previous_backup_time",
]
