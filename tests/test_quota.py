"""The storage quota check and the usage report."""

from __future__ import annotations

import pytest

from daai_backup.errors import QuotaExceeded, StorageError
from daai_backup.repository.quota import MB, QuotaReport, check_quota


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
    with pytest.raises(QuotaExceeded, match=r"\(0 B free\)"):
        check_quota(600 * MB, 1, 500)


def test_report() -> None:
    report = QuotaReport.from_quota_mb(123_400_000, 500)
    assert report.quota_bytes == 500 * MB
    assert report.percent == pytest.approx(24.68)
    assert report.free_bytes == 376_600_000
    assert report.describe() == "123.4 MB of 500 MB (24.7%, 376.6 MB free)"
    unlimited = QuotaReport(5 * MB, None)
    assert unlimited.percent is None
    assert unlimited.free_bytes is None
    assert unlimited.describe() == "5.0 MB (no quota)"
    assert QuotaReport(600 * MB, 500 * MB).percent == pytest.approx(120.0)


def test_small_sizes_read_in_kb_not_as_zero_mb() -> None:
    # A young tenant's few kilobytes used to read "0.0 MB of 50 MB".
    assert (
        QuotaReport.from_quota_mb(12_345, 50).describe() == "12.3 kB of 50 MB (0.0%, 50.0 MB free)"
    )
    assert QuotaReport(512, None).describe() == "512 B (no quota)"
    safety = QuotaReport.from_quota_mb(2_000, 1, outside_quota_bytes=4_500).describe()
    assert (
        safety
        == "2.0 kB of 1 MB (0.2%, 998.0 kB free), plus 4.5 kB of safety backups outside the quota"
    )
    with pytest.raises(QuotaExceeded) as excinfo:
        check_quota(999_500, 2_048, 1)
    assert (
        "it needs about 2.0 kB, the tenant already uses 999.5 kB of its 1 MB (500 B free)"
        in str(excinfo.value)
    )
