"""daai-backup's engine: everything that is not Prefect.

No module of this package imports Prefect; the ``tasks``, ``flows``, ``deployments`` and
``cli`` packages sit on top of it. What callers above the engine use:

- :mod:`daai_backup.operations`: the engine calls (backup, restore, verify, list, delete,
  preflight guards) over an :class:`~daai_backup.operations.EngineContext`;
- :mod:`daai_backup.errors`: the one error hierarchy (``transient`` marks retryable errors);
- :mod:`daai_backup.settings`, :mod:`daai_backup.tenants`: configuration and the tenant
  registry.

The engine is grouped by concept, one subpackage each:

- ``format``: the bytes of a backup file: DBK1 encryption (``dbk1``), keys and their
  derivation (``keys``), gzip (``compression``);
- ``repository``: one tenant's backup folder: file names (``names``), the folder and its
  layout (``folder``), the backup list (``catalog``), verification records
  (``verification``), quotas (``quota``);
- ``policy``: the frequency table (the package itself), the pure retention plan
  (``retention``) and schedule times (``schedule_times``);
- ``mongo``: the snapshot dump to a mongodump archive, the staged restore, and restore
  copies (``copies``);
- ``storage``: one interface, a local folder and S3;
- beside them: ``streams`` (bounded pipes), ``lease`` (the tenant lease), ``fleet`` (the
  fleet view), ``moments`` (restore to a moment: moment text, coverage, snapshot choice,
  recoverable ranges) and ``operations``, which composes them.

Submodules are imported on demand so that a light command such as ``daai-backup keygen``
stays quick.
"""

__version__ = "0.1.0"
