"""The MongoDB engine: snapshot dump to a mongodump archive, staged restore from one.

Modules: ``dump`` (archive out), ``restore`` (stage, then swap; or both), ``swap`` (the
journalled swap and finishing an interrupted one), ``journal``, ``namespaces`` (which names
are backed up, refused, staged), ``listing`` (the catalog and its changes), ``archive_format``,
``copies`` (restore copies: a backup loaded into a database of its own, its marker, expiry),
``replay`` (captured change events applied to a staged restore, up to a moment).

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
from daai_backup.mongo.listing import CatalogChange
from daai_backup.mongo.restore import (
    RestoredCollection,
    RestoreProgress,
    RestoreResult,
    StagedRestore,
    discard_staged,
    restore_database,
    stage_restore,
    swap_staged,
)
from daai_backup.mongo.swap import (
    clean_abandoned_restore,
    finish_interrupted_restore,
    interrupted_restore,
)

__all__ = [
    "ArchiveEvent",
    "ArchiveHeader",
    "ArchiveReader",
    "CatalogChange",
    "CollectionMetadata",
    "CollectionStats",
    "DocumentBatch",
    "DumpProgress",
    "DumpResult",
    "NamespaceEnd",
    "RestoreProgress",
    "RestoreResult",
    "RestoredCollection",
    "StagedRestore",
    "clean_abandoned_restore",
    "discard_staged",
    "dump_database",
    "finish_interrupted_restore",
    "interrupted_restore",
    "read_archive",
    "restore_database",
    "stage_restore",
    "swap_staged",
]
