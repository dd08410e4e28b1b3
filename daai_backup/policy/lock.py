"""How long S3 Object Lock keeps a backup: until the end of its planned retention.

- A count rule (``keep_last`` N of a schedule every I): the backup leaves the newest N once N
  newer ones exist, so the longest the rule keeps it on schedule is ``taken_at + N x I``.
- An age rule (``max_age``): ``taken_at + max_age``. Its floor (``keep_at_least``) may keep a
  backup longer; the lock then has ended and retention decides, as without a lock.

A lock is a minimum, never a promise to delete: a backup retention would delete earlier
(the tenant changed schedule, a newer backup failed verification...) is kept until its date
and the retention run says so.
"""

from __future__ import annotations

from datetime import datetime

from daai_backup.policy import frequency


def retain_until(label: str, taken_at: datetime) -> datetime:
    """The end of the planned retention of a ``label`` backup taken at ``taken_at``."""
    row = frequency(label)
    rule = row.retention
    if rule.keep_last is not None and row.interval is not None:
        return taken_at + row.interval * rule.keep_last
    assert rule.max_age is not None
    return taken_at + rule.max_age
