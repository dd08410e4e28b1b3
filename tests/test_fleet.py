"""The fleet table's rules (pure: no server), state by state and at the edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from daai_backup import fleet
from daai_backup.fleet import LastRun, TenantFacts, fleet_table
from daai_backup.lease import LeaseInfo
from daai_backup.policy.schedule_times import next_backup_time
from daai_backup.repository.catalog import BackupEntry
from daai_backup.repository.quota import QuotaReport
from daai_backup.tenants import TenantRegistry

NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)
TZ = "Asia/Kolkata"


def _entry(age: timedelta, label: str = "24-hour", held: bool = False, size: int = 2_000_000):
    at = NOW - age
    return BackupEntry(
        file=f"{label}_{at:%Y%m%dT%H%M%S}Z_0123abcd.gz.enc",
        frequency=label,
        taken_at=at,
        size_bytes=size,
        encrypted=True,
        held=held,
    )


def _table(tenants: list[dict[str, Any]], facts: dict[str, TenantFacts], **kw: Any):
    registry = TenantRegistry.from_data(
        {"tenants": [{"workspace_name": t["id"].title(), **t} for t in tenants]}
    )
    kw.setdefault("last_runs", {})
    return fleet_table(
        registry.values(), facts, now=NOW, default_timezone=TZ, spread_minutes=120, **kw
    )


def _states(table) -> dict[str, str]:
    return dict(zip(table["tenant"], table["state"], strict=True))


def test_every_state_and_the_order_problems_first() -> None:
    tenants = [
        {"id": "fresh", "frequency": "24-hour"},
        {"id": "stale", "frequency": "24-hour"},
        {"id": "broken", "frequency": "24-hour"},
        {"id": "paused", "subscription": "suspended"},
        {"id": "newbie", "frequency": "7-day"},
    ]
    facts = {
        "fresh": TenantFacts(entries=(_entry(timedelta(hours=30)),)),
        "stale": TenantFacts(entries=(_entry(timedelta(hours=37)),)),
        "broken": TenantFacts(entries=(_entry(timedelta(hours=2)),)),
        "paused": TenantFacts(),
        "newbie": TenantFacts(),
    }
    failed = LastRun("Failed", True, NOW - timedelta(hours=1), "quota exceeded", "backup-x")
    table = _table(
        tenants,
        facts,
        last_runs={"broken": failed, "fresh": LastRun("Completed", False, NOW)},
        registered_at={"newbie": NOW - timedelta(days=1)},
    )
    assert _states(table) == {
        "broken": fleet.FAILING,
        "stale": fleet.OVERDUE,
        "newbie": fleet.WAITING,
        "paused": fleet.SUSPENDED,
        "fresh": fleet.OK,
    }
    assert list(table["tenant"]) == ["broken", "stale", "newbie", "paused", "fresh"]
    broken = table.set_index("tenant").loc["broken"]
    assert "quota exceeded" in broken["detail"]
    assert "backup-x" in broken["detail"]
    assert "expected within 36 h" in table.set_index("tenant").loc["stale", "detail"]
    # Without a key every active tenant is "no key" at once, before any run failed.
    no_key = _table(tenants, facts, key_problem="BACKUP_ENCRYPTION_KEY is not set")
    assert set(_states(no_key).values()) == {fleet.NO_KEY, fleet.SUSPENDED}


def test_good_means_not_recorded_bad() -> None:
    newest, older = _entry(timedelta(hours=2)), _entry(timedelta(days=3))
    facts = {"t": TenantFacts(entries=(newest, older), known_bad=frozenset({newest.file}))}
    table = _table([{"id": "t", "frequency": "24-hour"}], facts)
    row = table.iloc[0]
    assert row["state"] == fleet.OVERDUE
    assert row["last_good_file"] == older.file


def test_an_imported_archive_is_not_a_fresh_backup() -> None:
    """Importing last year's dump today does not make an overdue tenant look backed up."""
    imported, older = _entry(timedelta(hours=1), label="imported"), _entry(timedelta(days=3))
    facts = {"t": TenantFacts(entries=(imported, older), known_bad=frozenset())}
    row = _table([{"id": "t", "frequency": "24-hour"}], facts).iloc[0]
    assert row["state"] == fleet.OVERDUE
    assert row["last_good_file"] == older.file


def test_waiting_for_first_backup_until_the_first_slot_is_missed_by_half_an_interval() -> None:
    tenant = {"id": "newbie", "frequency": "7-day"}
    registry = TenantRegistry.from_data({"tenants": [{"workspace_name": "N", **tenant}]})
    registered = NOW - timedelta(days=20)
    first_due = next_backup_time(registry["newbie"], registered, TZ, 120)
    deadline = first_due + timedelta(days=3.5)

    def state(now: datetime, **kw: Any) -> str:
        table = fleet_table(
            registry.values(),
            {"newbie": TenantFacts()},
            now=now,
            default_timezone=TZ,
            spread_minutes=120,
            **kw,
        )
        return str(table.iloc[0]["state"])

    at = {"registered_at": {"newbie": registered}}
    assert state(deadline - timedelta(minutes=1), **at) == fleet.WAITING
    assert state(deadline + timedelta(minutes=1), **at) == fleet.OVERDUE
    # Since when it is registered unknown (no Prefect): never called overdue for nothing.
    assert state(NOW) == fleet.WAITING


def test_display_rows_and_machine_records() -> None:
    lease = LeaseInfo(
        tenant_id="t",
        holder="x",
        operation="restore",
        detail="manual_x.gz.enc",
        host="h1",
        pid=42,
        run="restore-t",
        acquired_at=NOW - timedelta(minutes=3),
        renewed_at=NOW,
        expires_at=NOW + timedelta(seconds=30),
    )
    until = (NOW + timedelta(days=5)).isoformat()
    facts = {
        "t": TenantFacts(
            entries=(_entry(timedelta(hours=5), held=True), _entry(timedelta(days=2))),
            usage=QuotaReport.from_quota_mb(125_000_000, 500),
        )
    }
    tenants = [{"id": "t", "frequency_override": {"frequency": "24-hour", "until": until}}]
    table = _table(tenants, facts, leases={"t": lease})
    [row] = fleet.display_rows(table)
    assert row["State"] == fleet.OK
    assert row["Frequency"] == "24-hour (override until 2026-06-15, then 15-day)"
    assert row["Age"] == "5 h"
    assert row["Size"] == "2.0 MB"
    assert row["Quota"] == "25% of 500.0 MB"
    assert row["Held"] == "1"
    assert row["Lease"].startswith("the restore of t (manual_x.gz.enc; started")
    assert row["Last run"] == "none"
    assert row["Next run"].endswith("IST")
    [record] = fleet.json_records(table)
    assert record["used_bytes"] == 125_000_000
    assert record["quota_bytes"] == 500_000_000
    assert record["last_good_bytes"] == 2_000_000
    assert record["next_run"].endswith("+05:30")
    assert fleet.summary(table, NOW) == "**1 tenant** at 2026-06-10 12:00 UTC: 1 ok"
    # Unknowns are shown as such, not as "none".
    [unknown] = fleet.display_rows(_table(tenants, facts, leases=None, last_runs=None))
    assert unknown["Lease"] == unknown["Last run"] == "—"


def test_unreadable_storage_is_unknown_not_overdue() -> None:
    table = _table([{"id": "t"}], {"t": TenantFacts(error="access denied")})
    assert table.iloc[0]["state"] == fleet.UNKNOWN
    assert "access denied" in table.iloc[0]["detail"]


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=5), "5 s"),
        (timedelta(minutes=12), "12 min"),
        (timedelta(hours=5, minutes=20), "5 h 20 min"),
        (timedelta(days=3, hours=4), "3 d 4 h"),
    ],
)
def test_format_age(delta: timedelta, text: str) -> None:
    assert fleet.format_age(delta) == text


def test_backup_list_description_names_the_next_run() -> None:
    registry = TenantRegistry.from_data({"tenants": [{"id": "t", "workspace_name": "Tee"}]})
    tenant = registry["t"]
    at = next_backup_time(tenant, NOW, TZ, 120)
    empty = fleet.backup_list_description(
        tenant, [], now=NOW, default_timezone=TZ, spread_minutes=120
    )
    assert "no backups yet" in empty
    assert f"Next scheduled backup: {at:%Y-%m-%d %H:%M} IST (15-day)" in empty
    one = _entry(timedelta(hours=1), label="manual")
    listed = fleet.backup_list_description(
        tenant, [one], now=NOW, default_timezone=TZ, spread_minutes=120
    )
    assert "1 backup, newest first" in listed
    assert "Newest good:" in listed
    assert "not backups" not in listed
    assert "Last verification" not in listed


def test_strays_and_the_last_verification_are_shown_not_skipped() -> None:
    from dataclasses import replace

    from daai_backup.repository.verification import VerificationRecord

    registry = TenantRegistry.from_data({"tenants": [{"id": "t", "workspace_name": "Tee"}]})
    tenant = registry["t"]
    one = _entry(timedelta(hours=2), label="manual")
    record = VerificationRecord(one.file, NOW - timedelta(hours=1), False, None, one.size_bytes)
    checked = replace(one, verified=record)
    strays = ("readme.txt: not a name daai-backup writes; move it out of db-backups",)
    text = fleet.backup_list_description(
        tenant, [checked], now=NOW, default_timezone=TZ, spread_minutes=120, strays=strays
    )
    assert f"Last verification: {one.file} FAILED" in text
    assert "1 file(s) in db-backups are not backups: readme.txt: not a name" in text
    assert "`daai-backup doctor --tenant t`" in text
    facts = TenantFacts(entries=(checked,), known_bad=frozenset({one.file}), strays=strays)
    [row] = fleet.display_rows(_table([{"id": "t", "workspace_name": "Tee"}], {"t": facts}))
    assert row["Verified"].startswith("❌ BAD 2026-06-10")
    assert row["Detail"].endswith("1 file(s) in db-backups are not backups: `daai-backup doctor`")
    never = TenantFacts(entries=(one,))
    [row] = fleet.display_rows(_table([{"id": "t", "workspace_name": "Tee"}], {"t": never}))
    assert row["Verified"] == "never"


def test_schedule_times_accept_the_datetimes_prefects_client_returns() -> None:
    """Prefect's client hands out pendulum DateTimes (e.g. a deployment's ``created``): their
    arithmetic differs from datetime's, which broke the fleet flow on a real stack."""
    import pendulum

    from daai_backup.tenants import Tenant

    tenant = Tenant.model_validate({"id": "acme-hr", "workspace_name": "Acme HR"})
    moment = pendulum.datetime(2026, 11, 28, 9, 30, tz="UTC")
    plain = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    got = next_backup_time(tenant, moment, "Asia/Kolkata", 120)
    assert got.timestamp() == next_backup_time(tenant, plain, "Asia/Kolkata", 120).timestamp()
