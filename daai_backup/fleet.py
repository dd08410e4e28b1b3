"""One view of the whole fleet: every tenant, how fresh its last good backup is, what comes next.

:func:`fleet_table` is pure: it takes the registry, what storage says about each tenant
(:class:`TenantFacts`: its listing, the backups verify recorded bad, its usage), who holds
which lease, whether a key is configured, ``now``, and optionally what the orchestrator knows
(each tenant's newest finished backup run, when its deployment was registered), and returns a
pandas DataFrame with one row per tenant. :func:`display_rows` turns it into the strings the
CLI (``daai-backup status``) and the ``fleet`` table artifact show; :func:`summary` is the
markdown line above them.

**States**, first match wins (see ``docs/decisions.md``, "The fleet view"):

===============================  ==========================================================
``suspended``                    the subscription is suspended: backups are paused on purpose
``unknown``                      the tenant's storage could not be read (the detail says why)
``no key``                       ``BACKUP_ENCRYPTION_KEY`` is missing or malformed: every
                                 backup will fail, shown from the moment it is missing
``failing``                      the tenant's newest finished backup run failed or crashed
``overdue``                      no good backup within 1.5x the interval in force; a tenant
                                 without any good backup: its first scheduled run (after it
                                 was registered) was missed by half an interval
``waiting for first backup``     no backup yet and that first run is not missed yet, or
                                 nothing says since when the tenant is registered
``ok``                           a good backup within 1.5x the interval
===============================  ==========================================================

"Good" is the newest backup that verify has not recorded bad (any label: a manual or a
pre-restore backup is a full snapshot too), except an ``imported`` one: it holds whatever
the imported archive held, not the tenant's database at the time it was added.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from daai_backup.lease import LeaseInfo
from daai_backup.maintenance import MaintenanceRecord
from daai_backup.policy import IMPORTED
from daai_backup.policy.schedule_times import interval_days, next_backup_time
from daai_backup.repository.catalog import BackupEntry, human_size, newest_first, zone
from daai_backup.repository.quota import QuotaReport
from daai_backup.tenants import Tenant

if TYPE_CHECKING:  # pandas costs ~0.4 s to import: only the fleet view pays for it
    import pandas as pd

OK: Final = "ok"
OVERDUE: Final = "overdue"
FAILING: Final = "failing"
SUSPENDED: Final = "suspended"
NO_KEY: Final = "no key"
WAITING: Final = "waiting for first backup"
UNKNOWN: Final = "unknown"

STATES: Final = (FAILING, NO_KEY, OVERDUE, UNKNOWN, WAITING, SUSPENDED, OK)
"""Every state, the ones that need a person first (the table's sort order)."""

ALERT_STATES: Final = frozenset({OVERDUE, FAILING})
"""States that post to the failure webhook when a tenant enters them."""

GRACE: Final = 1.5
"""A tenant is overdue when its last good backup is older than GRACE x its interval."""

DISPLAY_COLUMNS: Final = (
    "Tenant",
    "State",
    "Frequency",
    "Last good backup",
    "Age",
    "Size",
    "Next run",
    "Quota",
    "Held",
    "Verified",
    "Lease",
    "Maintenance",
    "Last run",
    "Capture lag",
    "Detail",
)

UNKNOWN_MARK: Final = "—"


@dataclass(frozen=True)
class TenantFacts:
    """What storage says about one tenant; ``error`` when it could not be read."""

    entries: tuple[BackupEntry, ...] = ()
    known_bad: frozenset[str] = frozenset()
    usage: QuotaReport | None = None
    error: str | None = None
    strays: tuple[str, ...] = ()
    """Objects in the tenant's ``db-backups`` that are not backups (one line each)."""
    keys: Mapping[str, int] = field(default_factory=dict)
    """Encrypted backups per key fingerprint, from the listing index (manifest summaries);
    ``unknown`` for a backup whose summary does not say (no manifest, or an index written
    before summaries carried the fingerprint)."""


@dataclass(frozen=True)
class LastRun:
    """A tenant's newest finished backup run, as the orchestrator recorded it."""

    state: str
    """The state's name: ``Completed``, ``Failed``, ``Crashed`` (``Skipped`` is Completed)."""
    failed: bool
    at: datetime | None = None
    message: str | None = None
    flow_run: str | None = None


@dataclass
class FleetView:
    """The table plus what the caller should say about how it was made."""

    table: pd.DataFrame
    now: datetime
    notes: list[str] = field(default_factory=list)
    facts: dict[str, TenantFacts] = field(default_factory=dict)


def format_age(delta: timedelta) -> str:
    """``45 s``, ``12 min``, ``5 h 20 min``, ``3 d 4 h``."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def last_good_backup(
    entries: Iterable[BackupEntry], known_bad: Iterable[str]
) -> BackupEntry | None:
    """The newest backup of the tenant's database verify has not recorded bad, or None
    (an imported archive is not a backup of the database as it was when imported)."""
    bad = set(known_bad)
    return next(
        (e for e in newest_first(entries) if e.file not in bad and e.frequency != IMPORTED),
        None,
    )


def last_verification(entries: Iterable[BackupEntry]) -> tuple[BackupEntry, bool, datetime] | None:
    """The backup verified most recently, whether it passed, and when (None: never)."""
    found = [(e, r) for e in entries if (r := e.verification) is not None]
    if not found:
        return None
    entry, record = max(found, key=lambda pair: (pair[1].verified_at, not pair[1].ok))
    return entry, record.ok, record.verified_at


def _local(moment: datetime | None, tz: str) -> str:
    if moment is None:
        return UNKNOWN_MARK
    return moment.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


def _state_of(
    tenant: Tenant,
    facts: TenantFacts,
    *,
    now: datetime,
    default_timezone: str,
    spread_minutes: int,
    next_run: datetime,
    good: BackupEntry | None,
    key_problem: str | None,
    last_run: LastRun | None,
    registered_at: datetime | None,
) -> tuple[str, str]:
    """(state, detail) of one tenant; see the module docstring for the rules."""
    if tenant.subscription == "suspended":
        return SUSPENDED, "subscription suspended: scheduled backups are paused"
    if facts.error is not None:
        return UNKNOWN, f"storage could not be read: {facts.error}"
    tz = tenant.timezone or default_timezone
    label = tenant.active_frequency(now)
    interval = timedelta(days=interval_days(label))
    grace = interval * GRACE
    late: str | None = None  # why the tenant is overdue, if it is
    waiting: str | None = None
    if good is not None:
        age = now - good.taken_at
        if age > grace:
            late = (
                f"no good backup for {format_age(age)} "
                f"({label}: expected within {format_age(grace)})"
            )
    else:
        oldest = min((e.taken_at for e in facts.entries), default=None)
        since = registered_at or oldest
        bad = (
            f" ({len(facts.entries)} backups, all recorded bad by verify)" if facts.entries else ""
        )
        if since is None:
            waiting = f"no backup yet; first scheduled run {_local(next_run, tz)}"
        else:
            # The first slot after registration, missed by half an interval: the same slack a
            # tenant with backups gets (a backup on its slot, the next slot missed by 0.5 x).
            first_due = next_backup_time(tenant, since, default_timezone, spread_minutes)
            deadline = first_due + (grace - interval)
            if now <= deadline:
                due = first_due if first_due > now else next_run
                waiting = f"no good backup yet{bad}; first scheduled run {_local(due, tz)}"
            else:
                late = (
                    f"no good backup{bad}: the first scheduled run ({_local(first_due, tz)}) "
                    f"was missed by more than {format_age(grace - interval)}"
                )
    if key_problem is not None:
        return NO_KEY, "; ".join(x for x in (key_problem, late) if x)
    if last_run is not None and last_run.failed:
        when = f" at {_local(last_run.at, tz)}" if last_run.at else ""
        name = f" {last_run.flow_run}" if last_run.flow_run else ""
        message = f": {last_run.message}" if last_run.message else ""
        detail = f"last backup run{name} {last_run.state.lower()}{when}{message}"
        return FAILING, "; ".join(x for x in (detail, late) if x)
    if late is not None:
        return OVERDUE, late
    if waiting is not None:
        return WAITING, waiting
    return OK, ""


def fleet_table(
    tenants: Iterable[Tenant],
    facts: Mapping[str, TenantFacts],
    *,
    now: datetime,
    default_timezone: str,
    spread_minutes: int,
    key_problem: str | None = None,
    leases: Mapping[str, LeaseInfo] | None = None,
    last_runs: Mapping[str, LastRun | None] | None = None,
    registered_at: Mapping[str, datetime] | None = None,
    capture_lag: Mapping[str, float | None] | None = None,
    capture_target_s: float = 60.0,
    maintenance: Mapping[str, MaintenanceRecord] | None = None,
) -> pd.DataFrame:
    """One row per tenant, problems first (then by tenant id).

    ``facts``: per tenant id (a tenant missing here counts as unreadable). ``key_problem``:
    None when a current key is configured, else the one line saying what is wrong.
    ``leases``: the tenants whose lease is held now (None: could not be read).
    ``last_runs``: each tenant's newest finished backup run (a tenant mapped to None has
    none); None when no orchestrator was asked, so ``failing`` cannot be known.
    ``registered_at``: since when each tenant is known to be registered (its backup
    deployment's creation), for tenants without a good backup.
    ``capture_lag``: each tenant's change capture lag in seconds (None: not captured); None
    when it could not be read. Above ``capture_target_s`` the display says so.
    ``maintenance``: the tenants in a restore's maintenance window now (None: could not be
    read).
    """
    if now.tzinfo is None:
        raise ValueError("now needs a time zone: use datetime.now(UTC)")
    rows: list[dict[str, Any]] = []
    for tenant in tenants:
        tenant_facts = facts.get(tenant.id) or TenantFacts(error="not read")
        tz = tenant.timezone or default_timezone
        label = tenant.active_frequency(now)
        suspended = tenant.subscription == "suspended"
        next_run = next_backup_time(tenant, now, default_timezone, spread_minutes)
        good = last_good_backup(tenant_facts.entries, tenant_facts.known_bad)
        last_run = None if last_runs is None else last_runs.get(tenant.id)
        state, detail = _state_of(
            tenant,
            tenant_facts,
            now=now,
            default_timezone=default_timezone,
            spread_minutes=spread_minutes,
            next_run=next_run,
            good=good,
            key_problem=key_problem,
            last_run=last_run,
            registered_at=None if registered_at is None else registered_at.get(tenant.id),
        )
        override = tenant.frequency_override
        lease = None if leases is None else leases.get(tenant.id)
        window = None if maintenance is None else maintenance.get(tenant.id)
        usage = tenant_facts.usage
        verified = last_verification(tenant_facts.entries)
        rows.append(
            {
                "tenant": tenant.id,
                "workspace": tenant.workspace_name,
                "state": state,
                "detail": detail,
                "timezone": tz,
                "frequency": label,
                "own_frequency": tenant.frequency,
                "override_until": (
                    override.until if override is not None and label != tenant.frequency else None
                ),
                "backups": len(tenant_facts.entries),
                "held": sum(1 for e in tenant_facts.entries if e.held),
                "last_good_file": good.file if good else None,
                "last_good_at": good.taken_at if good else None,
                "last_good_bytes": good.size_bytes if good else None,
                "last_good_age_s": (now - good.taken_at).total_seconds() if good else None,
                "next_run": None if suspended else next_run,
                "used_bytes": usage.used_bytes if usage else None,
                "quota_bytes": usage.quota_bytes if usage else None,
                "lease": "?" if leases is None else (lease.describe(now) if lease else None),
                "maintenance": (
                    "?" if maintenance is None else (window.describe(now) if window else None)
                ),
                "last_run_state": (
                    "?" if last_runs is None else (last_run.state if last_run else None)
                ),
                "last_run_at": last_run.at if last_run else None,
                "last_run_message": last_run.message if last_run else None,
                "last_verified_file": verified[0].file if verified else None,
                "last_verified_ok": verified[1] if verified else None,
                "last_verified_at": verified[2] if verified else None,
                "strays": len(tenant_facts.strays),
                "capture_lag_s": None if capture_lag is None else capture_lag.get(tenant.id),
                # None: unknown (not read); False with no lag: not captured ("off").
                "capture_over_target": (
                    None
                    if capture_lag is None
                    else bool((capture_lag.get(tenant.id) or 0.0) > capture_target_s)
                ),
            }
        )
    order = {state: n for n, state in enumerate(STATES)}
    rows.sort(key=lambda r: (order[r["state"]], r["tenant"]))
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return table.astype({c: "Int64" for c in ("last_good_bytes", "used_bytes", "quota_bytes")})


TABLE_COLUMNS: Final = (
    "tenant",
    "workspace",
    "state",
    "detail",
    "timezone",
    "frequency",
    "own_frequency",
    "override_until",
    "backups",
    "held",
    "last_good_file",
    "last_good_at",
    "last_good_bytes",
    "last_good_age_s",
    "next_run",
    "used_bytes",
    "quota_bytes",
    "lease",
    "maintenance",
    "last_run_state",
    "last_run_at",
    "last_run_message",
    "last_verified_file",
    "last_verified_ok",
    "last_verified_at",
    "strays",
    "capture_lag_s",
    "capture_over_target",
)
"""The columns of :func:`fleet_table`, in order."""


def _value(row: Mapping[Any, Any], column: str) -> Any:
    """A cell, with pandas' missing values (NaN, NaT) as None."""
    import pandas as pd

    value = row[column]
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _frequency_text(row: Mapping[Any, Any]) -> str:
    until = _value(row, "override_until")
    if until is None:
        return str(row["frequency"])
    day = until.astimezone(zone(row["timezone"])).strftime("%Y-%m-%d")
    return f"{row['frequency']} (override until {day}, then {row['own_frequency']})"


def _quota_text(row: Mapping[Any, Any]) -> str:
    used, quota = _value(row, "used_bytes"), _value(row, "quota_bytes")
    if used is None:
        return UNKNOWN_MARK
    if quota is None:
        return f"{human_size(int(used))}, no quota"
    percent = 100.0 * used / quota if quota else 100.0
    return f"{percent:.0f}% of {human_size(int(quota))}"


CAPTURE_OVER: Final = "over target"
"""Marks a capture lag above the target in the display (the fleet flow alerts on it)."""


def _capture_text(row: Mapping[Any, Any]) -> str:
    lag = _value(row, "capture_lag_s")
    if lag is None:
        return UNKNOWN_MARK if _value(row, "capture_over_target") is None else "off"
    text = format_age(timedelta(seconds=float(lag)))
    return f"{text} ({CAPTURE_OVER})" if _value(row, "capture_over_target") else text


def display_rows(table: pd.DataFrame) -> list[dict[str, str]]:
    """The table as the product shows it (strings; times in each tenant's zone)."""
    rows: list[dict[str, str]] = []
    for row in table.to_dict(orient="records"):
        tz = row["timezone"]
        next_run = _value(row, "next_run")
        last_state = _value(row, "last_run_state")
        if last_state == "?":
            last_run = UNKNOWN_MARK
        elif last_state is None:
            last_run = "none"
        else:
            last_run = f"{last_state} {_local(_value(row, 'last_run_at'), tz)}"
        good_at = _value(row, "last_good_at")
        age = _value(row, "last_good_age_s")
        size = _value(row, "last_good_bytes")
        lease = _value(row, "lease")
        window = _value(row, "maintenance")
        verified_at = _value(row, "last_verified_at")
        if verified_at is None:
            verified = "never"
        else:
            result = "✅ ok" if _value(row, "last_verified_ok") else "❌ BAD"
            verified = f"{result} {_local(verified_at, tz)}"
        detail = row["detail"]
        strays = int(row["strays"] or 0)
        if strays:
            extra = f"{strays} file(s) in db-backups are not backups: `daai-backup doctor`"
            detail = f"{detail}; {extra}" if detail else extra
        rows.append(
            {
                "Tenant": row["tenant"],
                "State": row["state"],
                "Frequency": _frequency_text(row),
                "Last good backup": _local(good_at, tz) if good_at is not None else "none",
                "Age": format_age(timedelta(seconds=age)) if age is not None else "",
                "Size": human_size(int(size)) if size is not None else "",
                "Next run": (
                    _local(next_run, tz) if next_run is not None else "paused (suspended)"
                ),
                "Quota": _quota_text(row),
                "Held": str(int(row["held"])) if row["held"] else "",
                "Verified": verified,
                "Lease": UNKNOWN_MARK if lease == "?" else (lease or ""),
                "Maintenance": UNKNOWN_MARK if window == "?" else (window or ""),
                "Last run": last_run,
                "Capture lag": _capture_text(row),
                "Detail": detail,
            }
        )
    return rows


def json_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Machine-readable rows: times as ISO 8601 in the tenant's zone, sizes in bytes."""
    records: list[dict[str, Any]] = []
    for row in table.to_dict(orient="records"):
        record: dict[str, Any] = {}
        for column in TABLE_COLUMNS:
            value = _value(row, column)
            if isinstance(value, datetime):
                value = value.astimezone(zone(row["timezone"])).isoformat(timespec="seconds")
            elif hasattr(value, "item"):  # numpy scalars
                value = value.item()
            record[column] = value
        records.append(record)
    return records


def counts(table: pd.DataFrame) -> dict[str, int]:
    """How many tenants are in each state (states with none left out), in :data:`STATES` order."""
    found = table["state"].value_counts().to_dict() if len(table) else {}
    return {state: int(found[state]) for state in STATES if state in found}


def summary(table: pd.DataFrame, now: datetime) -> str:
    """One markdown line: ``**12 tenants** at ... UTC: 1 failing (c) · 2 overdue (a, b) · 9 ok``."""
    parts = []
    for state, count in counts(table).items():
        names = ""
        if state != OK:
            ids = table.loc[table["state"] == state, "tenant"].tolist()
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            names = f" ({shown})"
        parts.append(f"{count} {state}{names}")
    plural = "s" if len(table) != 1 else ""
    head = f"**{len(table)} tenant{plural}** at {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return f"{head}: {' · '.join(parts)}" if parts else f"{head}: none registered"


def backup_list_description(
    tenant: Tenant,
    entries: Sequence[BackupEntry],
    *,
    now: datetime,
    default_timezone: str,
    spread_minutes: int,
    known_bad: Iterable[str] = (),
    strays: Sequence[str] = (),
) -> str:
    """What the ``backups-<tenant>`` artifact says above its rows (markdown).

    ``strays``: objects in the folder that are not backups (one line each), reported under
    the rest, never silently skipped.

    Prefect's page for an artifact key shows the newest version's description, not its
    table: so the description itself answers "is it backed up, and when is the next one".
    Absolute times only, so the text changes only when the facts do.
    """
    tz = tenant.timezone or default_timezone
    head = f"**{tenant.workspace_name}** ({tenant.id})"
    label = tenant.active_frequency(now)
    if tenant.subscription == "suspended":
        upcoming = "Scheduled backups are paused (subscription suspended)."
    else:
        at = next_backup_time(tenant, now, default_timezone, spread_minutes)
        upcoming = f"Next scheduled backup: {_local(at, tz)} ({label})."
    warning = ""
    if strays:
        shown = "; ".join(strays[:5]) + (f"; and {len(strays) - 5} more" if len(strays) > 5 else "")
        warning = (
            f"\n\n⚠️ {len(strays)} file(s) in db-backups are not backups: {shown}. "
            f"`daai-backup doctor --tenant {tenant.id}` says what to do about each."
        )
    if not entries:
        return (
            f"{head}: no backups yet. {upcoming} "
            f"`daai-backup backup --tenant {tenant.id}` takes one now.{warning}"
        )
    good = last_good_backup(entries, known_bad)
    count = f"{len(entries)} backup{'s' if len(entries) != 1 else ''}, newest first"
    held = sum(1 for e in entries if e.held)
    if held:
        count += f", {held} held"
    if good is None:
        newest = "No good backup: every one is recorded bad by verify."
    else:
        newest = f"Newest good: {_local(good.taken_at, tz)} ({human_size(good.size_bytes)})."
    verified = last_verification(entries)
    checked = ""
    if verified is not None:
        entry, ok, at = verified
        result = "passed" if ok else "FAILED"
        checked = f" Last verification: {entry.file} {result} ({_local(at, tz)})."
    return f"{head}: {count}. {newest} {upcoming}{checked}{warning}"


__all__ = [
    "ALERT_STATES",
    "DISPLAY_COLUMNS",
    "FAILING",
    "GRACE",
    "NO_KEY",
    "OK",
    "OVERDUE",
    "STATES",
    "SUSPENDED",
    "TABLE_COLUMNS",
    "UNKNOWN",
    "WAITING",
    "FleetView",
    "LastRun",
    "TenantFacts",
    "backup_list_description",
    "counts",
    "display_rows",
    "fleet_table",
    "format_age",
    "json_records",
    "last_good_backup",
    "last_verification",
    "summary",
]
