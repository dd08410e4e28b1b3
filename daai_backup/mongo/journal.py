"""The restore journal: the one document the dump and the restore both read.

The collection ``__daai_restore.journal`` holds one document ``{_id: "restore", state, run,
...}`` while a restore of the database is under way:

- ``loading``: staging collections are being created, loaded, indexed and verified;
- ``staged``: the staged copy is verified and the swap plan is recorded (renames, views, the
  snapshot's names); the live database is still untouched;
- ``swapping``: the live database is being changed; a later run finishes the swap first.

The document is dropped when the swap is done. Kept apart from ``dump.py`` and ``restore.py``
so each can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.database import Database

from daai_backup.mongo.namespaces import RESERVED_PREFIX

#: The collection holding the restore's one journal document.
JOURNAL = f"{RESERVED_PREFIX}journal"
JOURNAL_ID = "restore"


def read_journal(db: Database[Any]) -> Mapping[str, Any] | None:
    """The journal document of ``db``, None when no restore is under way."""
    journal: Mapping[str, Any] | None = db.get_collection(JOURNAL).find_one({"_id": JOURNAL_ID})
    return journal


def pending_swap(db: Database[Any]) -> Mapping[str, Any] | None:
    """The journal document if a restore of ``db`` stopped while swapping; None otherwise."""
    journal = read_journal(db)
    if journal is not None and journal.get("state") == "swapping":
        return journal
    return None
