"""The restore journal: the names the dump and the restore share, and the one check both make.

Kept apart from ``dump.py`` and ``restore.py`` so each can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.database import Database

from daai_backup.mongo.namespaces import RESERVED_PREFIX

#: The collection holding the restore's one journal document.
JOURNAL = f"{RESERVED_PREFIX}journal"
JOURNAL_ID = "restore"


def pending_swap(db: Database[Any]) -> Mapping[str, Any] | None:
    """The journal document if a restore of ``db`` stopped while swapping; None otherwise."""
    journal: Mapping[str, Any] | None = db.get_collection(JOURNAL).find_one({"_id": JOURNAL_ID})
    if journal is not None and journal.get("state") == "swapping":
        return journal
    return None
