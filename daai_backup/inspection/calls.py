"""The engine calls of ``daai-backup diff`` and ``find``: guards, then the streamed reads.

Both only read: nothing is written to the tenant's folder or database, no lease is taken
(a backup or retention of the tenant may run meanwhile), and reading needs the ``restore``
permission, since it shows what a restore would bring back. A file is read only through
the tenant's own listing, so a name of another tenant's backup is not found.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from contextlib import ExitStack, closing
from datetime import datetime
from typing import TYPE_CHECKING

from daai_backup.errors import QueryError
from daai_backup.inspection.diff import SnapshotDiff, diff_snapshots
from daai_backup.inspection.find import FindResult, SnapshotRef, find_in_snapshots, parse_where
from daai_backup.inspection.sources import (
    LIVE,
    LiveSnapshot,
    Snapshot,
    open_backup,
    require_reader,
)
from daai_backup.repository.names import BackupName

if TYPE_CHECKING:
    from daai_backup.operations import EngineContext
    from daai_backup.repository.catalog import BackupEntry
    from daai_backup.tenants import Tenant

SnapshotProgress = Callable[[int, int, str], None]
"""``progress(number, total, file)`` before each snapshot is read (1-based)."""


def diff_backups(
    ctx: EngineContext,
    tenant: Tenant,
    a: str,
    b: str,
    *,
    actor: str | None,
    show: int = 0,
) -> SnapshotDiff:
    """What differs from backup ``a`` to backup ``b`` (or ``"live"``: the live database).

    Refuses, before reading anything: an actor without ``restore``, a name that is not a
    backup file name, a file that is not one of this tenant's backups. Memory: see
    :mod:`daai_backup.inspection.diff`.
    """
    from daai_backup.operations import describe_backup

    require_reader(tenant, actor)
    if a == LIVE:
        raise QueryError(
            "the first snapshot of a diff must be a backup file name; `live` may be the second"
        )
    BackupName.parse(a)
    if b != LIVE:
        BackupName.parse(b)
    entry_a = describe_backup(ctx, tenant, a)
    entry_b = None if b == LIVE else describe_backup(ctx, tenant, b)
    with ExitStack() as stack:
        side_a = open_backup(ctx, tenant, entry_a, stack)
        side_b: Snapshot
        if entry_b is None:
            side_b = LiveSnapshot(ctx.mongo_client[tenant.database], order=list(side_a.collections))
        else:
            side_b = open_backup(ctx, tenant, entry_b, stack)
        return diff_snapshots(side_a, side_b, show=show)


def select_snapshots(
    ctx: EngineContext,
    tenant: Tenant,
    *,
    files: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[BackupEntry]:
    """The tenant's backups to read, newest first: ``files`` if given (each must be one of
    the tenant's), else every backup; taken within ``since``..``until`` (inclusive)."""
    from daai_backup.operations import describe_backup, list_backups

    for name in files:
        BackupName.parse(name)
    if files:
        chosen = {e.file: e for e in (describe_backup(ctx, tenant, f) for f in files)}
        entries = sorted(chosen.values(), key=lambda e: (e.taken_at, e.file), reverse=True)
    else:
        entries = list_backups(ctx, tenant)
    selected = [
        e
        for e in entries
        if (since is None or e.taken_at >= since) and (until is None or e.taken_at <= until)
    ]
    if not selected:
        within = " in that time range" if entries else ""
        raise QueryError(
            f"tenant {tenant.id!r} has no backups{within} to search: see "
            f"`daai-backup list --tenant {tenant.id}`"
        )
    return selected


def find_versions(
    ctx: EngineContext,
    tenant: Tenant,
    collection: str,
    where: Sequence[str],
    *,
    actor: str | None,
    files: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    progress: SnapshotProgress | None = None,
) -> FindResult:
    """Which of the tenant's snapshots hold documents of ``collection`` matching every
    ``field=value`` in ``where``, and how each version differs from the one before.

    Reads every selected snapshot once, oldest first (each up to the end of the collection
    only); ``progress`` is called before each. Refuses before reading: an actor without
    ``restore``, a malformed condition, a file that is not one of the tenant's backups.
    """
    require_reader(tenant, actor)
    if not collection or "\x00" in collection:
        raise QueryError("give the collection to search with --collection NAME")
    if not where:
        raise QueryError("give at least one --where field=value")
    conditions = [parse_where(w) for w in where]
    entries = select_snapshots(ctx, tenant, files=files, since=since, until=until)
    oldest_first = list(reversed(entries))

    def snapshots() -> Generator[tuple[SnapshotRef, Snapshot], None, None]:
        for number, entry in enumerate(oldest_first, start=1):
            if progress:
                progress(number, len(oldest_first), entry.file)
            with ExitStack() as stack:
                yield (
                    SnapshotRef(entry.file, entry.taken_at),
                    open_backup(ctx, tenant, entry, stack),
                )

    with closing(snapshots()) as stream:
        return find_in_snapshots(collection, conditions, stream)
