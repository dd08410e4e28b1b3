"""The frequency table as Prefect schedules: tenant -> one day-based ``RRule`` schedule.

Every scheduled backup fires at ``SCHEDULE_HOUR``:00 in the tenant's time zone plus a stable
per-tenant offset, every N calendar days from a fixed anchor::

    DTSTART:<EPOCH>T01:<offset>   (local wall time in the tenant's zone)
    RRULE:FREQ=DAILY;INTERVAL=<N> (N = 30, 15, 7, 3, 1; "24-hour" and "daily" are N = 1)

- ``offset`` is ``sha256(tenant id) mod schedule_spread_minutes`` minutes: stable across
  processes and machines (unlike ``hash()``), roughly uniform over the window, so thousands of
  tenants do not start at the same minute.
- The offset, the anchor and the fire times themselves live in the engine
  (:mod:`daai_backup.policy.schedule_times`, which the fleet view and the CLI use to say
  when the next backup runs); this module only renders them as Prefect schedules.
- The anchor is a fixed date (:data:`EPOCH`), so a 3-day schedule keeps its 3-day rhythm over
  month ends (a cron ``*/3`` would restart on the 1st) and re-registering never shifts it.
- Why not ``Interval`` (measured on Prefect 3.9 with the server's own schedule code): an
  Interval with a time zone does keep 01:xx local across DST switches, but when the local
  time falls into a DST gap on any day between the anchor and now (02:30 in New York or
  Berlin, 01:30 in London) the whole series moves an hour later for good: it fires at 03:30
  forever after. The RRule keeps the wall time on every other day, fires once on the gap day
  (an hour earlier by the wall clock) and once on the repeated hour in autumn. Every row is a
  whole number of days, so the RRule is still a true interval. See ``docs/decisions.md``.
- The slug is the schedule in words (``7-day: every 7 days at 02:12 IST (Asia/Kolkata)``):
  Prefect's UI names a schedule by its slug (an RRule shows as nothing else). Without a
  slug, re-registering re-activates a paused schedule; with it, a frequency change is a new
  slug and sync deletes the old schedule.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from prefect.schedules import Interval, RRule, Schedule

from daai_backup import policy
from daai_backup.policy.schedule_times import (
    EPOCH,
    anchor_date,
    anchor_wall_time,
    interval_days,
    offset_minutes,
)
from daai_backup.tenants import Tenant

SCHEDULER_ACTOR: Final = "scheduler"
"""The actor of a scheduled backup run (who asked: the schedule)."""

__all__ = [
    "EPOCH",
    "SCHEDULER_ACTOR",
    "anchor_date",
    "backup_schedule",
    "daily_schedule",
    "day_rrule",
    "describe_backup_schedule",
    "every_days_schedule",
    "every_minutes_schedule",
    "hourly_schedule",
    "next_run_times",
    "offset_minutes",
    "schedule_slug",
]


def schedule_slug(label: str, described: str) -> str:
    """The schedule's slug, which is how Prefect's UI names a schedule: what it is, in words
    (``7-day: every 7 days at 02:12 IST (Asia/Kolkata)``). Stable while the tenant's
    frequency, zone and offset are; a change of any of them is a new schedule (sync deletes
    the old slug)."""
    return f"{label}: {described}"


def day_rrule(anchor: datetime, days: int) -> str:
    """``DTSTART`` (naive local wall time) plus a daily rule every ``days`` days."""
    return f"DTSTART:{anchor:%Y%m%dT%H%M%S}\nRRULE:FREQ=DAILY;INTERVAL={days}"


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
    policy.scheduled_frequency(label, tenant.environment)
    days = interval_days(label)
    anchor = anchor_wall_time(tenant.id, spread_minutes)
    return RRule(
        day_rrule(anchor, days),
        timezone=tenant.timezone or default_timezone,
        active=active,
        slug=schedule_slug(
            label,
            describe_backup_schedule(
                tenant, label, default_timezone=default_timezone, spread_minutes=spread_minutes
            ),
        ),
        # A scheduled run is a backup of this frequency; the deployment's own default
        # (a Quick Run in the UI) is a manual Backup Now.
        parameters={"label": label, "actor": SCHEDULER_ACTOR},
    )


def describe_backup_schedule(
    tenant: Tenant, label: str, *, default_timezone: str, spread_minutes: int
) -> str:
    """The schedule in words, e.g. ``every 7 days at 02:12 IST (Asia/Kolkata)``."""
    row = policy.scheduled_frequency(label, tenant.environment)
    assert row.interval is not None
    days = row.interval // timedelta(days=1)
    anchor = anchor_date(tenant, default_timezone=default_timezone, spread_minutes=spread_minutes)
    zone = tenant.timezone or default_timezone
    every = "every day" if days == 1 else f"every {days} days"
    return f"{every} at {anchor:%H:%M} {anchor.tzname()} ({zone})"


def daily_schedule(hour: int, timezone: str, slug: str, minute: int = 0) -> Schedule:
    """Once a day at ``hour:minute`` local (for the retention sweep)."""
    anchor = datetime.combine(EPOCH, time(hour, minute))
    return RRule(day_rrule(anchor, 1), timezone=timezone, slug=slug)


def every_days_schedule(days: int, hour: int, timezone: str, slug: str) -> Schedule:
    """Every ``days`` days at ``hour``:00 local, counted from :data:`EPOCH` (a Monday), so a
    weekly schedule runs on Mondays (for the verify drill)."""
    anchor = datetime.combine(EPOCH, time(hour, 0))
    return RRule(day_rrule(anchor, days), timezone=timezone, slug=slug)


def hourly_schedule(slug: str, minute: int = 5) -> Schedule:
    """Every hour at ``minute`` past (for the schedule sync)."""
    anchor = datetime.combine(EPOCH, time(0, minute), tzinfo=ZoneInfo("UTC"))
    return Interval(timedelta(hours=1), anchor_date=anchor, timezone="UTC", slug=slug)


def every_minutes_schedule(minutes: int, slug: str, minute: int = 0) -> Schedule:
    """Every ``minutes`` minutes from ``minute`` past midnight UTC (for the fleet view)."""
    anchor = datetime.combine(EPOCH, time(0, minute), tzinfo=ZoneInfo("UTC"))
    return Interval(timedelta(minutes=minutes), anchor_date=anchor, timezone="UTC", slug=slug)


def next_run_times(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after``, computed by the server's own code.

    Uses Prefect's server-side schedule models, i.e. exactly what the scheduler service will
    create, so tests and docs can show real dates without a running server.
    """
    import asyncio

    from prefect.server.schemas.schedules import IntervalSchedule, RRuleSchedule

    server_schedule: IntervalSchedule | RRuleSchedule
    if schedule.rrule is not None:
        server_schedule = RRuleSchedule(rrule=schedule.rrule, timezone=schedule.timezone)
    elif schedule.interval is not None:
        interval = schedule.interval
        server_schedule = IntervalSchedule(
            interval=interval if isinstance(interval, timedelta) else timedelta(seconds=interval),
            anchor_date=schedule.anchor_date,  # type: ignore[arg-type]
            timezone=schedule.timezone,
        )
    else:
        raise ValueError("only rrule and interval schedules are supported")
    dates = asyncio.run(server_schedule.get_dates(n=count, start=after))
    return [datetime.fromisoformat(d.isoformat()) for d in dates]
