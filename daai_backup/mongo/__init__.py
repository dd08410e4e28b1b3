"""The MongoDB engine: snapshot dump to a mongodump archive, staged restore from one.

No Prefect here. Streams are plain binary file-likes carrying the *uncompressed* archive;
gzip and encryption are layered on by the caller.
"""

from daai_backup.mongo.archive_format import (
    ArchiveEvent,
    ArchiveHeader,
    ArchiveReader,
    CollectionMetadata,
    DocumentBatch,
    NamespaceEnd,
    read_archive,
)
from daai_backup.mongo.dump import CollectionStats, DumpProgress, DumpResult, dump_database
from daai_backup.mongo.restore import (
    RestoredCollection,
    RestoreProgress,
    RestoreResult,
    finish_interrupted_restore,
    interrupted_restore,
    restore_database,
)

__all__ = [
    "ArchiveEvent",
    "ArchiveHeader",
    "ArchiveReader",
    "CollectionMetadata",
    "CollectionStats",
    "DocumentBatch",
    "DumpProgress",
    "DumpResult",
    "NamespaceEnd",
    "RestoreProgress",
    "RestoreResult",
    "RestoredCollection",
    "dump_database",
    "finish_interrupted_restore",
    "interrupted_restore",
    "read_archive",
    "restore_database",
]
