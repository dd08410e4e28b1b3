"""Schedules from the frequency table: next run times, DST, offsets, overrides, refusals.

Next run times come from Prefect's own server-side schedule model (what its scheduler
service creates), so these tests measure Prefect's behaviour, not a re-implementation.
"""

from __future__ import annotations

import itertools
import statistics
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from deploy_helpers import registry
from prefect.schedules import Interval, RRule

from daai_backup.errors import ConfigError, TenantsFileInvalid
from daai_backup.policy import schedule_times
from daai_backup.policy.schedule_times import next_backup_time
from daai_backup.settings import Settings
from daai_backup.tenants import Tenant
from deployments import schedules
from deployments.build import desired_specs, tenant_spec

KOLKATA = ZoneInfo("Asia/Kolkata")


def _tenant(**fields: object) -> Tenant:
    data: dict[str, object] = {"id": "acme-hr", "workspace_name": "Acme HR"}
    data.update(fields)
    return Tenant.model_validate(data)


def _runs(tenant: Tenant, label: str, after: datetime, count: int) -> list[datetime]:
    schedule = schedules.backup_schedule(
        tenant, label, default_timezone="Asia/Kolkata", spread_minutes=120
    )
    return schedules.next_run_times(schedule, after, count)


@pytest.mark.parametrize(
    ("label", "step"),
    [
        ("monthly", timedelta(days=30)),
        ("15-day", timedelta(days=15)),
        ("7-day", timedelta(days=7)),
        ("3-day", timedelta(days=3)),
        ("24-hour", timedelta(hours=24)),
    ],
)
def test_true_intervals_across_a_month_boundary(label: str, step: timedelta) -> None:
    tenant = _tenant()
    offset = schedules.offset_minutes("acme-hr", 120)
    runs = _runs(tenant, label, datetime(2026, 1, 20, tzinfo=UTC), 6)
    # Every gap is exactly the interval (Kolkata has no DST), across Jan->Feb->Mar.
    assert all(b - a == step for a, b in itertools.pairwise(runs))
    assert runs[-1].month > 1 or label == "24-hour"
    for run in runs:
        local = run.astimezone(KOLKATA)
        assert (local.hour, local.minute) == divmod(60 + offset, 60)
    # The rhythm comes from the fixed anchor: (run - anchor) is a whole number of steps.
    anchor = schedules.anchor_date(tenant, default_timezone="Asia/Kolkata", spread_minutes=120)
    assert all((run - anchor) % step == timedelta(0) for run in runs)


def test_three_day_does_not_restart_on_the_first() -> None:
    """A cron ``*/3`` fires on the 31st and then the 1st; the interval keeps 3 days."""
    runs = _runs(_tenant(), "3-day", datetime(2026, 1, 25, tzinfo=UTC), 4)
    days = [r.astimezone(KOLKATA).date() for r in runs]
    assert [(b - a).days for a, b in itertools.pairwise(days)] == [3, 3, 3]
    assert any(d.month == 2 for d in days)


@pytest.mark.parametrize(
    ("zone", "after", "switch_day"),
    [
        ("America/New_York", datetime(2026, 3, 5, tzinfo=UTC), 8),  # spring forward, Mar 8
        ("America/New_York", datetime(2026, 10, 29, tzinfo=UTC), 1),  # fall back, Nov 1
        ("Europe/Berlin", datetime(2026, 3, 26, tzinfo=UTC), 29),  # Mar 29
        ("Europe/Berlin", datetime(2026, 10, 22, tzinfo=UTC), 25),  # Oct 25
    ],
)
def test_24_hour_keeps_local_time_across_dst(zone: str, after: datetime, switch_day: int) -> None:
    tenant = _tenant(timezone=zone)
    offset = schedules.offset_minutes("acme-hr", 120)
    runs = _runs(tenant, "24-hour", after, 7)
    local = [r.astimezone(ZoneInfo(zone)) for r in runs]
    assert {(t.hour, t.minute) for t in local} == {divmod(60 + offset, 60)}
    # One run per calendar day, including the switch day (no double run on the fall back).
    dates = [t.date() for t in local]
    assert len(set(dates)) == len(dates) == 7
    assert any(d.day == switch_day for d in dates)
    # So the elapsed time on the switch day is 23 or 25 hours, the others exactly 24.
    gaps = sorted({b - a for a, b in itertools.pairwise(runs)})
    assert timedelta(hours=24) in gaps
    assert len(gaps) == 2
    assert gaps[0] in (timedelta(hours=23), timedelta(hours=24))


def test_seven_day_across_dst_in_new_york() -> None:
    runs = _runs(
        _tenant(timezone="America/New_York"), "7-day", datetime(2026, 2, 20, tzinfo=UTC), 4
    )
    local = [r.astimezone(ZoneInfo("America/New_York")) for r in runs]
    assert len({(t.hour, t.minute) for t in local}) == 1
    assert all((b.date() - a.date()).days == 7 for a, b in itertools.pairwise(local))


def test_offsets_are_stable_and_spread() -> None:
    ids = [f"tenant-{i}" for i in range(2000)]
    offsets = [schedules.offset_minutes(t, 120) for t in ids]
    assert offsets == [schedules.offset_minutes(t, 120) for t in ids]  # stable
    assert schedules.offset_minutes("acme-hr", 120) == schedules.offset_minutes("acme-hr", 120)
    assert all(0 <= o < 120 for o in offsets)
    # Spread: every 10-minute bucket of the 2-hour window gets roughly 1/12 of the tenants.
    buckets = [0] * 12
    for o in offsets:
        buckets[o // 10] += 1
    assert min(buckets) > 2000 / 12 * 0.7
    assert max(buckets) < 2000 / 12 * 1.3
    assert abs(statistics.mean(offsets) - 59.5) < 5
    assert schedules.offset_minutes("acme-hr", 0) == 0


def test_schedule_shape_slug_and_anchor() -> None:
    tenant = _tenant(timezone="Europe/Berlin", frequency="7-day")
    schedule = schedules.backup_schedule(
        tenant, "7-day", default_timezone="Asia/Kolkata", spread_minutes=120
    )
    offset = schedules.offset_minutes("acme-hr", 120)
    hour, minute = divmod(60 + offset, 60)
    assert schedule.slug.startswith("7-day: every 7 days at ")
    assert schedule.timezone == "Europe/Berlin"
    assert schedule.rrule == (
        f"DTSTART:20240101T{hour:02d}{minute:02d}00\nRRULE:FREQ=DAILY;INTERVAL=7"
    )
    default_zone = schedules.backup_schedule(
        _tenant(), "15-day", default_timezone="Asia/Kolkata", spread_minutes=120
    )
    assert default_zone.timezone == "Asia/Kolkata"
    assert default_zone.rrule is not None
    assert default_zone.rrule.endswith("INTERVAL=15")


@pytest.mark.parametrize(
    ("zone", "hour", "minute", "after", "gap_day"),
    [
        ("America/New_York", 2, 30, datetime(2026, 3, 5, tzinfo=UTC), 8),
        ("Europe/Berlin", 2, 45, datetime(2026, 3, 26, tzinfo=UTC), 29),
        ("Europe/London", 1, 30, datetime(2026, 3, 26, tzinfo=UTC), 29),
    ],
)
def test_a_slot_inside_the_dst_gap_does_not_drift(
    zone: str, hour: int, minute: int, after: datetime, gap_day: int
) -> None:
    """Prefect's Interval moves the whole series an hour later after a gap; the RRule not."""
    tz = ZoneInfo(zone)
    anchor = datetime(2024, 1, 1, hour, minute)
    rrule = RRule(schedules.day_rrule(anchor, 1), timezone=zone, slug="x")
    local = [r.astimezone(tz) for r in schedules.next_run_times(rrule, after, 7)]
    assert len({t.date() for t in local}) == 7  # one run per day, the gap day included
    assert any(t.day == gap_day for t in local)
    assert {(t.hour, t.minute) for t in local if t.day != gap_day} == {(hour, minute)}
    # What Interval does with the same slot (measured; the reason for the RRule):
    interval = Interval(
        timedelta(days=1), anchor_date=anchor.replace(tzinfo=tz), timezone=zone, slug="y"
    )
    drifted = [r.astimezone(tz) for r in schedules.next_run_times(interval, after, 7)]
    assert {(t.hour, t.minute) for t in drifted} == {(hour + 1, minute)}


def test_spec_parameters_tags_and_pause(settings: Settings) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    spec = tenant_spec(
        _tenant(environment="sandbox", frequency="daily", subscription="suspended"),
        settings=settings,
        now=now,
    )
    assert spec.name == "backup-acme-hr"
    assert spec.parameters == {"tenant": "acme-hr", "label": "manual"}  # a Quick Run
    assert spec.schedules[0].parameters == {"label": "daily", "actor": "scheduler"}
    assert set(spec.tags) == {"daai-backup", "tenant:acme-hr", "env:sandbox"}
    assert spec.required == ("actor",)
    assert spec.paused is True


def test_override_applies_until_it_expires(settings: Settings) -> None:
    until = datetime(2026, 7, 1, tzinfo=UTC)
    tenant = _tenant(frequency_override={"frequency": "24-hour", "until": until.isoformat()})
    during = tenant_spec(tenant, settings=settings, now=until - timedelta(minutes=1))
    after = tenant_spec(tenant, settings=settings, now=until)
    assert during.schedules[0].parameters["label"] == "24-hour"
    assert during.schedules[0].slug.startswith("24-hour: every day at ")
    assert during.schedules[0].rrule is not None
    assert "override until" in during.description
    assert after.schedules[0].parameters["label"] == "15-day"
    assert after.schedules[0].slug.startswith("15-day: every 15 days at ")
    assert after.schedules[0].rrule is not None
    # Same anchor (DTSTART), only the interval differs.
    assert after.schedules[0].rrule.split("\n")[0] == during.schedules[0].rrule.split("\n")[0]


def test_daily_on_production_is_refused_clearly(settings: Settings) -> None:
    with pytest.raises(TenantsFileInvalid, match=r"'acme-hr'.*sandbox workspaces only"):
        registry({"id": "acme-hr", "workspace_name": "Acme", "frequency": "daily"})
    # A tenant built around the registry's check is still refused, naming the tenant.
    tenant = _tenant().model_copy(update={"frequency": "daily"})
    with pytest.raises(ConfigError, match=r"tenant 'acme-hr': .*sandbox workspaces only"):
        desired_specs([tenant], settings=settings, now=datetime.now(UTC))


def test_operation_deployments(settings: Settings) -> None:
    specs = {s.name: s for s in desired_specs([], settings=settings, work_pool="pool-a")}
    assert set(specs) == {
        "restore",
        "retention",
        "retention-sweep",
        "sync-schedules",
        "verify",
        "fleet",
        "diff",
        "capture",
        "timeline",
        "rekey",
    }
    assert specs["rekey"].schedules == ()  # run on purpose, after a rotation
    assert specs["rekey"].concurrency_limit == 1
    assert specs["diff"].schedules == ()
    assert specs["timeline"].schedules == ()
    assert specs["timeline"].required == ("actor",)
    assert specs["diff"].required == ("actor",)
    assert specs["capture"].schedules[0].interval == timedelta(minutes=10)
    assert specs["capture"].concurrency_limit == 1
    assert specs["restore"].schedules == ()
    assert specs["retention"].schedules == ()
    sweep = specs["retention-sweep"].schedules[0]
    assert sweep.rrule == "DTSTART:20240101T040000\nRRULE:FREQ=DAILY;INTERVAL=1"
    assert sweep.timezone == "Asia/Kolkata"
    assert specs["sync-schedules"].schedules[0].interval == timedelta(hours=1)
    assert specs["sync-schedules"].parameters == {"work_pool": "pool-a"}
    fleet = specs["fleet"].schedules[0]
    assert fleet.interval == timedelta(minutes=15)
    assert fleet.slug == "fleet-every-15-min"
    assert specs["fleet"].parameters == {}
    # The verify drill: every tenant's newest backup, weekly on Mondays at 05:00 by default.
    [drill] = specs["verify"].schedules
    assert drill.rrule == "DTSTART:20240101T050000\nRRULE:FREQ=DAILY;INTERVAL=7"
    assert drill.slug == "verify-drill-weekly"
    assert specs["verify"].parameters == {}  # no tenant: the drill
    mondays = schedules.next_run_times(drill, datetime(2026, 11, 28, tzinfo=UTC), 2)
    assert [(d.weekday(), d.hour) for d in mondays] == [(0, 5), (0, 5)]
    assert mondays[1] - mondays[0] == timedelta(days=7)
    off = settings.model_copy(update={"verify_drill_days": 0})
    assert {s.name: s for s in desired_specs([], settings=off)}["verify"].schedules == ()


def _gap_tenant_id() -> str:
    """A tenant id whose slot is 02:xx local: inside the spring-forward gap of New York."""
    return next(f"gap-{n}" for n in range(1000) if schedules.offset_minutes(f"gap-{n}", 120) >= 60)


@pytest.mark.parametrize(
    ("zone", "label", "after"),
    [
        ("Asia/Kolkata", "15-day", datetime(2026, 1, 20, tzinfo=UTC)),
        ("Asia/Kolkata", "monthly", datetime(2026, 11, 28, 9, tzinfo=UTC)),
        ("America/New_York", "24-hour", datetime(2026, 3, 6, tzinfo=UTC)),  # spring forward
        ("America/New_York", "3-day", datetime(2026, 10, 30, tzinfo=UTC)),  # fall back
        ("Europe/Berlin", "24-hour", datetime(2026, 3, 27, 12, tzinfo=UTC)),
        ("Europe/London", "7-day", datetime(2026, 10, 20, tzinfo=UTC)),
        ("Australia/Sydney", "24-hour", datetime(2026, 4, 3, tzinfo=UTC)),  # autumn (April)
        ("UTC", "3-day", datetime(2026, 2, 27, 23, 59, tzinfo=UTC)),
    ],
)
def test_engine_next_backup_time_agrees_with_the_registered_rrule(
    zone: str, label: str, after: datetime
) -> None:
    """The engine's schedule (fleet view, CLI) fires exactly when Prefect's RRule does,
    including slots inside a DST gap and on the repeated autumn hour."""
    for tenant_id in ("acme-hr", "globex-crm", "initech", _gap_tenant_id()):
        tenant = _tenant(id=tenant_id, timezone=zone, frequency=label)
        schedule = schedules.backup_schedule(
            tenant, label, default_timezone="Asia/Kolkata", spread_minutes=120
        )
        moment = after
        for expected in schedules.next_run_times(schedule, after, 8):
            got = next_backup_time(tenant, moment, "Asia/Kolkata", 120)
            # As instants, and with the same UTC offset (so the wall time shown is right).
            assert got.timestamp() == expected.timestamp(), (tenant_id, moment)
            assert got.utcoffset() == expected.utcoffset()
            assert str(got.tzinfo) == zone
            # At the slot itself it is still that slot (Prefect's start is inclusive).
            assert next_backup_time(tenant, got, "Asia/Kolkata", 120) == got
            moment = got + timedelta(seconds=1)


def test_engine_schedule_is_the_one_deployments_use() -> None:
    """One place: the deployments' offset and anchor are the engine's."""
    assert schedules.offset_minutes is schedule_times.offset_minutes
    assert schedules.EPOCH == schedule_times.EPOCH
    tenant = _tenant(timezone="America/New_York")
    schedule = schedules.backup_schedule(
        tenant, "7-day", default_timezone="UTC", spread_minutes=120
    )
    anchor = schedule_times.anchor_wall_time("acme-hr", 120)
    assert schedule.rrule == f"DTSTART:{anchor:%Y%m%dT%H%M%S}\nRRULE:FREQ=DAILY;INTERVAL=7"


def test_next_backup_time_after_an_override_ends() -> None:
    """An override ending before its next slot: the tenant's own frequency, from its end."""
    until = datetime(2026, 6, 10, tzinfo=UTC)
    override = {"frequency": "monthly", "until": until.isoformat()}
    tenant = _tenant(frequency="3-day", frequency_override=override)
    now = until - timedelta(days=2)
    own = _tenant(frequency="3-day")  # same anchor
    assert next_backup_time(tenant, now, "Asia/Kolkata", 120) == next_backup_time(
        own, until, "Asia/Kolkata", 120
    )
    # Asked for a label, it answers for that label.
    monthly = next_backup_time(tenant, now, "Asia/Kolkata", 120, label="monthly")
    assert monthly >= until
    assert (
        monthly - schedules.anchor_date(tenant, default_timezone="Asia/Kolkata", spread_minutes=120)
    ) % timedelta(days=30) == timedelta(0)


def test_the_schedule_reads_as_what_it_is(settings: Settings) -> None:
    tenant = _tenant(id="acme-hr", timezone="Asia/Kolkata", frequency="7-day")
    spec = tenant_spec(tenant, settings=settings, now=datetime(2026, 6, 1, tzinfo=UTC))
    anchor = schedules.anchor_date(tenant, default_timezone="Asia/Kolkata", spread_minutes=120)
    words = f"every 7 days at {anchor:%H:%M} IST (Asia/Kolkata)"
    assert words in spec.description
    assert spec.schedules[0].slug == f"7-day: {words}"  # what the UI shows for a schedule
