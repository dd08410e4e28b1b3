"""Every error daai-backup raises on purpose, in one hierarchy.

Each message is one line a person can act on: what is wrong and what to do. Errors from
pymongo, botocore, cryptography and the OS are translated at the edge of the engine
(``raise ArchiveCorrupt(...) from exc``) so that callers, tasks and the CLI only ever deal
with these classes.

``transient`` says whether trying the same call again may succeed (a network blip, a
server election, S3 throttling). The Prefect tasks retry only transient errors; everything
else is bad input or a permanent condition and fails at once.

    DaaiBackupError
    ├── ConfigError                 settings are missing or malformed
    │   ├── KeyMissing              BACKUP_ENCRYPTION_KEY is not set
    │   └── KeyInvalid              a key is not base64 of 32 bytes
    ├── TenantError
    │   ├── TenantsFileInvalid      the tenants YAML does not validate
    │   ├── UnknownTenant           no such tenant in the registry
    │   ├── PermissionDenied        the actor lacks create/restore
    │   ├── SubscriptionSuspended   the tenant's subscription is suspended
    │   ├── ConfirmationMismatch    the typed workspace name is not the tenant's
    │   └── ConfirmationTimeout     nobody confirmed a paused restore in time
    ├── InvalidName                 a name that would become a path/key is refused
    ├── CopyRefused                 a restore copy's database is not ours to (over)write
    ├── QueryError                  a diff/find query is malformed or names nothing there
    ├── MomentRefused               a restore to a moment that cannot be done
    │   ├── MomentInvalid           the moment's text is not a time to the second
    │   └── MomentNotCovered        no snapshot and captured changes reach the moment
    ├── LeaseError                  the tenant's lease (one operation per tenant at a time)
    │   ├── LeaseTimeout            another operation held it for longer than the wait limit
    │   └── LeaseLost               taken over, or not renewed for a whole TTL, while held
    ├── ArchiveError                a backup file cannot be read
    │   ├── NotAnArchive            neither DBK1 nor gzip
    │   ├── UnsupportedFormat       a DBK1 version/algorithm this build does not know
    │   ├── WrongKey                no configured key has the archive's fingerprint
    │   ├── WrongTenant             the archive belongs to another tenant
    │   └── ArchiveCorrupt          truncated, tampered, reordered or failed a CRC
    │       ├── NameMismatch        its header names another file: renamed or copied
    │       └── ManifestMismatch    its manifest is unreadable as its own, or disagrees with it
    ├── StorageError
    │   ├── ObjectNotFound          no such backup in the tenant's folder
    │   ├── QuotaExceeded           the backup would not fit in the tenant's quota
    │   └── TransientStorageError   (transient) network/5xx/throttling
    └── DatabaseError
        ├── TransientDatabaseError  (transient) server selection, connection reset
        ├── SnapshotTooOld          the read outlived the server's snapshot window
        ├── SnapshotChanged         (transient) collections changed during the dump
        └── RestoreVerificationFailed  staged data does not match the archive
    CaptureError                    continuous change capture (daai_backup.capture)
    ├── ChangeStreamUnavailable     the cluster cannot give change streams (standalone)
    ├── ChangeHistoryLost           the oplog rolled past the resume point: a gap
    └── ChangesNotCovered           the captured changes do not cover a requested range
"""

from __future__ import annotations


class DaaiBackupError(Exception):
    """Base of every error daai-backup raises on purpose; ``str(err)`` is one line."""

    transient: bool = False


class ConfigError(DaaiBackupError):
    """Configuration is missing or malformed."""


class KeyMissing(ConfigError):
    """The master encryption key is not configured."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "BACKUP_ENCRYPTION_KEY is not set: set it to a key from `daai-backup keygen` "
            "(base64 of 32 random bytes) in the environment or .env, then run again"
        )


class KeyInvalid(ConfigError):
    """A configured key is not base64 of exactly 32 bytes."""


class MomentRefused(DaaiBackupError):
    """A restore to a moment that cannot be done; nothing was changed."""


class MomentInvalid(MomentRefused):
    """The moment's text is not a time to the second."""


class MomentNotCovered(MomentRefused):
    """No snapshot and captured changes reach the moment; the message names what does."""


class TenantError(DaaiBackupError):
    """A tenant-level refusal."""


class TenantsFileInvalid(TenantError):
    """The tenant registry file does not validate."""


class UnknownTenant(TenantError):
    """No tenant with that id exists in the registry."""

    def __init__(self, tenant: str) -> None:
        super().__init__(
            f"unknown tenant {tenant!r}: check the id against the tenant registry "
            "(DAAI_BACKUP_TENANTS_FILE, or the collection of DAAI_BACKUP_TENANTS_URI; "
            "`daai-backup doctor` lists problems with it)"
        )
        self.tenant = tenant


class PermissionDenied(TenantError):
    """The actor does not hold the permission the action needs."""


class SubscriptionSuspended(TenantError):
    """The tenant's subscription is suspended; no backup is taken."""


class ConfirmationMismatch(TenantError):
    """The typed workspace name does not match the tenant's workspace name exactly."""


class ConfirmationTimeout(TenantError):
    """Nobody confirmed a paused restore before its timeout; nothing changed."""


class MaintenanceNotConfirmed(TenantError):
    """The suite's webhook did not confirm, in time, that the workspace is in maintenance;
    the restore stopped with nothing changed."""


class InvalidName(DaaiBackupError):
    """A name that would become a path or object key is not acceptable."""


class CopyRefused(DaaiBackupError):
    """The database named for a restore copy exists and is not this tenant's copy to write
    (another database, another tenant's copy, a copy that needs ``--replace``)."""


class QueryError(DaaiBackupError):
    """A query into backups (``find --where``, a collection) is malformed or names nothing
    that any snapshot read has."""


class LeaseError(DaaiBackupError):
    """The tenant's lease could not be taken or kept (:mod:`daai_backup.lease`)."""


class LeaseTimeout(LeaseError):
    """Another operation held the tenant's lease for longer than this one would wait."""


class LeaseLost(LeaseError):
    """The lease was taken over or went unrenewed for a whole TTL; the holder must stop."""


class ArchiveError(DaaiBackupError):
    """A backup file cannot be read."""


class NotAnArchive(ArchiveError):
    """The bytes are neither a DBK1 encrypted archive nor a gzip stream."""


class UnsupportedFormat(ArchiveError):
    """A DBK1 version or algorithm this build does not know."""


class WrongKey(ArchiveError):
    """No configured key has the fingerprint the archive was made with."""


class WrongTenant(ArchiveError):
    """The archive belongs to another tenant."""


class ArchiveCorrupt(ArchiveError):
    """Truncated, tampered with, reordered or failing a checksum."""


class NameMismatch(ArchiveCorrupt):
    """The file's name disagrees with its DBK1 header: it was renamed or copied.

    A subclass of ArchiveCorrupt because the file is not what it claims to be: verify marks
    it bad and restore refuses it, whatever its bytes would decrypt to.
    """


class ManifestMismatch(ArchiveCorrupt):
    """A backup's manifest cannot be read as its own, or disagrees with what the backup holds.

    A subclass of ArchiveCorrupt: the backup and its manifest do not belong together (one of
    them was altered, replaced or swapped). Verify reports it but records nothing about the
    backup: the manifest is what is in doubt (delete it and verify again to rebuild it).
    """


class StorageError(DaaiBackupError):
    """A storage operation failed."""


class ObjectNotFound(StorageError):
    """No object under that name."""


class ObjectLocked(StorageError):
    """S3 Object Lock keeps the object until its retain-until date (or a legal hold)."""


class QuotaExceeded(StorageError):
    """Writing the backup would exceed the tenant's storage quota."""


class TransientStorageError(StorageError):
    """A storage failure that may pass (network, throttling, 5xx)."""

    transient = True


class DatabaseError(DaaiBackupError):
    """A MongoDB operation failed."""


class TransientDatabaseError(DatabaseError):
    """A MongoDB failure that may pass (server selection, connection reset, election)."""

    transient = True


class SnapshotTooOld(DatabaseError):
    """The backup read outlived the server's snapshot history window."""


class SnapshotChanged(DatabaseError):
    """Collections were created, dropped, renamed or altered while a backup read them.

    Transient: the next attempt lists the collections afresh.
    """

    transient = True


class RestoreVerificationFailed(DatabaseError):
    """Staged collections do not match the archive; nothing live was touched."""


class CaptureError(DaaiBackupError):
    """Continuous change capture failed (:mod:`daai_backup.capture`)."""


class ChangeStreamUnavailable(CaptureError):
    """The cluster cannot give change streams (a standalone ``mongod``, no permission)."""


class ChangeHistoryLost(CaptureError):
    """The change stream cannot resume where capture stopped: events were lost (a gap)."""


class ChangesNotCovered(CaptureError):
    """The captured change segments do not cover the requested range of cluster times."""
