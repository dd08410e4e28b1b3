"""The engine calls the Prefect tasks and the CLI wrap: one function per user-visible action.

Each call composes the engine's pieces and holds no state of its own beyond an
:class:`EngineContext` (settings, tenant registry, one MongoDB client, storage folders)::

    backup:  MongoDB snapshot -> mongodump archive -> gzip -> DBK1 -> storage (atomic commit)
    restore: storage -> DBK1 (or legacy) -> gunzip -> archive -> staged restore -> verify -> swap
    verify:  storage -> DBK1 -> gunzip -> archive, every tag and CRC checked; no database

Everything streams: the dump runs in a producer thread that writes into a bounded pipe the
storage upload reads from, so memory stays flat whatever the database size. A failure on
either side fails both, and storage discards the partial object.

Guards that refuse bad input live in :func:`preflight_backup` and :func:`describe_backup` so
the flows can run them before taking locks or asking for confirmation.

What needs pymongo (the dump, the staged restore, the tenant lease) is imported by the calls
that use it: listing a tenant's backups on local storage (`daai-backup list`) then starts
without it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, cast

from daai_backup import policy
from daai_backup.errors import (
    ArchiveCorrupt,
    CopyRefused,
    DaaiBackupError,
    DatabaseError,
    KeyMissing,
    LeaseError,
    ManifestMismatch,
    MomentNotCovered,
    NotAnArchive,
    ObjectNotFound,
    QuotaExceeded,
    SubscriptionSuspended,
    WrongTenant,
)
from daai_backup.format.compression import open_gzip_reader, open_gzip_writer
from daai_backup.format.dbk1 import (
    ContentType,
    EncryptingWriter,
    check_name_binding,
    open_plaintext,
    read_header,
)
from daai_backup.policy.schedule_times import next_backup_time
from daai_backup.repository.catalog import BackupEntry
from daai_backup.repository.folder import BackupFolder, FolderListing, folder_for_tenant
from daai_backup.repository.manifest import ChangesFacts, Manifest, manifest_name, seal, unseal
from daai_backup.repository.names import BackupName, new_backup_name, validate_note
from daai_backup.repository.quota import MB, QuotaReport, check_quota
from daai_backup.repository.verification import VerificationRecord
from daai_backup.settings import Settings, load_settings
from daai_backup.streams import CountingReader, produce_into_pipe
from daai_backup.tenants import Tenant, TenantRegistry

if TYPE_CHECKING:
    from bson.timestamp import Timestamp
    from pymongo import MongoClient

    from daai_backup.fleet import FleetView, LastRun, TenantFacts
    from daai_backup.format.dbk1 import ArchiveHeader
    from daai_backup.format.keys import Keyring, MasterKey
    from daai_backup.lease import Lease, LeaseInfo
    from daai_backup.maintenance import MaintenanceRecord
    from daai_backup.moments import ChangeSource, MomentPlan, Snapshot
    from daai_backup.mongo import CatalogChange, DumpResult
    from daai_backup.mongo.copies import CopyInfo
    from daai_backup.mongo.replay import ReplayResult
    from daai_backup.rekey import KeyCensus, RekeyOutcome
    from daai_backup.repository.archive_facts import ArchiveFacts

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done_bytes, expected_bytes)``; ``expected_bytes`` is an estimate (0 if unknown)."""

# Until a tenant has a first backup, its compressed size is estimated from MongoDB's
# uncompressed dataSize; BSON business data compresses to well under half (bench/RESULTS.md).
FIRST_BACKUP_SIZE_RATIO = 0.5


class EngineContext:
    """Settings, the tenant registry and lazily made clients, shared by the engine calls."""

    def __init__(self, settings: Settings, registry: TenantRegistry) -> None:
        registry.check_storage_roots(settings.storage_url)
        registry.check_databases(settings.control_database)
        self.settings = settings
        self.registry = registry
        self._folders: dict[str, BackupFolder] = {}

    def tenant(self, tenant_id: str) -> Tenant:
        """The registered tenant; ``UnknownTenant`` otherwise."""
        return self.registry[tenant_id]

    def folder(self, tenant: Tenant) -> BackupFolder:
        """The tenant's own ``db-backups`` folder; nothing outside it is reachable through it.

        Roots never overlap between tenants (checked when the context is made). Made once
        per tenant and context: an S3 backend holds a boto3 client, which is costly to build.
        """
        folder = self._folders.get(tenant.id)
        if folder is None:
            try:
                keyring: Keyring | None = self.settings.keyring
            except DaaiBackupError:  # a malformed key: list from names; backups say why
                keyring = None
            folder = self._folders[tenant.id] = folder_for_tenant(
                tenant.id,
                tenant.storage_url,
                self.settings.storage_url,
                s3_endpoint_url=self.settings.s3_endpoint_url,
                keyring=keyring,
                object_lock=lock if (lock := self.settings.s3_object_lock) != "off" else None,
            )
        return folder

    @cached_property
    def mongo_client(self) -> MongoClient[dict[str, object]]:
        from pymongo import MongoClient

        return MongoClient(
            self.settings.mongodb_uri.get_secret_value(),
            serverSelectionTimeoutMS=10_000,
            appname="daai-backup",
        )

    def timezone(self, tenant: Tenant) -> str:
        return tenant.timezone or self.settings.timezone

    def exclusive(
        self, tenant: Tenant, operation: str, *, detail: str | None = None
    ) -> AbstractContextManager[Lease]:
        """The tenant's lease for ``operation`` (see :mod:`daai_backup.lease`).

        Every engine call that writes to a tenant's folder or database holds it, so one
        operation per tenant runs at a time whoever calls the engine (a flow, the CLI, a
        script). Re-entrant: a flow that already holds it (around a whole restore, say)
        nests its engine calls inside without a second document.
        """
        from daai_backup.lease import tenant_lease

        return tenant_lease(self.mongo_client, self.settings, tenant.id, operation, detail=detail)

    def close(self) -> None:
        if "mongo_client" in self.__dict__:
            self.mongo_client.close()
            del self.__dict__["mongo_client"]


def load_context(settings: Settings | None = None) -> EngineContext:
    """Read settings (environment and ``.env``) and the tenant registry they point at."""
    from daai_backup.tenant_sources import load_registry

    settings = settings or load_settings()
    return EngineContext(settings, load_registry(settings))


@dataclass(frozen=True)
class BackupOutcome:
    """What one backup wrote."""

    tenant_id: str
    entry: BackupEntry
    documents: int
    data_bytes: int
    consistency: str
    server_version: str
    duration_s: float
    collections: list[dict[str, object]] = field(default_factory=list)
    catalog_changes: list[str] = field(default_factory=list)
    """Collections created, dropped or altered while a best-effort backup ran, one line each
    (empty for a snapshot)."""
    consistent_at: tuple[int, int] | None = None
    """The cluster time a restore of the backup yields (None: best-effort)."""


@dataclass(frozen=True)
class RestoreOutcome:
    """What one restore changed."""

    tenant_id: str
    file: str
    collections: int
    documents: int
    views: int
    dropped: list[str]
    duration_s: float


@dataclass(frozen=True)
class VerifyOutcome:
    """One backup read whole, every authentication tag and CRC checked."""

    file: str
    encrypted: bool
    namespaces: int
    documents: int
    compressed_bytes: int
    duration_s: float


def estimate_backup_bytes(ctx: EngineContext, tenant: Tenant) -> int:
    """Expected compressed size: the newest backup's size, else a share of dataSize."""
    for entry in ctx.folder(tenant).entries():
        if entry.frequency not in (policy.PRE_RESTORE, policy.IMPORTED):
            return entry.size_bytes
    stats = ctx.mongo_client[tenant.database].command("dbStats")
    return int(float(stats.get("dataSize", 0)) * FIRST_BACKUP_SIZE_RATIO)


def _refuse_a_copy_as_live(ctx: EngineContext, tenant: Tenant) -> None:
    """A tenant onboarded onto a database that holds a restore copy (made before the tenant
    was registered) would back up another tenant's data as its own: refuse, naming whose
    copy it is and what to do."""
    from daai_backup.mongo.copies import read_copy

    copy = read_copy(ctx.mongo_client, tenant.database)
    if copy is not None:
        raise CopyRefused(
            f"database {tenant.database!r} of tenant {tenant.id!r} holds a restore copy made "
            f"for tenant {copy.tenant!r}, not {tenant.id}'s own data: give tenant "
            f"{tenant.id} another database in the registry, then drop the copy"
        )


def preflight_backup(
    ctx: EngineContext,
    tenant: Tenant,
    label: str,
    *,
    actor: str | None = None,
    note: str | None = None,
) -> int:
    """Refuse a backup that must not run; return the expected size in bytes.

    Order matters for the messages people see: suspended subscriptions are skipped before
    anything else, then the key, then permissions, then the quota. A pre-restore safety
    backup is never refused for room (see :func:`quota_report`): an emergency restore must
    not wait for someone to raise a quota.
    """
    row = policy.frequency(label)
    if tenant.subscription == "suspended":
        raise SubscriptionSuspended(
            f"tenant {tenant.id!r} has a suspended subscription: no backup taken; backups "
            "resume when the subscription is active again"
        )
    ctx.settings.keyring.require_current()
    if label == policy.MANUAL:
        tenant.require(actor, "create")
    elif row.scheduled:
        policy.scheduled_frequency(label, tenant.environment)
    validate_note(note)
    _refuse_a_copy_as_live(ctx, tenant)
    expected = estimate_backup_bytes(ctx, tenant)
    if label != policy.PRE_RESTORE:
        report = quota_report(ctx, tenant)
        check_quota(report.used_bytes, expected, tenant.storage_quota_mb)
    return expected


def quota_report(ctx: EngineContext, tenant: Tenant) -> QuotaReport:
    """What the tenant uses against its quota.

    Everything stored under the tenant's root counts (side files and what unfinished writes
    left behind included), except pre-restore safety backups: the product takes those on its
    own before every restore and deletes them after 7 days, so they may exceed the quota and
    never count against the tenant's other backups. They are reported apart.
    """
    folder = ctx.folder(tenant)
    safety = sum(e.size_bytes for e in folder.entries() if e.frequency == policy.PRE_RESTORE)
    used = folder.usage_bytes()
    return QuotaReport.from_quota_mb(
        max(0, used - safety), tenant.storage_quota_mb, outside_quota_bytes=safety
    )


def backup_tenant(
    ctx: EngineContext,
    tenant: Tenant,
    label: str,
    *,
    actor: str | None = None,
    note: str | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    expected_bytes: int = 0,
    on_catalog_change: Literal["raise", "record"] = "raise",
) -> BackupOutcome:
    """Take one full backup of the tenant's database into its folder; return its entry.

    ``on_catalog_change`` is passed to ``dump_database``: "raise" refuses a backup during
    which a collection was created, dropped or altered (transient: a retry may get a clean
    one); "record" keeps it as ``best-effort`` with the changes in its side file and outcome
    (the task passes it on its last attempt, so an app that refreshes a collection with
    ``$out`` all day still gets backed up).

    The object only becomes visible once complete. The quota is enforced while writing too:
    if the real size outgrows the room left, the upload stops and nothing is kept. Holds the
    tenant's lease, checked once the whole backup is written, right before storage commits
    it: a lease lost meanwhile (``LeaseLost``) keeps nothing.
    """
    with ctx.exclusive(tenant, "backup", detail=f"{label} backup") as lease:
        return _backup_tenant(
            ctx,
            tenant,
            label,
            actor=actor,
            note=note,
            progress=progress,
            now=now,
            expected_bytes=expected_bytes,
            checkpoint=lease.check,
            on_catalog_change=on_catalog_change,
        )


def _backup_tenant(
    ctx: EngineContext,
    tenant: Tenant,
    label: str,
    *,
    actor: str | None,
    note: str | None,
    progress: Progress | None,
    now: datetime | None,
    expected_bytes: int,
    checkpoint: Callable[[], None],
    on_catalog_change: Literal["raise", "record"],
) -> BackupOutcome:
    from daai_backup.mongo import dump_database
    from daai_backup.repository.archive_facts import facts_from_dump

    started = time.monotonic()
    master = ctx.settings.keyring.require_current()
    note = validate_note(note)
    name = new_backup_name(label, now or datetime.now(UTC), encrypted=True)
    folder = ctx.folder(tenant)
    client = ctx.mongo_client

    # The dump's start position: its change events after it make the backup one moment.
    from daai_backup.mongo import backup_changes

    start = backup_changes.position(client)

    def produce(sink: BinaryIO) -> DumpResult:
        with EncryptingWriter(
            sink,
            master,
            tenant.id,
            created_at=name.taken_at,
            name=name.filename,  # the final object name: readers refuse the file under another
            content_type=ContentType.BACKUP_ARCHIVE,
        ) as encrypted:
            gz = open_gzip_writer(cast(BinaryIO, encrypted))
            try:
                return dump_database(
                    client,
                    tenant.database,
                    gz,
                    on_catalog_change=on_catalog_change,
                    snapshot_window=ctx.settings.snapshot_window_seconds,
                )
            finally:
                gz.close()

    limit, on_limit = (None, None) if label == policy.PRE_RESTORE else _quota_limit(ctx, tenant)
    pipe, producer = produce_into_pipe(produce, name=f"backup-{tenant.id}")
    counted = CountingReader(
        pipe,
        on_progress=(lambda done: progress(done, expected_bytes)) if progress else None,
        limit=limit,
        on_limit=on_limit,
        on_end=checkpoint,
    )
    try:
        # No plaintext side file: the note lives in the manifest, encrypted.
        info = folder.write(name, cast(BinaryIO, counted))
    finally:
        pipe.close()
    dump = producer.result()
    try:
        consistency, consistent_at, facts = _make_consistent(
            ctx, tenant, name.filename, dump, start, master
        )
    except BaseException:
        with contextlib.suppress(DaaiBackupError):
            folder.delete(name.filename)
        raise
    changes = [_describe_change(c) for c in dump.catalog_changes]
    if changes:
        logger.warning(
            "backup %s of %s is best-effort: the catalog changed while it ran (%s)",
            name.filename,
            tenant.id,
            "; ".join(changes),
        )
    manifest = Manifest(
        tenant=tenant.id,
        file=name.filename,
        label=name.frequency,
        taken_at=name.taken_at,
        cluster_time=dump.cluster_time,
        actor=actor,
        note=note,
        key_fingerprint=master.fingerprint,
        stored_bytes=info.size,
        plain_bytes=dump.plain_bytes,
        data_bytes=dump.total_bytes,
        documents=dump.total_documents,
        consistency=consistency,
        server_version=dump.server_version,
        source="backup",
        catalog_changes=tuple(changes),
        namespaces=facts_from_dump(dump),
        consistent_at=consistent_at,
        changes=facts,
    )
    try:
        folder.put_manifest(name.filename, seal(manifest, master))
    except BaseException:
        # All or nothing: a backup without the manifest it was written with would make a
        # retry (transient errors are retried) leave a second backup behind.
        with contextlib.suppress(DaaiBackupError):
            folder.delete(name.filename)
        raise
    return BackupOutcome(
        tenant_id=tenant.id,
        entry=BackupEntry.from_name(name, info.size, note=note),
        documents=dump.total_documents,
        data_bytes=dump.total_bytes,
        consistency=consistency,
        server_version=dump.server_version,
        duration_s=time.monotonic() - started,
        consistent_at=consistent_at,
        collections=[
            {"name": c.name, "type": c.type, "documents": c.documents, "bytes": c.bytes}
            for c in dump.collections
        ],
        catalog_changes=changes,
    )


def _make_consistent(
    ctx: EngineContext,
    tenant: Tenant,
    filename: str,
    dump: DumpResult,
    start: Timestamp | None,
    master: MasterKey,
) -> tuple[str, tuple[int, int] | None, ChangesFacts | None]:
    """(consistency, consistent_at, changes) of a written dump; stores ``<file>.changes``.

    - "snapshot": every read answered at the snapshot's time; the archive alone is the
      database at ``consistent_at`` (= ``cluster_time``), no changes stored.
    - "consistent": the reads answered at different times (a server that does not hold
      snapshots, a dump longer than the snapshot window); the database's change events from
      the position noted before the dump up to the end of it are stored beside the backup,
      and a restore replays them: the database at ``consistent_at`` (the end of the dump).
    - "best-effort": neither could be made (no change streams: a standalone; or the catalog
      changed during the dump, recorded).
    """
    from bson.timestamp import Timestamp

    from daai_backup.mongo import backup_changes
    from daai_backup.repository.dump_changes import seal_changes

    if dump.consistency == "snapshot" and not dump.torn:
        return "snapshot", dump.cluster_time, None
    if start is None or dump.catalog_changes or dump.read_times is None:
        return "best-effort", None, None
    until = backup_changes.position(ctx.mongo_client)
    if until is None:
        return "best-effort", None, None
    latest = Timestamp(*dump.read_times[1])
    until = max(until, latest)
    got = backup_changes.collect(ctx.mongo_client, tenant.database, start, until)
    facts, sealed = seal_changes(master, tenant.id, filename, (start.time, start.inc), got.events)
    ctx.folder(tenant).put_changes(filename, sealed)
    logger.info(
        "backup %s of %s read at several cluster times: %d change events up to %s stored "
        "with it, a restore replays them",
        filename,
        tenant.id,
        len(got.events),
        until,
    )
    return "consistent", (until.time, until.inc), facts


@dataclass(frozen=True)
class ImportOutcome:
    """What one import stored."""

    tenant_id: str
    entry: BackupEntry
    manifest: Manifest
    source_database: str | None
    duration_s: float


def import_archive(
    ctx: EngineContext,
    tenant: Tenant,
    source: BinaryIO,
    *,
    actor: str | None,
    note: str | None = None,
    what: str = "the file",
    size_hint: int = 0,
    now: datetime | None = None,
) -> ImportOutcome:
    """Add a ``mongodump --archive`` file (gzipped or not, of any one database) to the
    tenant's backups, encrypted, labelled ``imported``, with its manifest.

    One pass over ``source``: every byte read is checked by the archive reader (framing,
    every namespace's CRC, an EOF block for each) and written on, gzipped and encrypted, to
    storage; the object is committed only after the archive's end was read and found
    complete, so a file that is not an archive, or is truncated, stores nothing
    (``NotAnArchive``, one line naming ``what``). A restore loads the archive's one
    database, whatever its name, into the tenant's database; an archive of several
    databases, or with a collection name a restore refuses, is refused here.

    Refused first: an actor without ``create``, a suspended subscription, no key, and a file
    that does not fit in the quota (``size_hint``, the file's size, is checked before the
    read; the real size is enforced while writing). Holds the tenant's lease, checked right
    before the commit; all or nothing with the manifest, as a backup.
    """
    from daai_backup.mongo.namespaces import check_collection_name
    from daai_backup.repository.archive_facts import (
        TeeReader,
        check_one_database,
        open_mongodump,
        read_facts,
    )

    started = time.monotonic()
    tenant.require(actor, "create")
    if tenant.subscription == "suspended":
        raise SubscriptionSuspended(
            f"tenant {tenant.id!r} has a suspended subscription: nothing imported; import "
            "when the subscription is active again"
        )
    master = ctx.settings.keyring.require_current()
    note = validate_note(note)
    folder = ctx.folder(tenant)
    with ctx.exclusive(tenant, "import", detail=what) as lease:
        check_quota(quota_report(ctx, tenant).used_bytes, size_hint, tenant.storage_quota_mb)
        name = new_backup_name(policy.IMPORTED, now or datetime.now(UTC), encrypted=True)

        def produce(sink: BinaryIO) -> ArchiveFacts:
            with EncryptingWriter(
                sink,
                master,
                tenant.id,
                created_at=name.taken_at,
                name=name.filename,
                content_type=ContentType.BACKUP_ARCHIVE,
            ) as encrypted:
                gz = open_gzip_writer(cast(BinaryIO, encrypted))
                try:
                    plain = open_mongodump(source, what)
                    facts = read_facts(cast(BinaryIO, TeeReader(plain, gz)))
                    check_one_database(facts, what)
                    for ns in facts.namespaces:
                        check_collection_name(
                            tenant.database, ns.name, timeseries=ns.kind == "timeseries"
                        )
                finally:
                    gz.close()
            return facts

        limit, on_limit = _quota_limit(ctx, tenant)
        pipe, producer = produce_into_pipe(produce, name=f"import-{tenant.id}")
        counted = CountingReader(pipe, limit=limit, on_limit=on_limit, on_end=lease.check)
        try:
            try:
                info = folder.write(name, cast(BinaryIO, counted))
            finally:
                pipe.close()
            facts = producer.result()
        except (ArchiveCorrupt, NotAnArchive) as exc:
            raise NotAnArchive(
                f"{what} cannot be imported: {_sentence(exc)}; nothing was stored"
            ) from exc
        manifest = Manifest(
            tenant=tenant.id,
            file=name.filename,
            label=name.frequency,
            taken_at=name.taken_at,
            cluster_time=None,
            actor=actor,
            note=note,
            key_fingerprint=master.fingerprint,
            stored_bytes=info.size,
            plain_bytes=facts.plain_bytes,
            data_bytes=facts.data_bytes,
            documents=facts.documents,
            consistency="unknown",
            server_version=facts.server_version or "unknown",
            source="archive",
            namespaces=facts.namespaces,
        )
        try:
            folder.put_manifest(name.filename, seal(manifest, master))
        except BaseException:
            with contextlib.suppress(DaaiBackupError):
                folder.delete(name.filename)
            raise
    return ImportOutcome(
        tenant_id=tenant.id,
        entry=BackupEntry.from_name(name, info.size, note=note),
        manifest=manifest,
        source_database=next(iter(facts.databases), None),
        duration_s=time.monotonic() - started,
    )


def _sentence(exc: BaseException) -> str:
    """An error's message as a clause: without a trailing period or a closing advice."""
    text = str(exc).rstrip(".")
    return text.removesuffix(": use another backup")


def _describe_change(change: CatalogChange) -> str:
    """'daily_report: changed (uuid)' / 'tmp: new' / 'old: gone'."""
    what = f" ({', '.join(change.what)})" if change.what else ""
    return f"{change.collection}: {change.change}{what}"


def _quota_limit(
    ctx: EngineContext, tenant: Tenant
) -> tuple[int | None, Callable[[int], BaseException] | None]:
    report = quota_report(ctx, tenant)
    if report.free_bytes is None:
        return None, None

    def over(written: int) -> BaseException:
        return QuotaExceeded(
            f"backup of tenant {tenant.id!r} stopped at {written / MB:,.1f} MB: it does not fit "
            f"in the storage quota ({report.describe()}); nothing was kept. Delete old manual "
            "backups or raise storage_quota_mb"
        )

    return report.free_bytes, over


def list_backups(ctx: EngineContext, tenant: Tenant) -> list[BackupEntry]:
    """The tenant's backups, newest first (held ones included)."""
    return ctx.folder(tenant).entries()


def folder_listing(ctx: EngineContext, tenant: Tenant) -> FolderListing:
    """The tenant's backups and what else is in its folder (strays, backups without a
    manifest), from one storage listing plus the listing index (see ``BackupFolder.listing``)."""
    return ctx.folder(tenant).listing()


def describe_backup(ctx: EngineContext, tenant: Tenant, filename: str) -> BackupEntry:
    """The entry of ``filename`` if it is one of this tenant's backups; refuse anything else.

    One HEAD request, never a listing: the entry carries name, size and encryption (its note
    and hold are in :func:`list_backups`).
    """
    BackupName.parse(filename)  # refuses paths, traversal and odd names with InvalidName
    try:
        return ctx.folder(tenant).lookup(filename)
    except ObjectNotFound:
        raise ObjectNotFound(
            f"{filename!r} is not a backup of tenant {tenant.id!r}: pick a file from "
            f"`daai-backup list --tenant {tenant.id}`"
        ) from None


def read_backup_header(ctx: EngineContext, tenant: Tenant, filename: str) -> ArchiveHeader | None:
    """The DBK1 header of a backup (None for legacy plaintext); needs no key.

    A file named as encrypted whose content is plain gzip is refused (``ArchiveCorrupt``), and
    so is a header that names another file (``NameMismatch``: a renamed or copied backup).
    """
    return _header_of(ctx, tenant, describe_backup(ctx, tenant, filename))


def _header_of(ctx: EngineContext, tenant: Tenant, entry: BackupEntry) -> ArchiveHeader | None:
    with ctx.folder(tenant).open(entry.file) as source:
        header = read_header(source)
    if header is None and entry.encrypted:
        raise ArchiveCorrupt(
            f"{entry.file!r} is named as encrypted but holds plain gzip: it was replaced or "
            "altered; use another backup"
        )
    if header is not None:
        check_name_binding(header, entry.file)
    return header


def check_key_can_read(ctx: EngineContext, tenant: Tenant, filename: str) -> None:
    """Refuse early when the configured keys cannot read the backup (legacy needs none).

    Also refuses (through :func:`read_backup_header`) a backup stored under a name its header
    disagrees with, so a renamed copy fails before any safety backup is taken. The first
    segment is decrypted too: that authenticates the whole header (it is the segment key's
    HKDF info), so an edited header fails here as well, not after the safety backup.
    """
    header = read_backup_header(ctx, tenant, filename)
    if header is None:
        return
    if header.tenant_id != tenant.id:
        raise WrongTenant(
            f"{filename!r} was made for tenant {header.tenant_id!r}, not {tenant.id!r}: "
            "it cannot be restored here"
        )
    ctx.settings.keyring.find(header.key_fingerprint)
    with ctx.folder(tenant).open(filename) as source:
        plain = open_plaintext(source, ctx.settings.keyring, tenant.id, name=filename)
        plain.read(1)


def preflight_restore(
    ctx: EngineContext, tenant: Tenant, filename: str, *, actor: str | None
) -> BackupEntry:
    """Refuse a restore that must not start, before anyone is asked to confirm it.

    In order: the actor's ``restore`` permission; the file is one of this tenant's backups;
    the tenant can take the pre-restore safety backup (active subscription, a current key:
    a restore never runs without its safety backup, and that backup is always encrypted,
    so even a legacy plaintext backup needs the key to be restored); and the configured
    keys can read the file, whose header must name it (:func:`check_key_can_read`).
    Returns the backup's entry.
    """
    tenant.require(actor, "restore")
    entry = describe_backup(ctx, tenant, filename)
    if tenant.subscription == "suspended":
        raise SubscriptionSuspended(
            f"tenant {tenant.id!r} has a suspended subscription: a restore first takes a "
            "safety backup, which is not allowed while suspended; reactivate it, then restore"
        )
    if ctx.settings.keyring.current is None:
        raise KeyMissing(
            "BACKUP_ENCRYPTION_KEY is not set: every restore first takes an encrypted safety "
            "backup of the live database (also to restore a legacy unencrypted backup); set "
            "the key (`daai-backup keygen` makes one), then run the restore again"
        )
    check_key_can_read(ctx, tenant, filename)
    return entry


@dataclass(frozen=True)
class StagedOutcome:
    """A backup loaded and verified in staging inside the tenant's database, not yet live."""

    tenant_id: str
    file: str
    run: str
    collections: int
    documents: int
    duration_s: float
    replayed_events: int = 0  # change events replayed onto it (a restore to a moment)


def stage_restore(
    ctx: EngineContext,
    tenant: Tenant,
    filename: str,
    *,
    progress: Progress | None = None,
) -> StagedOutcome:
    """Load one of the tenant's backups into staging collections and verify it whole.

    Nothing live changes: :func:`swap_restore` puts the staged copy in place, and
    :func:`discard_restore` drops it. A corrupt, truncated or foreign archive fails here.
    """
    from daai_backup.mongo import stage_restore as _stage_restore

    started = time.monotonic()
    entry = describe_backup(ctx, tenant, filename)
    folder = ctx.folder(tenant)
    with ctx.exclusive(tenant, "restore", detail=filename), folder.open(filename) as stored:
        counted = CountingReader(
            stored,
            on_progress=(lambda done: progress(done, entry.size_bytes)) if progress else None,
        )
        plain = open_plaintext(
            cast(BinaryIO, counted),
            ctx.settings.keyring,
            tenant.id,
            name=filename,
            encrypted=entry.encrypted,
        )
        archive = open_gzip_reader(plain)
        staged = _stage_restore(ctx.mongo_client, tenant.database, archive)
        outcome = StagedOutcome(
            tenant_id=tenant.id,
            file=filename,
            run=staged.run,
            collections=len(staged.collections),
            documents=staged.total_documents,
            duration_s=time.monotonic() - started,
        )
        outcome = _replay_dump_changes(ctx, tenant, outcome)
    return outcome


def _replay_dump_changes(
    ctx: EngineContext, tenant: Tenant, staged: StagedOutcome
) -> StagedOutcome:
    """Replay the change events stored with a "consistent" backup onto its staged dump in
    the tenant's database (:func:`_replay_backup_changes`); a failure drops the staged copy."""
    from daai_backup.mongo import discard_staged

    try:
        result = _replay_backup_changes(ctx, tenant, staged.file, tenant.database, staged.run)
    except BaseException:
        discard_staged(ctx.mongo_client, tenant.database, staged.run)
        raise
    if result is None:
        return staged
    return replace(
        staged,
        collections=result.collections,
        documents=result.documents,
        replayed_events=result.applied,
    )


def _replay_backup_changes(
    ctx: EngineContext, tenant: Tenant, filename: str, database: str, run: str
) -> ReplayResult | None:
    """Replay the change events stored with a "consistent" backup (``<file>.changes``) onto
    its dump staged as ``run`` in ``database``, up to the moment the backup is consistent at
    (the end of the dump); nothing live changes. None for a backup without them.

    The one path for every load of a backup: a restore (``database`` is the tenant's) and a
    restore copy (``database`` is the copy's: the events are the tenant database's, so their
    namespaces are moved to it). ``replay_staged`` drops the staging when the replay fails.
    """
    import bson
    from bson.timestamp import Timestamp

    from daai_backup.mongo.replay import replay_staged
    from daai_backup.repository.dump_changes import read_changes

    manifest = _stored_manifest(ctx, tenant, filename)
    if manifest is None or manifest.changes is None or manifest.consistent_at is None:
        return None
    facts = manifest.changes
    events = (
        _in_database(bson.decode(raw), tenant.database, database)
        for raw in read_changes(
            ctx.folder(tenant), ctx.settings.keyring, tenant.id, filename, facts
        )
    )
    result = replay_staged(
        ctx.mongo_client,
        database,
        run,
        events,
        after=Timestamp(*facts.after),
        until=Timestamp(*manifest.consistent_at),
        idempotent=True,
    )
    logger.info(
        "tenant %s: replayed the %d change events of %s's dump onto it in %s: consistent at %s",
        tenant.id,
        result.applied,
        filename,
        database,
        manifest.consistent_at,
    )
    return result


def _in_database(event: dict[str, Any], source: str, target: str) -> dict[str, Any]:
    """A change event of database ``source`` as if it happened in ``target`` (its ``ns`` and a
    rename's ``to``); other databases' namespaces are left as they are (replay refuses them)."""
    if source == target:
        return event
    for key in ("ns", "to"):
        ns = event.get(key)
        if isinstance(ns, dict) and ns.get("db") == source:
            event[key] = {**ns, "db": target}
    return event


def swap_restore(ctx: EngineContext, tenant: Tenant, staged: StagedOutcome) -> RestoreOutcome:
    """Put a staged restore in place: the live database becomes exactly the backup's state.

    The tenant's lease is checked right before the swap: a lease lost meanwhile
    (``LeaseLost``) leaves the live database untouched and drops the staged copy.
    """
    from daai_backup.mongo import discard_staged, swap_staged

    started = time.monotonic()
    with ctx.exclusive(tenant, "restore", detail=staged.file) as lease:
        try:
            lease.check()
        except BaseException:
            discard_staged(ctx.mongo_client, tenant.database, staged.run)
            raise
        result = swap_staged(ctx.mongo_client, tenant.database, staged.run)
    return RestoreOutcome(
        tenant_id=tenant.id,
        file=staged.file,
        collections=len(result.collections),
        documents=result.total_documents,
        views=len(result.views),
        dropped=list(result.dropped),
        duration_s=staged.duration_s + time.monotonic() - started,
    )


def discard_restore(ctx: EngineContext, tenant: Tenant, staged: StagedOutcome) -> bool:
    """Drop a staged restore that will not be swapped in; live data was never touched."""
    from daai_backup.mongo import discard_staged

    with ctx.exclusive(tenant, "restore", detail=staged.file):
        return discard_staged(ctx.mongo_client, tenant.database, staged.run)


def restore_tenant(
    ctx: EngineContext,
    tenant: Tenant,
    filename: str,
    *,
    progress: Progress | None = None,
) -> RestoreOutcome:
    """Restore one of the tenant's backups into the tenant's own database: stage, then swap.

    The archive is loaded into staging collections and verified whole before anything
    live changes; the swap then renames staged collections over the live ones. No safety
    backup is taken here (the restore flow takes one between the two steps).
    """
    with ctx.exclusive(tenant, "restore", detail=filename):
        staged = stage_restore(ctx, tenant, filename, progress=progress)
        return swap_restore(ctx, tenant, staged)


def finish_interrupted_restore(ctx: EngineContext, tenant: Tenant) -> bool:
    """Finish a restore of the tenant's database that stopped mid-swap; whether there was one.

    Until then the live database is torn (some collections restored, some old) and backups
    refuse it.
    """
    from daai_backup.mongo import finish_interrupted_restore as _finish_interrupted_restore

    with ctx.exclusive(tenant, "restore", detail="finishing an interrupted restore"):
        return _finish_interrupted_restore(ctx.mongo_client, tenant.database)


# -- restore to a moment (point-in-time) ------------------------------------------------------


def change_source(ctx: EngineContext, tenant: Tenant) -> ChangeSource:
    """Where a tenant's captured changes are read: the one place that picks the reader
    (change capture's segments in the tenant's folder, :mod:`daai_backup.capture`)."""
    from daai_backup import capture

    return cast("ChangeSource", capture)


def snapshots(ctx: EngineContext, tenant: Tenant) -> list[Snapshot]:
    """The tenant's backups a moment can start from, with the cluster time each restores to
    (newest first): a ``snapshot`` at its manifest's ``cluster_time``; a ``consistent`` one
    at its ``consistent_at`` (staging it replays its own change events up to there,
    :func:`stage_restore`, then the captured changes after it are replayed). A best-effort
    backup is never one.

    From the listing index's manifest summaries (one listing plus one read); a summary
    cached before summaries carried the cluster time costs one manifest read. Backups
    without a stored manifest are left out rather than read whole here.
    """
    from bson.timestamp import Timestamp

    from daai_backup.moments import Snapshot

    listing = folder_listing(ctx, tenant)
    out = []
    for entry in listing.entries:
        summary = listing.summaries.get(entry.file)
        if summary is None:
            continue
        if "cluster_time" in summary:
            consistency, cluster = summary.get("consistency"), summary["cluster_time"]
            moment = summary.get("consistent_at")
        else:
            manifest = _stored_manifest(ctx, tenant, entry.file)
            if manifest is None:
                continue
            consistency, cluster = manifest.consistency, manifest.cluster_time
            moment = manifest.consistent_at
        base = {"snapshot": cluster, "consistent": moment}.get(str(consistency))
        if base:
            out.append(Snapshot(entry.file, Timestamp(int(base[0]), int(base[1]))))
    return sorted(out, key=lambda s: s.at, reverse=True)


def recoverable_ranges(
    ctx: EngineContext, tenant: Tenant, source: ChangeSource | None = None
) -> list[tuple[Timestamp, Timestamp]]:
    """The cluster-time ranges the tenant can be restored to any second of (oldest first):
    from each coverage range's oldest snapshot to its end. ``moments.ranges_text`` words
    them ("any second from ... to ...") in the tenant's zone."""
    from daai_backup.moments import recoverable

    source = source or change_source(ctx, tenant)
    return recoverable(snapshots(ctx, tenant), source.coverage(ctx.folder(tenant)))


def point_in_time(ctx: EngineContext, tenant: Tenant) -> str | None:
    """The tenant's recoverable ranges in words, for the backup list and ``describe``:
    "recoverable: any second from ... to ..." in the tenant's zone; None while change
    capture has stored nothing for the tenant, or when it cannot be read (the list must not
    fail for it: a restore to a moment says why in full)."""
    from daai_backup.moments import ranges_text

    source = change_source(ctx, tenant)
    try:
        if not source.coverage(ctx.folder(tenant)):
            return None
        return ranges_text(recoverable_ranges(ctx, tenant, source), ctx.timezone(tenant))
    except DaaiBackupError as exc:
        logger.warning("tenant %s: recoverable ranges not known: %s", tenant.id, exc)
        return None


def plan_moment(
    ctx: EngineContext, tenant: Tenant, at: str | datetime, source: ChangeSource | None = None
) -> MomentPlan:
    """Which snapshot a restore to ``at`` starts from, and the cluster time it replays to.

    ``at`` is a moment's text (``2026-11-28 14:31:59``, the tenant's zone unless it names
    one) or an aware datetime, to the second. Refuses (``MomentInvalid``,
    ``MomentNotCovered`` naming the recoverable ranges in the tenant's zone) before
    anything is read or changed.
    """
    from daai_backup.moments import (
        MomentPlan,
        choose,
        moment_timestamp,
        parse_moment,
        ranges_text,
        recoverable,
        time_text,
    )

    tz = ctx.timezone(tenant)
    moment = parse_moment(at, tz) if isinstance(at, str) else at
    source = source or change_source(ctx, tenant)
    until = moment_timestamp(moment)
    found = snapshots(ctx, tenant)
    coverage = source.coverage(ctx.folder(tenant))
    try:
        chosen = choose(found, coverage, until)
    except MomentNotCovered:
        raise MomentNotCovered(
            f"tenant {tenant.id!r} cannot be restored to {time_text(until, tz)}: "
            f"{ranges_text(recoverable(found, coverage), tz)}; pick a moment inside them"
        ) from None
    return MomentPlan(file=chosen.file, snapshot=chosen.at, until=until, moment=moment)


def replay_to_moment(
    ctx: EngineContext,
    tenant: Tenant,
    staged: StagedOutcome,
    plan: MomentPlan,
    source: ChangeSource | None = None,
) -> StagedOutcome:
    """Apply the captured changes after the staged snapshot up to the moment, to the staged
    copy (nothing live changes); the staged copy is verified again and stays staged.

    A failure drops the staged copy (``RestoreVerificationFailed`` when the snapshot and
    the changes disagree).
    """
    from daai_backup.mongo.replay import replay_staged

    if staged.file != plan.file:
        raise DatabaseError(
            f"the staged restore holds {staged.file!r}, the moment's plan starts from "
            f"{plan.file!r}; stage the plan's backup"
        )
    source = source or change_source(ctx, tenant)
    started = time.monotonic()
    with ctx.exclusive(tenant, "restore", detail=f"{plan.file} to a moment"):
        events = source.read_changes(
            ctx.folder(tenant), ctx.settings.keyring, tenant.id, plan.snapshot, plan.until
        )
        result = replay_staged(
            ctx.mongo_client,
            tenant.database,
            staged.run,
            events,
            after=plan.snapshot,
            until=plan.until,
        )
    logger.info(
        "tenant %s: replayed %d change events (%d skipped) onto %s in %.1f s",
        tenant.id,
        result.applied,
        result.skipped,
        plan.file,
        result.seconds,
    )
    return replace(
        staged,
        collections=result.collections,
        documents=result.documents,
        duration_s=staged.duration_s + time.monotonic() - started,
        replayed_events=result.applied,
    )


def restore_to_moment(
    ctx: EngineContext,
    tenant: Tenant,
    at: str | datetime,
    source: ChangeSource | None = None,
) -> RestoreOutcome:
    """Restore the tenant's database to the moment ``at``: the newest snapshot at or before
    it, staged, the captured changes replayed up to and including it, verified, swapped in.

    Like :func:`restore_tenant`, no safety backup is taken here (the restore flow takes one
    before the swap).
    """
    plan = plan_moment(ctx, tenant, at, source)
    with ctx.exclusive(tenant, "restore", detail=f"{plan.file} to a moment"):
        staged = stage_restore(ctx, tenant, plan.file)
        staged = replay_to_moment(ctx, tenant, staged, plan, source)
        return swap_restore(ctx, tenant, staged)


#: Errors that make a backup file bad, as opposed to a problem of this side: a missing or
#: wrong key (``KeyMissing``, ``WrongKey``), a format version of a newer build
#: (``UnsupportedFormat``), storage or network trouble. Only these are recorded as bad.
BAD_FILE_ERRORS: tuple[type[DaaiBackupError], ...] = (ArchiveCorrupt, NotAnArchive, WrongTenant)


def verify_backup(
    ctx: EngineContext, tenant: Tenant, filename: str, *, record: bool = True
) -> VerifyOutcome:
    """Read one backup whole, check every tag and CRC, and hold its manifest against it.

    Needs no database, except to store a missing manifest (under the tenant's lease). The
    manifest check: a stored manifest that cannot be read as this backup's own (another
    tenant's, another backup's, altered) or that disagrees with what the archive holds
    (namespaces, counts, CRCs, sizes) fails the verification (``ManifestMismatch``): the
    backup and its manifest do not belong together. A backup without one (written before
    manifests, or a crash between the two writes) gets one built from this read.

    With ``record`` the result is kept beside the backup (:meth:`BackupFolder.
    record_verification`) for retention and the lists: good, or bad with the reason when
    the file itself is bad (:data:`BAD_FILE_ERRORS`); a key or storage problem, or a
    manifest that does not belong to the backup, records nothing, since it says nothing
    about the backup file. A record that cannot be written is
    logged, never a reason to fail the verification.
    """
    started = time.monotonic()
    entry = describe_backup(ctx, tenant, filename)
    try:
        stored = _stored_manifest(ctx, tenant, filename)
        actual = _manifest_from_backup(ctx, tenant, entry, stored)
        if stored is None:
            _store_manifest_quietly(ctx, tenant, actual)
        else:
            _check_manifest(stored, actual)
    except ManifestMismatch:
        # The manifest, not the backup, is in doubt (an archive that reads whole is
        # authenticated): nothing is recorded, so retention goes on judging the backup by
        # its last verification; the message says to delete the manifest and verify again.
        raise
    except BAD_FILE_ERRORS as exc:
        if record:
            _record_verification(ctx, tenant, entry, error=str(exc))
        raise
    if record:
        _record_verification(ctx, tenant, entry, error=None)
    return VerifyOutcome(
        file=filename,
        encrypted=entry.encrypted,
        namespaces=len(actual.namespaces),
        documents=actual.documents,
        compressed_bytes=entry.size_bytes,
        duration_s=time.monotonic() - started,
    )


def _stored_manifest(ctx: EngineContext, tenant: Tenant, filename: str) -> Manifest | None:
    """The backup's stored manifest; None when it has none; ``ManifestMismatch`` (one line
    naming the manifest and what to do) when the stored one is not this backup's own.

    ``WrongKey`` passes as it is: a key not configured says nothing about the manifest.
    """
    from daai_backup.errors import ManifestMismatch

    folder = ctx.folder(tenant)
    try:
        source = folder.open_manifest(filename)
    except ObjectNotFound:
        return None
    try:
        with source:
            return unseal(source, ctx.settings.keyring, tenant.id, filename)
    except (ArchiveCorrupt, NotAnArchive, WrongTenant) as exc:
        raise ManifestMismatch(
            f"manifest {manifest_name(filename)!r} of tenant {tenant.id!r} is not the "
            f"manifest of {filename!r} ({exc}); it was altered, replaced or copied from "
            f"another backup: delete it from {folder.url} if you trust the backup (verify "
            "then rebuilds it from the archive), or use another backup"
        ) from exc


def _check_manifest(stored: Manifest, actual: Manifest) -> None:
    """``ManifestMismatch`` when the stored manifest does not describe the archive read."""
    from daai_backup.errors import ManifestMismatch
    from daai_backup.repository.archive_facts import differences

    found = differences(stored, actual)
    if found:
        raise ManifestMismatch(
            f"manifest {stored.name!r} does not match the backup it describes "
            f"({'; '.join(found)}): the backup or its manifest was altered or swapped; "
            "use another backup"
        )


def _manifest_from_backup(
    ctx: EngineContext, tenant: Tenant, entry: BackupEntry, known: Manifest | None = None
) -> Manifest:
    """Read the backup whole (every tag and CRC) and build its manifest from the archive.

    Who took it, why and how consistently come from ``known`` (its stored manifest) when
    given, else from a legacy side file (``source="archive"``); the rest from the archive.
    """
    from daai_backup.repository.archive_facts import read_facts

    header = _header_of(ctx, tenant, entry)
    with ctx.folder(tenant).open(entry.file) as stored:
        plain = open_plaintext(
            stored, ctx.settings.keyring, tenant.id, name=entry.file, encrypted=entry.encrypted
        )
        facts = read_facts(open_gzip_reader(plain))
    if known is None:
        known = _legacy_manifest(ctx, tenant, entry.file, facts.server_version)
    name = BackupName.parse(entry.file)
    return Manifest(
        tenant=tenant.id,
        file=entry.file,
        label=name.frequency,
        taken_at=name.taken_at,
        key_fingerprint=header.key_fingerprint if header is not None else None,
        stored_bytes=entry.size_bytes,
        plain_bytes=facts.plain_bytes,
        data_bytes=facts.data_bytes,
        documents=facts.documents,
        namespaces=facts.namespaces,
        cluster_time=known.cluster_time,
        actor=known.actor,
        note=known.note,
        consistency=known.consistency,
        server_version=known.server_version,
        catalog_changes=known.catalog_changes,
        source=known.source,
    )


def _legacy_manifest(
    ctx: EngineContext, tenant: Tenant, filename: str, server_version: str
) -> Manifest:
    """What a backup written before manifests recorded in its side file (note, consistency,
    catalog changes), as the who-and-why part of a manifest (``source="archive"``)."""
    try:
        details = ctx.folder(tenant).details(filename)
    except DaaiBackupError:
        details = {}
    note, changes = details.get("note"), details.get("catalog_changes")
    name = BackupName.parse(filename)
    return Manifest(
        tenant=tenant.id,
        file=filename,
        label=name.frequency,
        taken_at=name.taken_at,
        cluster_time=None,
        actor=None,
        note=note if isinstance(note, str) else None,
        key_fingerprint=None,
        stored_bytes=0,
        plain_bytes=0,
        data_bytes=0,
        documents=0,
        consistency=str(details.get("consistency") or "unknown"),
        server_version=str(details.get("server_version") or server_version),
        source="archive",
        catalog_changes=tuple(str(c) for c in changes) if isinstance(changes, list) else (),
    )


def _store_manifest(ctx: EngineContext, tenant: Tenant, manifest: Manifest) -> None:
    """Store a manifest built from its archive, under the tenant's lease; idempotent.

    Stored only while the backup still has none (another run may have written it meanwhile:
    manifests are immutable) and still exists (``ObjectNotFound`` otherwise).
    """
    master = ctx.settings.keyring.require_current()
    folder = ctx.folder(tenant)
    with ctx.exclusive(tenant, "manifest", detail=manifest.file):
        if _stored_manifest(ctx, tenant, manifest.file) is None:
            folder.put_manifest(manifest.file, seal(manifest, master))


def _store_manifest_quietly(ctx: EngineContext, tenant: Tenant, manifest: Manifest) -> None:
    """:func:`_store_manifest` for verify: a manifest it cannot store is logged, not raised
    (the verification itself succeeded; the next one tries again)."""
    try:
        _store_manifest(ctx, tenant, manifest)
    except DaaiBackupError as exc:
        logger.warning(
            "tenant %s: the manifest of %s was built but not stored: %s",
            tenant.id,
            manifest.file,
            exc,
        )


def manifest_of(ctx: EngineContext, tenant: Tenant, filename: str) -> Manifest:
    """What one of the tenant's backups holds: its stored manifest, read in one request.

    A backup without one (written before manifests) is read whole once, its manifest built
    from the archive and stored (under the tenant's lease; idempotent), so the next call is
    instant. Refuses a file that is not one of this tenant's backups (``ObjectNotFound``,
    ``InvalidName``) and a stored manifest that is not the backup's own (``ManifestMismatch``).
    """
    entry = describe_backup(ctx, tenant, filename)
    stored = _stored_manifest(ctx, tenant, filename)
    if stored is not None:
        return stored
    built = _manifest_from_backup(ctx, tenant, entry)
    _store_manifest(ctx, tenant, built)
    return built


def _record_verification(
    ctx: EngineContext, tenant: Tenant, entry: BackupEntry, *, error: str | None
) -> None:
    record = VerificationRecord(
        file=entry.file,
        verified_at=datetime.now(UTC),
        ok=error is None,
        error=error,
        size_bytes=entry.size_bytes,
    )
    try:
        ctx.folder(tenant).record_verification(entry.file, record)
    except DaaiBackupError as exc:
        logger.warning("tenant %s: verification of %s not recorded: %s", tenant.id, entry.file, exc)


@dataclass(frozen=True)
class VerificationStatus:
    """Which of a tenant's backups are known good or bad (their last verification)."""

    good: frozenset[str]
    bad: frozenset[str]
    records: dict[str, VerificationRecord]


def verification_status(
    ctx: EngineContext,
    tenant: Tenant,
    entries: Sequence[BackupEntry],
    *,
    good_for: timedelta | None = None,
    now: datetime | None = None,
) -> VerificationStatus:
    """The verification records of ``entries`` (as the listing gave them: no request).

    A record only counts while the backup's size is still the size that was verified (a file
    replaced since is not known anything). With ``good_for``, a good result older than that
    no longer counts as good (storage can rot in place without changing a file's size); a
    bad result always counts.
    """
    moment = now or datetime.now(UTC)
    records = {e.file: r for e in entries if (r := e.verification) is not None}
    return VerificationStatus(
        good=frozenset(
            n
            for n, r in records.items()
            if r.ok and (good_for is None or moment - r.verified_at <= good_for)
        ),
        bad=frozenset(n for n, r in records.items() if not r.ok),
        records=records,
    )


def remove_leftovers(ctx: EngineContext, tenant: Tenant) -> int:
    """Remove what killed operations left in the tenant's folder; the bytes freed.

    Unfinished writes (temporary files, incomplete S3 multipart uploads), side files and
    verification records whose backup is gone. The caller MUST hold the tenant's lease:
    storage that cannot tell a live write from a dead one removes every unfinished write.
    """
    with ctx.exclusive(tenant, "cleanup"):
        return ctx.folder(tenant).remove_leftovers()


def clean_abandoned_restore(ctx: EngineContext, tenant: Tenant) -> str | None:
    """Finish or remove what a killed restore left in the tenant's database, under its lease.

    A restore killed while staging (or during its safety backup) leaves a staged copy of the
    backup inside the live database; one killed mid-swap leaves it torn, and backups refuse
    a torn database. Both are dealt with here, at the start of the tenant's next backup or
    retention run, not at its next restore, which may be months away. One line saying what
    was done; None when nothing was left.
    """
    from daai_backup.mongo import clean_abandoned_restore as clean

    with ctx.exclusive(tenant, "cleanup"):
        return clean(ctx.mongo_client, tenant.database)


def key_problem(ctx: EngineContext) -> str | None:
    """None when a current key is configured; else the one line saying what is wrong."""
    try:
        if ctx.settings.keyring.current is not None:
            return None
    except DaaiBackupError as exc:  # a malformed key
        return str(exc)
    return str(KeyMissing())


def tenant_facts(ctx: EngineContext, tenant: Tenant) -> TenantFacts:
    """What storage says about one tenant for the fleet view: one listing (verification
    results and strays included) and the bytes used (read errors are kept, not raised)."""
    from daai_backup.fleet import TenantFacts

    try:
        listing = folder_listing(ctx, tenant)
        entries = listing.entries
        status = verification_status(ctx, tenant, entries)
        safety = sum(e.size_bytes for e in entries if e.frequency == policy.PRE_RESTORE)
        used = ctx.folder(tenant).usage_bytes()
    except DaaiBackupError as exc:
        return TenantFacts(error=str(exc))
    usage = QuotaReport.from_quota_mb(
        max(0, used - safety), tenant.storage_quota_mb, outside_quota_bytes=safety
    )
    keys: dict[str, int] = {}
    for entry in entries:
        if entry.encrypted:
            found = listing.summaries.get(entry.file, {}).get("key_fingerprint")
            fingerprint = found if isinstance(found, str) else "unknown"
            keys[fingerprint] = keys.get(fingerprint, 0) + 1
    return TenantFacts(
        entries=tuple(entries),
        known_bad=status.bad,
        usage=usage,
        strays=tuple(s.describe() for s in listing.strays),
        keys=keys,
    )


def keys_note(ctx: EngineContext, facts: Mapping[str, TenantFacts]) -> str | None:
    """One line for the fleet view: backups per key fingerprint, and where old keys are still
    needed (None when every backup is under the current key). Counts backups from the listing
    index, no extra request; ``daai-backup doctor --keys`` counts every encrypted file."""
    totals: dict[str, int] = {}
    tenants: dict[str, set[str]] = {}
    for tid, fact in facts.items():
        for fingerprint, count in fact.keys.items():
            totals[fingerprint] = totals.get(fingerprint, 0) + count
            tenants.setdefault(fingerprint, set()).add(tid)
    try:
        current = ctx.settings.keyring.current
    except DaaiBackupError:
        current = None
    current_fp = current.fingerprint if current is not None else None
    if not any(fp != current_fp for fp in totals):
        return None  # nothing to act on
    parts = []
    for fingerprint, count in sorted(totals.items(), key=lambda kv: (kv[0] != current_fp, kv[0])):
        if fingerprint == current_fp:
            parts.append(f"{fingerprint} (current): {count}")
        else:
            where = ", ".join(sorted(tenants[fingerprint]))
            parts.append(f"{fingerprint}: {count} in {where}")
    return (
        "backups per key: "
        + "; ".join(parts)
        + "; run `daai-backup rekey --all` before retiring an old key"
    )


def fleet_view(
    ctx: EngineContext,
    *,
    now: datetime | None = None,
    last_runs: Mapping[str, LastRun | None] | None = None,
    registered_at: Mapping[str, datetime] | None = None,
) -> FleetView:
    """The fleet table (:func:`daai_backup.fleet.fleet_table`) from storage, the leases and
    the key; ``last_runs`` and ``registered_at`` come from the orchestrator when there is one.

    A tenant whose storage cannot be read is shown ``unknown``; leases that cannot be read
    (MongoDB down) are shown unknown with a note, never a reason to show nothing. Without
    ``last_runs`` no tenant can be ``failing``: the caller says so.
    """
    from daai_backup.fleet import FleetView, fleet_table
    from daai_backup.lease import current_holders

    now = now or datetime.now(UTC)
    tenants = list(ctx.registry.values())
    facts = {tenant.id: tenant_facts(ctx, tenant) for tenant in tenants}
    notes: list[str] = []
    leases: dict[str, LeaseInfo] | None
    try:
        leases = current_holders(ctx.mongo_client, ctx.settings, [t.id for t in tenants])
    except DaaiBackupError as exc:
        leases = None
        notes.append(f"leases unknown: {exc}")
    windows: dict[str, MaintenanceRecord] | None
    try:
        from daai_backup.maintenance import current_records

        windows = current_records(ctx.mongo_client, ctx.settings, [t.id for t in tenants])
    except DaaiBackupError as exc:
        windows = None
        notes.append(f"maintenance windows unknown: {exc}")
    capture_lag: dict[str, float | None] | None
    try:
        from daai_backup.capture.state import capture_lags

        capture_lag = capture_lags(ctx.mongo_client, ctx.settings, [t.id for t in tenants], now)
    except Exception as exc:  # pymongo errors: the lag is unknown, the view still shows
        capture_lag = None
        notes.append(f"capture lag unknown: {type(exc).__name__}")
    table = fleet_table(
        tenants,
        facts,
        now=now,
        default_timezone=ctx.settings.timezone,
        spread_minutes=ctx.settings.schedule_spread_minutes,
        key_problem=key_problem(ctx),
        leases=leases,
        last_runs=last_runs,
        registered_at=registered_at,
        capture_lag=capture_lag,
        capture_target_s=ctx.settings.capture_max_lag_seconds,
        maintenance=windows,
    )
    if (keys := keys_note(ctx, facts)) is not None:
        notes.append(keys)
    return FleetView(table=table, now=now, notes=notes, facts=facts)


def next_backup(ctx: EngineContext, tenant: Tenant, now: datetime | None = None) -> datetime:
    """When the tenant's next scheduled backup runs, in its time zone (engine schedule)."""
    return next_backup_time(
        tenant,
        now or datetime.now(UTC),
        ctx.settings.timezone,
        ctx.settings.schedule_spread_minutes,
    )


HOLD_WAIT_SECONDS = 120.0
"""How long hold/release wait for another operation of the tenant (a CLI command waits)."""


def set_hold(
    ctx: EngineContext,
    tenant: Tenant,
    filename: str,
    *,
    held: bool,
    on_wait: Callable[[LeaseInfo, float], None] | None = None,
) -> None:
    """Hold (pin) or release one of the tenant's backups, holding the tenant's lease.

    A hold is a marker beside the backup (one write; a backup held the legacy way, in
    ``held/``, is moved back in several steps); under the lease no retention or backup of
    the tenant runs meanwhile (one could otherwise delete the file between two steps).
    """
    from daai_backup.lease import tenant_lease

    describe_backup(ctx, tenant, filename)
    with tenant_lease(
        ctx.mongo_client,
        ctx.settings,
        tenant.id,
        "hold" if held else "release",
        detail=filename,
        wait_seconds=HOLD_WAIT_SECONDS,
        on_wait=on_wait,
    ) as lease:
        lease.check()
        folder = ctx.folder(tenant)
        if held:
            folder.hold(filename)
        else:
            folder.release(filename)


def delete_backup(ctx: EngineContext, tenant: Tenant, filename: str) -> None:
    """Delete one of the tenant's backups (retention's apply step)."""
    describe_backup(ctx, tenant, filename)
    with ctx.exclusive(tenant, "delete", detail=filename):
        ctx.folder(tenant).delete(filename)


# --- Restore copies: a backup loaded into a database of its own, for inspection ----------


@dataclass(frozen=True)
class CopyOutcome:
    """What :func:`restore_copy` loaded."""

    tenant_id: str
    file: str
    database: str
    collections: int
    documents: int
    views: int
    expires_at: datetime
    duration_s: float


def _check_copy_name(ctx: EngineContext, into: str) -> None:
    from daai_backup.mongo.copies import check_copy_name

    check_copy_name(
        into,
        control_database=ctx.settings.control_database,
        tenant_databases=[t.database for t in ctx.registry.values()],
    )


def preflight_copy(
    ctx: EngineContext,
    tenant: Tenant,
    filename: str,
    into: str,
    *,
    actor: str | None,
    replace: bool = False,
) -> BackupEntry:
    """Refuse a restore into a copy that must not start; the backup's entry.

    In order: the actor's ``restore`` permission (a copy shows the tenant's data); the copy's
    database name (:func:`daai_backup.mongo.copies.check_copy_name`: MongoDB's rules, its own
    and the control database, every tenant's live database, case-insensitively); the file is
    one of this tenant's backups, readable with the configured keys (a legacy backup needs
    none: no safety backup is taken); and the target database is new, or this tenant's copy
    and ``replace`` (:func:`daai_backup.mongo.copies.check_target`). Nothing is changed.
    """
    from daai_backup.mongo.copies import check_target

    tenant.require(actor, "restore")
    _check_copy_name(ctx, into)
    entry = describe_backup(ctx, tenant, filename)
    check_key_can_read(ctx, tenant, filename)
    check_target(ctx.mongo_client, into, tenant=tenant.id, replace=replace)
    return entry


def restore_copy(
    ctx: EngineContext,
    tenant: Tenant,
    filename: str,
    into: str,
    *,
    actor: str | None,
    replace: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
    _fail_at: str | None = None,
) -> CopyOutcome:
    """Load one of the tenant's backups into the new database ``into``, for inspection.

    The live database is never touched, so there is no safety backup and no confirmation;
    the actor needs ``restore`` (:func:`preflight_copy` refuses first, in one line). The copy
    is exactly the backup's state (collections, views, indexes, options, validators; a
    ``consistent`` backup's change events replayed, as a restore does) plus its marker
    (:mod:`daai_backup.mongo.copies`), and expires ``copy_ttl_days`` after ``now``. Under
    the tenant's lease (retention cannot delete the backup mid-read; the sweep can tell a
    killed load from a running one). A load that fails drops the whole
    database; one that is killed leaves a marker saying ``loading``, listed as incomplete and
    dropped by the next sweep. ``_fail_at`` is the restore's crash seam, for tests.
    """
    from daai_backup.mongo import copies, swap_staged
    from daai_backup.mongo import stage_restore as _stage_restore

    started = time.monotonic()
    entry = preflight_copy(ctx, tenant, filename, into, actor=actor, replace=replace)
    now = now or datetime.now(UTC)
    expires_at = now + timedelta(days=ctx.settings.copy_ttl_days)
    client = ctx.mongo_client
    with ctx.exclusive(tenant, "copy", detail=f"{filename} into {into}") as lease:
        run = copies.claim(
            client,
            into,
            tenant=tenant.id,
            file=filename,
            actor=actor,
            created_at=now,
            expires_at=expires_at,
            replace=replace,
        )
        try:
            with ctx.folder(tenant).open(filename) as stored:
                counted = CountingReader(
                    stored,
                    on_progress=(lambda done: progress(done, entry.size_bytes))
                    if progress
                    else None,
                )
                plain = open_plaintext(
                    cast(BinaryIO, counted),
                    ctx.settings.keyring,
                    tenant.id,
                    name=filename,
                    encrypted=entry.encrypted,
                )
                staged = _stage_restore(client, into, open_gzip_reader(plain), _fail_at=_fail_at)
            # A "consistent" backup is its dump plus its change events: the copy too.
            _replay_backup_changes(ctx, tenant, filename, into, staged.run)
            lease.check()
            result = swap_staged(client, into, staged.run, _fail_at=_fail_at)
            copies.complete(
                client,
                into,
                run,
                collections=len(result.collections),
                documents=result.total_documents,
            )
        except Exception:
            # Nothing of a failed load may pass for a copy. (A killed process cannot get
            # here: its marker says "loading" and the sweep drops it.)
            try:
                copies.drop_copy(client, into, run=run)
            except DaaiBackupError as exc:
                logger.warning("failed copy %s of %s not dropped: %s", into, tenant.id, exc)
            raise
    return CopyOutcome(
        tenant_id=tenant.id,
        file=filename,
        database=into,
        collections=len(result.collections),
        documents=result.total_documents,
        views=len(result.views),
        expires_at=expires_at,
        duration_s=time.monotonic() - started,
    )


def _copy_skip(ctx: EngineContext) -> list[str]:
    """Databases never read for a copy marker: the control database and tenant databases."""
    return [ctx.settings.control_database, *(t.database for t in ctx.registry.values())]


def list_copies(ctx: EngineContext, tenant: Tenant) -> list[CopyInfo]:
    """The tenant's restore copies (only its own), by database name, incomplete ones too."""
    from daai_backup.mongo.copies import find_copies

    return [c for c in find_copies(ctx.mongo_client, skip=_copy_skip(ctx)) if c.tenant == tenant.id]


def drop_copy(ctx: EngineContext, tenant: Tenant, into: str, *, actor: str | None) -> CopyInfo:
    """Drop one of the tenant's copies before it expires (``restore`` permission); what it was.

    Refuses a database that is not a copy of this tenant (a tenant's database, another
    tenant's copy, any other database) without saying whose it is.
    """
    from daai_backup.mongo import copies

    tenant.require(actor, "restore")
    _check_copy_name(ctx, into)
    with ctx.exclusive(tenant, "copy", detail=f"dropping {into}"):
        info = copies.read_copy(ctx.mongo_client, into)
        if info is None or info.tenant != tenant.id:
            raise CopyRefused(
                f"{into!r} is not a copy of tenant {tenant.id!r}: `daai-backup copies --tenant "
                f"{tenant.id}` lists its copies (nothing changed)"
            )
        copies.drop_copy(ctx.mongo_client, into, run=info.run)
    return info


def drop_expired_copies(ctx: EngineContext, *, now: datetime | None = None) -> list[CopyInfo]:
    """Drop every copy on the cluster that has expired or whose load was killed; the dropped.

    Each under its tenant's lease, taken without waiting: a copy whose tenant is busy (a
    backup, a copy being loaded) is left for the next sweep. Under the lease no load of that
    tenant runs, so a marker still saying ``loading`` is a killed load's. The marker is read
    again under the lease, and only that run's copy is dropped.
    """
    from daai_backup.lease import tenant_lease
    from daai_backup.mongo import copies

    moment = now or datetime.now(UTC)
    client = ctx.mongo_client
    dropped: list[CopyInfo] = []
    for info in copies.find_copies(client, skip=_copy_skip(ctx)):
        if info.ready and not info.expired(moment):
            continue
        try:
            with tenant_lease(
                client,
                ctx.settings,
                info.tenant,
                "copy-expiry",
                detail=info.database,
                wait_seconds=0,
            ):
                again = copies.read_copy(client, info.database)
                if again is None or (again.ready and not again.expired(moment)):
                    continue
                if copies.drop_copy(client, info.database, run=again.run):
                    dropped.append(again)
        except LeaseError as exc:
            logger.info("copy %s left for the next sweep: %s", info.database, exc)
    return dropped


__all__ = [
    "BAD_FILE_ERRORS",
    "BackupOutcome",
    "CopyOutcome",
    "EngineContext",
    "ImportOutcome",
    "Progress",
    "RestoreOutcome",
    "StagedOutcome",
    "VerificationStatus",
    "VerifyOutcome",
    "backup_tenant",
    "check_key_can_read",
    "clean_abandoned_restore",
    "delete_backup",
    "describe_backup",
    "discard_restore",
    "drop_copy",
    "drop_expired_copies",
    "estimate_backup_bytes",
    "finish_interrupted_restore",
    "fleet_view",
    "folder_listing",
    "import_archive",
    "key_problem",
    "list_backups",
    "list_copies",
    "load_context",
    "manifest_of",
    "next_backup",
    "preflight_backup",
    "preflight_copy",
    "preflight_restore",
    "quota_report",
    "read_backup_header",
    "remove_leftovers",
    "restore_copy",
    "restore_tenant",
    "set_hold",
    "stage_restore",
    "swap_restore",
    "tenant_facts",
    "verification_status",
    "verify_backup",
]


# --- Key rotation: rekey, and which keys files still need --------------------------------


def rekey_tenant(
    ctx: EngineContext, tenant: Tenant, progress: Callable[[int, int], None] | None = None
) -> RekeyOutcome:
    """Re-encrypt the tenant's objects made under previous keys to the current key.

    Under the tenant's lease, so no backup, restore or retention of the tenant races it.
    Resumable: a re-run skips what is already under the current key (:mod:`daai_backup.rekey`).
    ``progress(objects_done, objects_total)`` is called after each object.
    """
    from daai_backup.rekey import rekey_folder

    keyring = ctx.settings.keyring
    keyring.require_current()
    with ctx.exclusive(tenant, "rekey") as lease:
        lease.check()
        return rekey_folder(ctx.folder(tenant), keyring, tenant.id, progress=progress)


def key_census(ctx: EngineContext, tenant: Tenant) -> KeyCensus:
    """How many of the tenant's encrypted files need each key (one header read per file)."""
    from daai_backup.rekey import census

    return census(ctx.folder(tenant), tenant.id)


def retire_problem(censuses: Sequence[KeyCensus], fingerprint: str) -> str | None:
    """The one line refusing to drop the key ``fingerprint`` while files still need it."""
    needing = {c.tenant_id: c.by_key.get(fingerprint, 0) for c in censuses}
    needing = {t: n for t, n in needing.items() if n}
    if not needing:
        return None
    total = sum(needing.values())
    tenants = ", ".join(f"{t} ({n})" for t, n in sorted(needing.items()))
    return (
        f"key {fingerprint} cannot be retired: {total} file(s) still need it, in tenant(s) "
        f"{tenants}; run `daai-backup rekey --all` first"
    )
