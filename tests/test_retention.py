"""Retention plans on crafted catalogs, and invariants that hold for any catalog."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daai_backup import policy
from daai_backup.errors import ConfigError
from daai_backup.policy.retention import RetentionPlan, plan

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    file: str
    frequency: str
    taken_at: datetime
    held: bool = False


def make(label: str, days_ago: float, *, held: bool = False, n: int = 0) -> Entry:
    taken = NOW - timedelta(days=days_ago)
    return Entry(f"{label}_{taken:%Y%m%dT%H%M%S}_{n:04d}.gz.enc", label, taken, held)


def series(label: str, count: int, every_days: float, start: float = 1.0) -> list[Entry]:
    return [make(label, start + i * every_days, n=i) for i in range(count)]


def files(entries: list[Entry]) -> set[str]:
    return {e.file for e in entries}


def keep_last(label: str) -> int:
    value = policy.FREQUENCIES[label].retention.keep_last
    assert value is not None
    return value


@pytest.mark.parametrize("label", policy.SCHEDULED_LABELS)
def test_scheduled_keeps_exactly_the_active_count(label: str) -> None:
    n = keep_last(label)
    entries = series(label, n + 5, 1.0)
    result = plan(entries, label, NOW)
    assert files(result.keep) == files(entries[:n])
    assert files(result.delete) == files(entries[n:])
    assert "beyond the newest" in result.reasons[entries[-1].file]


def test_previous_frequency_counts_toward_the_active_keep() -> None:
    """After a switch 15-day -> 24-hour, one pool: the newest 14 scheduled, whatever label."""
    daily = series("24-hour", 5, 1.0)
    old = series("15-day", 12, 15.0, start=10.0)
    result = plan(daily + old, "24-hour", NOW)
    n = keep_last("24-hour")
    assert files(result.keep) == files(daily + old[: n - len(daily)])
    assert files(result.delete) == files(old[n - len(daily) :])


def test_frequency_override_shrinks_the_pool_when_it_expires() -> None:
    entries = series("24-hour", 14, 1.0)
    result = plan(entries, "7-day", NOW)
    assert len(result.keep) == keep_last("7-day")


def test_manual_older_than_max_age_deleted_but_newest_three_kept() -> None:
    rule = policy.FREQUENCIES["manual"].retention
    assert rule.max_age is not None
    old_days = rule.max_age.days + 5
    old = [make("manual", old_days + i, n=i) for i in range(5)]
    recent = [make("manual", 2 + i, n=10 + i) for i in range(2)]
    scheduled = series("15-day", 2, 15.0, start=0.5)  # newest overall is scheduled
    result = plan(old + recent + scheduled, "15-day", NOW)
    # newest 3 manual: the two recent ones and the newest old one
    kept_manual = {e.file for e in result.keep if e.frequency == "manual"}
    assert kept_manual == files([*recent, old[0]])
    assert files(result.delete) == files(old[1:])
    assert "older than" in result.reasons[old[-1].file]
    assert "always keep the newest" in result.reasons[old[0].file]


def test_manual_within_max_age_all_kept() -> None:
    entries = [make("manual", i + 1, n=i) for i in range(10)]
    assert plan(entries, "15-day", NOW).delete == []


def test_pre_restore_older_than_seven_days_deleted() -> None:
    fresh = make("pre-restore", 3, n=1)
    stale = make("pre-restore", 8, n=2)
    newest = make("24-hour", 0.5)
    result = plan([fresh, stale, newest], "24-hour", NOW)
    assert result.delete == [stale]
    assert fresh in result.keep


def test_newest_good_backup_never_deleted_even_if_old() -> None:
    only = make("pre-restore", 400)
    result = plan([only], "15-day", NOW)
    assert result.keep == [only]
    assert "newest good" in result.reasons[only.file]


def test_known_bad_is_kept_and_newest_good_is_the_next_one() -> None:
    bad = make("manual", 100, n=1)
    good = make("manual", 200, n=2)
    result = plan([bad, good], "15-day", NOW, known_bad={bad.file})
    assert result.delete == []
    assert "known bad" in result.reasons[bad.file]
    assert "newest good" in result.reasons[good.file]


def test_corrupt_newest_never_costs_the_older_good_backup() -> None:
    """The hostile round's case: a corrupt newest backup and an older good one."""
    corrupt = make("24-hour", 0.5, n=1)
    good_older = make("24-hour", 1.5, n=2)
    older = series("24-hour", 20, 1.0, start=2.5)
    entries = [corrupt, good_older, *older]
    result = plan(entries, "24-hour", NOW, known_bad={corrupt.file}, known_good={good_older.file})
    assert corrupt in result.keep
    assert good_older in result.keep
    assert "newest good" in result.reasons[good_older.file]
    assert result.delete  # the pool rules still apply below the newest good backup


def test_nothing_is_deleted_while_no_backup_is_known_good() -> None:
    entries = series("24-hour", 30, 1.0)
    result = plan(entries, "24-hour", NOW, known_good=set())
    assert result.delete == []
    assert all("nothing is deleted" in r for r in result.reasons.values())


def test_unverified_backups_newer_than_the_newest_good_are_kept_and_not_counted() -> None:
    n = keep_last("7-day")
    fresh = [make("7-day", 0.1 + i * 0.1, n=100 + i) for i in range(3)]  # not verified yet
    verified = make("7-day", 1.0, n=1)
    older = series("7-day", n + 3, 7.0, start=2.0)
    result = plan([*fresh, verified, *older], "7-day", NOW, known_good={verified.file})
    assert set(fresh) <= set(result.keep)
    assert all("kept until verified" in result.reasons[e.file] for e in fresh)
    # the unverified ones do not push verified-era backups out: keep_last counts from `verified`
    assert files(result.keep) == files([*fresh, verified, *older[: n - 1]])


def test_held_is_never_deleted_and_does_not_count() -> None:
    n = keep_last("3-day")
    held = make("3-day", 0.2, held=True)
    entries = [held, *series("3-day", n + 1, 3.0)]
    result = plan(entries, "3-day", NOW)
    assert held in result.keep
    assert "held" in result.reasons[held.file]
    # the held one is outside the pool: exactly one unheld beyond the count goes
    assert len(result.delete) == 1


def test_incomplete_listing_deletes_nothing() -> None:
    entries = [*series("24-hour", 30, 1.0), make("manual", 90, n=99)]
    result = plan(entries, "24-hour", NOW, listing_complete=False)
    assert result.delete == []
    assert len(result.keep) == len(entries)
    assert all("incomplete" in r for r in result.reasons.values())


def test_unknown_label_kept() -> None:
    odd = Entry("weekly_x.gz.enc", "weekly", NOW - timedelta(days=500))
    result = plan([make("24-hour", 1), odd], "24-hour", NOW)
    assert odd in result.keep


def test_active_frequency_must_be_scheduled() -> None:
    with pytest.raises(ConfigError, match="not a schedule"):
        plan([], "manual", NOW)
    with pytest.raises(ConfigError, match="unknown frequency"):
        plan([], "hourly", NOW)


def test_empty_catalog() -> None:
    result: RetentionPlan[Entry] = plan([], "15-day", NOW)
    assert result.keep == []
    assert result.delete == []
    assert result.reasons == {}


# --- invariants over any catalog -------------------------------------------------------

entry_strategy = st.builds(
    Entry,
    file=st.uuids().map(lambda u: f"{u.hex}.gz.enc"),
    frequency=st.sampled_from(policy.ALL_LABELS),
    taken_at=st.integers(min_value=0, max_value=400 * 24).map(lambda h: NOW - timedelta(hours=h)),
    held=st.integers(min_value=0, max_value=5).map(lambda n: n == 0),
)


@settings(max_examples=300, deadline=None)
@given(
    entries=st.lists(entry_strategy, max_size=60, unique_by=lambda e: e.file),
    active=st.sampled_from(policy.SCHEDULED_LABELS),
    complete=st.booleans(),
    bad_fraction=st.integers(min_value=0, max_value=3),
    verified_every=st.integers(min_value=0, max_value=4),
)
def test_invariants(
    entries: list[Entry], active: str, complete: bool, bad_fraction: int, verified_every: int
) -> None:
    bad = {e.file for i, e in enumerate(entries) if bad_fraction and i % (bad_fraction + 2) == 0}
    result = plan(entries, active, NOW, listing_complete=complete, known_bad=bad)
    kept, deleted = files(result.keep), files(result.delete)
    # a partition of the input, with a reason for each
    assert kept | deleted == files(entries)
    assert not kept & deleted
    assert set(result.reasons) == files(entries)
    # never: the newest good, a held one, a known-bad one, anything on a partial listing
    good = sorted((e for e in entries if e.file not in bad), key=lambda e: (e.taken_at, e.file))
    if good:
        assert good[-1].file in kept
    assert not any(e.held for e in result.delete)
    assert not deleted & bad
    if not complete:
        assert not deleted
    # scheduled backups kept (outside the protected ones) never exceed the active keep
    protected = {e.file for e in entries if e.held or e.file in bad}
    if good:
        protected.add(good[-1].file)
    sched_kept = [
        e
        for e in result.keep
        if policy.FREQUENCIES[e.frequency].scheduled and e.file not in protected
    ]
    if complete:
        assert len(sched_kept) <= keep_last(active)
    # deleting is monotone in age: no kept unprotected scheduled backup is older than a
    # deleted scheduled one
    sched_deleted = [e for e in result.delete if policy.FREQUENCIES[e.frequency].scheduled]
    if sched_kept and sched_deleted:
        assert min(e.taken_at for e in sched_kept) >= max(e.taken_at for e in sched_deleted)
    # with verification results: nothing is deleted unless a newer known-good backup is kept
    verified = (
        {e.file for i, e in enumerate(entries) if i % verified_every == 0}
        if verified_every
        else set()
    )
    checked = plan(entries, active, NOW, known_bad=bad, known_good=verified)
    assert files(checked.keep) | files(checked.delete) == files(entries)
    for gone in checked.delete:
        assert any(
            e.file in verified - bad and (e.taken_at, e.file) > (gone.taken_at, gone.file)
            for e in checked.keep
        ), gone
