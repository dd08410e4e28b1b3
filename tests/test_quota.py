"""The storage quota check and the usage report."""

from __future__ import annotations

import pytest

from daai_backup.errors import QuotaExceeded, StorageError
from daai_backup.quota import MB, QuotaReport, check_quota


def test_no_quota_means_no_limit() -> None:
    check_quota(10**15, 10**15, None)


def test_fits_exactly() -> None:
    check_quota(400 * MB, 100 * MB, 500)


def test_exceeding_names_the_figures_and_the_remedy() -> None:
    with pytest.raises(QuotaExceeded) as excinfo:
        check_quota(450 * MB, 120_500_000, 500)
    message = str(excinfo.value)
    assert "120.5 MB" in message  # expected
    assert "450.0 MB" in message  # used
    assert "500 MB" in message  # quota
    assert "50.0 MB free" in message
    assert "delete old manual backups" in message
    assert "storage_quota_mb" in message
    assert "\n" not in message
    assert isinstance(excinfo.value, StorageError)
    assert not excinfo.value.transient


def test_already_over_quota_shows_zero_free() -> None:
    with pytest.raises(QuotaExceeded, match=r"\(0\.0 MB free\)"):
        check_quota(600 * MB, 1, 500)


def test_report() -> None:
    report = QuotaReport.from_quota_mb(123_400_000, 500)
    assert report.quota_bytes == 500 * MB
    assert report.percent == pytest.approx(24.68)
    assert report.free_bytes == 376_600_000
    assert report.describe() == "123.4 MB of 500 MB (24.7%)"
    unlimited = QuotaReport(5 * MB, None)
    assert unlimited.percent is None
    assert unlimited.free_bytes is None
    assert unlimited.describe() == "5.0 MB (no quota)"
    assert QuotaReport(600 * MB, 500 * MB).percent == pytest.approx(120.0)
