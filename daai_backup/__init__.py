"""daai-backup's engine: everything that is not Prefect.

No module of this package imports Prefect; the ``tasks``, ``flows``, ``deployments`` and
``cli`` packages sit on top of it. What callers above the engine use:

- :mod:`daai_backup.operations`: the engine calls (backup, restore, verify, list, delete,
  preflight guards) over an :class:`~daai_backup.operations.EngineContext`;
- :mod:`daai_backup.errors`: the one error hierarchy (``transient`` marks retryable errors);
- :mod:`daai_backup.settings`, :mod:`daai_backup.tenants`, :mod:`daai_backup.policy`:
  configuration, the tenant registry and the frequency table;
- :mod:`daai_backup.catalog` and :mod:`daai_backup.retention`: the backup list and the pure
  retention plan.

The building blocks (``keys``, ``archive``, ``compression``, ``mongo``, ``storage``,
``names``, ``backup_folder``, ``verification``, ``quota``, ``streams``) are composed by
``operations``; the CLI's file commands (``inspect``, ``decrypt``) and the tests use them
directly. Submodules are imported on demand so that a light command such as
``daai-backup keygen`` stays quick.
"""

__version__ = "0.1.0"
