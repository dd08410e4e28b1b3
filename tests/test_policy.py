"""The frequency table is exactly the product's documentation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from daai_backup import policy
from daai_backup.errors import ConfigError


def test_table_matches_the_documentation() -> None:
    rows = {
        label: (f.interval, f.production_allowed, f.retention.keep_last)
        for label, f in policy.FREQUENCIES.items()
        if f.scheduled
    }
    assert rows == {
        "monthly": (timedelta(days=30), True, 12),
        "15-day": (timedelta(days=15), True, 12),
        "7-day": (timedelta(days=7), True, 8),
        "3-day": (timedelta(days=3), True, 10),
        "24-hour": (timedelta(hours=24), True, 14),
        "daily": (timedelta(days=1), False, 7),
    }
    manual = policy.FREQUENCIES["manual"].retention
    assert (manual.max_age, manual.keep_at_least) == (timedelta(days=30), 3)
    assert policy.FREQUENCIES["pre-restore"].retention.max_age == timedelta(days=7)
    assert policy.DEFAULT_FREQUENCY == "15-day"


def test_daily_is_sandbox_only() -> None:
    assert policy.scheduled_frequency("daily", "sandbox").label == "daily"
    with pytest.raises(ConfigError, match="sandbox workspaces only"):
        policy.scheduled_frequency("daily", "production")


def test_unknown_label_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="use one of monthly, 15-day"):
        policy.frequency("weekly")
