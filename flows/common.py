"""What the flows share: the engine context of one run, and the artifacts people read.

A flow reads its configuration from the worker's environment (``operations.load_context()``:
``DAAI_BACKUP_*`` and ``BACKUP_ENCRYPTION_KEY``), never from its parameters, so keys never
reach Prefect's database. Artifacts carry file names, sizes and times, never a secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from daai_backup import operations
from daai_backup.fleet import backup_list_description
from daai_backup.operations import EngineContext
from daai_backup.repository import catalog
from daai_backup.repository.catalog import BackupEntry
from daai_backup.tenants import Tenant


@contextmanager
def engine() -> Iterator[EngineContext]:
    """The engine context for one flow run: settings and registry read now, closed after."""
    ctx = operations.load_context()
    try:
        yield ctx
    finally:
        ctx.close()


BACKUP_LIST_KEY = "backups-{tenant}"
"""Key of a tenant's backup list artifact."""


def backup_list_artifact(
    ctx: EngineContext,
    tenant: Tenant,
    entries: Sequence[BackupEntry],
    *,
    known_bad: Iterable[str] = (),
    now: datetime | None = None,
    strays: Sequence[str] = (),
) -> tuple[str, list[dict[str, str]], str]:
    """(key, rows, description) of the tenant's backup list as it should be published now.

    The description holds the list itself too, as a markdown table (the newest
    :data:`LIST_ROWS_IN_DESCRIPTION`): Prefect's page for the key, where the Artifacts list
    leads, renders the newest version's description and only a timeline of versions, so the
    newest list is what an operator lands on, without another click.
    """
    rows = catalog.to_artifact_rows(entries, ctx.timezone(tenant))
    description = backup_list_description(
        tenant,
        entries,
        now=now or datetime.now(UTC),
        default_timezone=ctx.settings.timezone,
        spread_minutes=ctx.settings.schedule_spread_minutes,
        known_bad=known_bad,
        strays=strays,
    )
    if (recoverable := operations.point_in_time(ctx, tenant)) is not None:
        description += f"\n\nPoint in time: {recoverable}."
    if rows:
        description += "\n\n" + markdown_table(rows[:LIST_ROWS_IN_DESCRIPTION])
        if len(rows) > LIST_ROWS_IN_DESCRIPTION:
            description += (
                f"\n\n{len(rows) - LIST_ROWS_IN_DESCRIPTION} older backups: see the table of "
                "the newest version below, or `daai-backup list`."
            )
    return BACKUP_LIST_KEY.format(tenant=tenant.id), rows, description


LIST_ROWS_IN_DESCRIPTION = 50
"""Rows of the backup list shown on the artifact key's own page (the newest first)."""


def markdown_table(rows: Sequence[dict[str, str]]) -> str:
    """Rows of display strings as a GitHub-flavoured markdown table (``|`` escaped)."""
    columns = list(rows[0])

    def cell(value: str) -> str:
        return value.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows),
    ]
    return "\n".join(lines)


def publish_backup_list(
    ctx: EngineContext,
    tenant: Tenant,
    entries: Sequence[BackupEntry],
    *,
    known_bad: Iterable[str] = (),
    now: datetime | None = None,
    strays: Sequence[str] = (),
) -> None:
    """The tenant's backup list as the keyed table artifact ``backups-<tenant>``.

    Prefect's page for the key (``/artifacts/key/backups-<tenant>``, where the Artifacts list
    leads) shows the newest version's *description* and a timeline, not the table: the
    description therefore carries the answer itself (newest good backup, how many, the next
    scheduled run). See ``docs/operations.md`` ("The fleet view").
    """
    key, rows, description = backup_list_artifact(
        ctx, tenant, entries, known_bad=known_bad, now=now, strays=strays
    )
    create_table_artifact(rows, key=key, description=description)


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
        key=KEY_MISSING_KEY.format(tenant=tenant.id),
        description=f"Encryption key missing: backups of {tenant.id} fail until it is set",
    )


KEY_MISSING_KEY = "backup-key-missing-{tenant}"
KEY_PRESENT_TITLE = "## ✅ Backups of {workspace} run again"


def clear_key_missing(tenant: Tenant) -> bool:
    """After a successful backup: replace a key-missing banner with one saying backups run
    again (Prefect keeps a key's versions; the newest is what the key's page shows). Nothing
    is published for a tenant that never had the banner. Whether a version was published;
    a failure is logged, never a reason to fail a backup."""
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
    )

    key = KEY_MISSING_KEY.format(tenant=tenant.id)
    try:
        with get_client(sync_client=True) as client:
            found = client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(
                    key=ArtifactCollectionFilterKey(any_=[key])
                )
            )
        if not found or str(found[0].data or "").startswith("## ✅"):
            return False
        create_markdown_artifact(
            KEY_PRESENT_TITLE.format(workspace=tenant.workspace_name)
            + "\n\nThe encryption key is set and backups succeed again.",
            key=key,
            description=f"Encryption key present: backups of {tenant.id} succeed again",
        )
        return True
    except Exception as exc:  # the API being briefly away must not fail a backup
        get_run_logger().warning("tenant %s: key-missing banner not cleared: %s", tenant.id, exc)
        return False


def tag_this_run(*tags: str) -> None:
    """Add ``tags`` to the flow run in this context, however it was started.

    Deployment runs inherit ``tenant:<id>`` from their deployment; runs started by the CLI,
    by ``run_deployment`` of another deployment or by a script do not. The fleet view finds a
    tenant's newest backup run by that tag, so the backup flow tags itself. A failure here is
    logged, never a reason to fail a backup.
    """
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    if run is None:
        return
    wanted = sorted(set(run.tags) | set(tags))
    if wanted == sorted(run.tags):
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, tags=wanted)
    except Exception as exc:  # the API being briefly away must not fail a backup
        get_run_logger().warning("could not tag this run %s: %s", ", ".join(tags), exc)


def local_time(ctx: EngineContext, tenant: Tenant, entry: BackupEntry) -> str:
    """The backup's time in the tenant's zone, as the product shows it."""
    zone = catalog.zone(ctx.timezone(tenant))
    return entry.taken_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
