"""The per-tenant storage quota: checked before a backup is written.

Sizes in this product are decimal: 1 MB = 1,000,000 bytes (as shown in the backup list), so
``storage_quota_mb = 500`` allows 500,000,000 bytes under the tenant's storage root. The
bytes used are everything the storage holds there (``BackupFolder.usage_bytes``, i.e.
``Storage.space_used``): backups, side files, and what killed writes left until it is swept.
Quotas are configured and shown in whole MB; sizes used, free and needed are shown like the
backup list's (:func:`~daai_backup.repository.catalog.human_size`: ``512 B``, ``12.4 kB``,
``1.2 GB``), so a small tenant does not read ``0.0 MB``.
"""

from __future__ import annotations

from dataclasses import dataclass

from daai_backup.errors import QuotaExceeded
from daai_backup.repository.catalog import human_size

MB = 1_000_000


def check_quota(used_bytes: int, expected_bytes: int, quota_mb: int | None) -> None:
    """Raise QuotaExceeded if ``expected_bytes`` more would not fit; no quota means no limit."""
    if quota_mb is None:
        return
    quota_bytes = quota_mb * MB
    if used_bytes + expected_bytes <= quota_bytes:
        return
    free = max(0, quota_bytes - used_bytes)
    raise QuotaExceeded(
        f"backup would not fit in the storage quota: it needs about {human_size(expected_bytes)}, "
        f"the tenant already uses {human_size(used_bytes)} of its {quota_mb:,} MB "
        f"({human_size(free)} free); delete old manual backups or raise storage_quota_mb"
    )


@dataclass(frozen=True)
class QuotaReport:
    """How much of its quota a tenant uses; ``quota_bytes`` None means unlimited.

    ``outside_quota_bytes`` is stored but not counted (pre-restore safety backups).
    """

    used_bytes: int
    quota_bytes: int | None
    outside_quota_bytes: int = 0

    @classmethod
    def from_quota_mb(
        cls, used_bytes: int, quota_mb: int | None, *, outside_quota_bytes: int = 0
    ) -> QuotaReport:
        return cls(used_bytes, None if quota_mb is None else quota_mb * MB, outside_quota_bytes)

    @property
    def percent(self) -> float | None:
        """Used share of the quota in percent (may pass 100); None without a quota."""
        if self.quota_bytes is None:
            return None
        if self.quota_bytes == 0:
            return 100.0 if self.used_bytes == 0 else float("inf")
        return 100.0 * self.used_bytes / self.quota_bytes

    @property
    def free_bytes(self) -> int | None:
        if self.quota_bytes is None:
            return None
        return max(0, self.quota_bytes - self.used_bytes)

    def describe(self) -> str:
        """One line for `usage`, e.g. ``123.4 MB of 500 MB (24.7%, 376.6 MB free)``."""
        if self.quota_bytes is None or self.free_bytes is None:
            line = f"{human_size(self.used_bytes)} (no quota)"
        else:
            line = (
                f"{human_size(self.used_bytes)} of {self.quota_bytes / MB:,.0f} MB "
                f"({self.percent:.1f}%, {human_size(self.free_bytes)} free)"
            )
        if self.outside_quota_bytes:
            outside = human_size(self.outside_quota_bytes)
            line += f", plus {outside} of safety backups outside the quota"
        return line
