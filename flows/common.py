"""What the flows share: the engine context of one run, and the artifacts people read.

A flow reads its configuration from the worker's environment (``operations.load_context()``:
``DAAI_BACKUP_*`` and ``BACKUP_ENCRYPTION_KEY``), never from its parameters, so keys never
reach Prefect's database. Artifacts carry file names, sizes and times, never a secret.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from daai_backup import catalog, operations
from daai_backup.catalog import BackupEntry
from daai_backup.operations import EngineContext
from daai_backup.tenants import Tenant


@contextmanager
def engine() -> Iterator[EngineContext]:
    """The engine context for one flow run: settings and registry read now, closed after."""
    ctx = operations.load_context()
    try:
        yield ctx
    finally:
        ctx.close()


def publish_backup_list(ctx: EngineContext, tenant: Tenant, entries: Sequence[BackupEntry]) -> None:
    """The tenant's backup list as the keyed table artifact ``backups-<tenant>``."""
    rows = catalog.to_artifact_rows(entries, ctx.timezone(tenant))
    create_table_artifact(
        rows,
        key=f"backups-{tenant.id}",
        description=f"Backups of {tenant.workspace_name} ({tenant.id}), newest first",
    )


def publish_key_missing(tenant: Tenant, message: str) -> None:
    """The product's yellow banner: backups of this tenant cannot run until a key is set."""
    create_markdown_artifact(
        "\n".join(
            [
                f"## ⚠️ Backups of {tenant.workspace_name} are not running",
                "",
                f"**{message}**",
                "",
                "- Generate a key once: `daai-backup keygen` (keep a copy in your secret store).",
                "- Set it as `BACKUP_ENCRYPTION_KEY` in the worker's environment or `.env`.",
                "- Restores wait for the key too: each restore first takes an encrypted "
                "safety backup of the live database, also when it restores a legacy "
                "(unencrypted) backup.",
            ]
        ),
        key=f"backup-key-missing-{tenant.id}",
        description=f"Encryption key missing: backups of {tenant.id} fail until it is set",
    )


def local_time(ctx: EngineContext, tenant: Tenant, entry: BackupEntry) -> str:
    """The backup's time in the tenant's zone, as the product shows it."""
    zone = catalog.zone(ctx.timezone(tenant))
    return entry.taken_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def tag_this_run(*tags: str) -> None:
    """Add ``tags`` to the current flow run (e.g. ``label:manual``), keeping its own.

    Tags a deployment carries reach every run made from it, so what differs per run (a
    manual Backup Now or a scheduled backup of the same deployment) is tagged here, at run
    time. Best effort: a run outside a Prefect flow, or an API hiccup, changes nothing.
    """
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    if run is None or set(tags) <= set(run.tags):
        return
    wanted = sorted(set(run.tags) | set(tags))
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, tags=wanted)
    except Exception:
        return
    run.tags = wanted
