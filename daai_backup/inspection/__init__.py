"""Looking inside backups without touching the live database: ``diff`` and ``find``.

Modules, from the bottom up:

- ``raw_ids``: a raw BSON document's ``_id``, read without decoding the document;
- ``sources``: a stored backup (folder -> DBK1 or legacy -> gunzip -> archive reader) or
  the live database as a stream of ``(collection, raw documents)``, with each collection's
  metadata; the read permission (``restore``);
- ``diff``: two snapshots compared collection by collection, streamed, memory bounded by
  the documents of one collection (the bound is stated in the module);
- ``find``: ``field=value`` queries and a document's versions across snapshots;
- ``calls``: the engine calls the CLI and the flows use (:func:`diff_backups`,
  :func:`find_versions`).

Nothing here writes: no lease, no file, no collection.
"""

from daai_backup.inspection.calls import diff_backups, find_versions, select_snapshots
from daai_backup.inspection.diff import CollectionDiff, SnapshotDiff, diff_snapshots
from daai_backup.inspection.find import Condition, FindResult, Version, parse_where
from daai_backup.inspection.sources import LIVE, ArchiveSnapshot, LiveSnapshot, require_reader

__all__ = [
    "LIVE",
    "ArchiveSnapshot",
    "CollectionDiff",
    "Condition",
    "FindResult",
    "LiveSnapshot",
    "SnapshotDiff",
    "Version",
    "diff_backups",
    "diff_snapshots",
    "find_versions",
    "parse_where",
    "require_reader",
    "select_snapshots",
]
