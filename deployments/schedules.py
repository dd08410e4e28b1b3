"""The frequency table as Prefect schedules: tenant -> one ``Interval`` schedule.

Every scheduled backup fires at ``SCHEDULE_HOUR``:00 in the tenant's time zone plus a stable
per-tenant offset, as a true interval from a fixed anchor::

    anchor = EPOCH at 01:00 tenant-local + offset(tenant id)
    runs   = anchor + k * interval            (k = 0, 1, 2, ...)

- ``offset`` is ``sha256(tenant id) mod schedule_spread_minutes`` minutes: stable across
  processes and machines (unlike ``hash()``), roughly uniform over the window, so thousands of
  tenants do not start at the same minute.
- The anchor is a fixed date (:data:`EPOCH`), so a 3-day schedule keeps its 3-day rhythm over
  month ends (a cron ``*/3`` would restart on the 1st) and re-registering never shifts it.
- Prefect adds whole-day intervals in the schedule's time zone (measured on Prefect 3.9: a
  24-hour interval in America/New_York stays at 01:xx local across both DST switches, i.e. 23
  or 25 elapsed hours on those two days, and fires once on the repeated hour). That is what
  the product promises ("01:00 in the tenant's time zone"), so every row uses ``Interval``;
  see ``docs/decisions.md``.
- The slug is ``<tenant>-<label>``: without a slug, re-registering re-activates a paused
  schedule; with it, a frequency change is a new slug and sync deletes the old schedule.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from prefect.schedules import Interval, Schedule

from daai_backup import policy
from daai_backup.tenants import Tenant

EPOCH: Final = datetime(2024, 1, 1).date()
"""The fixed date every anchor is on (a Monday; any fixed date works)."""


def offset_minutes(tenant_id: str, spread_minutes: int) -> int:
    """Stable offset of ``tenant_id`` inside a window of ``spread_minutes`` (0 if no window)."""
    if spread_minutes <= 0:
        return 0
    digest = hashlib.sha256(tenant_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % spread_minutes


def anchor_date(tenant: Tenant, *, default_timezone: str, spread_minutes: int) -> datetime:
    """The tenant's anchor: 01:00 local on :data:`EPOCH` plus its offset, tz-aware."""
    zone = tenant.zone(default_timezone)
    start = datetime.combine(EPOCH, time(policy.SCHEDULE_HOUR), tzinfo=zone)
    return start + timedelta(minutes=offset_minutes(tenant.id, spread_minutes))


def schedule_slug(tenant_id: str, label: str) -> str:
    return f"{tenant_id}-{label}"


def backup_schedule(
    tenant: Tenant,
    label: str,
    *,
    default_timezone: str,
    spread_minutes: int,
    active: bool = True,
) -> Schedule:
    """The Prefect schedule of ``tenant`` backed up at frequency ``label``.

    Raises ``ConfigError`` for a label that is not a schedule or that the tenant's
    environment does not allow (``daily`` on production).
    """
    row = policy.scheduled_frequency(label, tenant.environment)
    assert row.interval is not None
    zone_name = tenant.timezone or default_timezone
    return Interval(
        row.interval,
        anchor_date=anchor_date(
            tenant, default_timezone=default_timezone, spread_minutes=spread_minutes
        ),
        timezone=zone_name,
        active=active,
        slug=schedule_slug(tenant.id, label),
    )


def daily_schedule(hour: int, timezone: str, slug: str, minute: int = 0) -> Schedule:
    """A once-a-day interval at ``hour:minute`` local (for the retention sweep)."""
    anchor = datetime.combine(EPOCH, time(hour, minute), tzinfo=ZoneInfo(timezone))
    return Interval(timedelta(days=1), anchor_date=anchor, timezone=timezone, slug=slug)


def hourly_schedule(slug: str, minute: int = 5) -> Schedule:
    """Every hour at ``minute`` past (for the schedule sync)."""
    anchor = datetime.combine(EPOCH, time(0, minute), tzinfo=ZoneInfo("UTC"))
    return Interval(timedelta(hours=1), anchor_date=anchor, timezone="UTC", slug=slug)


def next_run_times(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after``, computed by the server's own code.

    Uses Prefect's server-side schedule model, i.e. exactly what the scheduler service will
    create, so tests and ``docs`` can show real dates without a running server.
    """
    import asyncio

    from prefect.server.schemas.schedules import IntervalSchedule

    if schedule.interval is None:
        raise ValueError("only interval schedules are supported")
    interval = schedule.interval
    server_schedule = IntervalSchedule(
        interval=interval if isinstance(interval, timedelta) else timedelta(seconds=interval),
        anchor_date=schedule.anchor_date,  # type: ignore[arg-type]
        timezone=schedule.timezone,
    )
    dates = asyncio.run(server_schedule.get_dates(n=count, start=after))
    return [datetime.fromisoformat(d.isoformat()) for d in dates]
