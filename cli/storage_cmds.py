"""Commands about a tenant's stored backups: list, describe, hold, release, usage, import.

The engine is imported inside the commands (see :mod:`cli.context`); ``hold``, ``release``
and ``import`` take the tenant's lease in MongoDB, so only they import pymongo (and
``describe`` of a backup without a manifest yet, which builds and stores it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import app, console, err_console, fail, guarded
from cli.context import engine

if TYPE_CHECKING:
    from rich.console import Console

    from daai_backup.lease import LeaseInfo
    from daai_backup.operations import EngineContext
    from daai_backup.repository.folder import FolderListing
    from daai_backup.tenants import Tenant

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="the tenant id")]
FileOption = Annotated[str, typer.Option("--file", "-f", help="a backup file name from `list`")]


@app.command("list")
@guarded
def list_(
    tenant: TenantOption,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The tenant's backups, newest first, times in the tenant's time zone.

    Files in the folder that are not backups are reported under the table (on stderr with
    --json), never silently skipped.
    """
    from daai_backup.operations import folder_listing, next_backup
    from daai_backup.repository.catalog import (
        TABLE_MIN_WIDTH,
        render_lines,
        render_table,
        to_json_records,
    )

    ctx = engine()
    record = ctx.tenant(tenant)
    listing = folder_listing(ctx, record)
    entries = listing.entries
    tz = ctx.timezone(record)
    if as_json:
        typer.echo(json.dumps(to_json_records(entries, tz), indent=2, ensure_ascii=False))
        _folder_notes(listing, tenant, err_console)
        return
    if not entries:
        if record.subscription == "suspended":
            when = "Scheduled backups are paused (subscription suspended)"
        else:
            at = next_backup(ctx, record)
            when = (
                f"The first scheduled backup runs at {at:%Y-%m-%d %H:%M %Z} "
                f"({record.active_frequency()}, {tz} time)"
            )
        console.print(
            f"No backups yet for {tenant}. {when}; `daai-backup backup --tenant {tenant}` "
            "takes one now.",
            highlight=False,
        )
        _folder_notes(listing, tenant, console)
        return
    title = f"Backups of {record.workspace_name}"
    if console.width >= TABLE_MIN_WIDTH:
        console.print(render_table(entries, tz, title=title))
    else:
        console.print(title, highlight=False)
        for line in render_lines(entries, tz):
            console.print(line, highlight=False)
    _point_in_time(ctx, record, console)
    _folder_notes(listing, tenant, console)


def _point_in_time(ctx: EngineContext, record: Tenant, out: Console) -> None:
    """The tenant's recoverable ranges under the list (change capture), if any."""
    from daai_backup.operations import point_in_time

    if (recoverable := point_in_time(ctx, record)) is not None:
        out.print(f"Point in time: {recoverable}.", highlight=False)


def _folder_notes(listing: FolderListing, tenant: str, out: Console) -> None:
    """The lines under the list: what is in the folder that is not a backup, missing notes."""
    if listing.notes_need_key:
        out.print(
            "Notes are not shown: they are encrypted with the tenant's key; set "
            "BACKUP_ENCRYPTION_KEY to see them.",
            highlight=False,
        )
    if listing.strays:
        names = ", ".join(s.name for s in listing.strays[:5])
        more = f" and {len(listing.strays) - 5} more" if len(listing.strays) > 5 else ""
        out.print(
            f"⚠️  {len(listing.strays)} file(s) in db-backups are not backups: {names}{more}. "
            f"`daai-backup doctor --tenant {tenant}` says what each is and what to do.",
            highlight=False,
        )


def _pin(tenant: str, file: str, held: bool) -> None:
    from daai_backup.lease import waiting_message
    from daai_backup.operations import set_hold

    ctx = engine()
    try:
        record = ctx.tenant(tenant)

        def waiting(holder: LeaseInfo, waited: float) -> None:
            err_console.print(waiting_message(holder, waited), highlight=False)

        set_hold(ctx, record, file, held=held, on_wait=waiting)
    finally:
        ctx.close()
    if held:
        console.print(f"held {file}: retention will keep it until `release`", highlight=False)
    else:
        console.print(f"released {file}: retention applies to it again", highlight=False)


@app.command()
@guarded
def hold(tenant: TenantOption, file: FileOption) -> None:
    """Pin a backup: retention never deletes a held backup."""
    _pin(tenant, file, held=True)


@app.command()
@guarded
def release(tenant: TenantOption, file: FileOption) -> None:
    """Unpin a held backup: it returns to the retention pool."""
    _pin(tenant, file, held=False)


@app.command()
@guarded
def usage(tenant: TenantOption) -> None:
    """Storage the tenant's root uses, against its quota."""
    from daai_backup.operations import quota_report

    ctx = engine()
    record = ctx.tenant(tenant)
    folder = ctx.folder(record)
    report = quota_report(ctx, record)
    count = len(folder.entries())
    console.print(f"{tenant}: {report.describe()} in {count} backup(s) at {folder.url}")


@app.command()
@guarded
def describe(
    tenant: TenantOption,
    file: FileOption,
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest as JSON")] = False,
) -> None:
    """What a backup holds, per collection, from its manifest (one small read)."""
    from daai_backup.operations import manifest_of
    from daai_backup.repository.description import render, to_json

    ctx = engine()
    try:
        record = ctx.tenant(tenant)
        manifest = manifest_of(ctx, record, file)
        tz = ctx.timezone(record)
        if as_json:
            typer.echo(json.dumps(to_json(manifest, tz), indent=2, ensure_ascii=False))
            return
        console.print(render(manifest, tz, title=f"{record.workspace_name}: {file}"))
        _point_in_time(ctx, record, console)
    finally:
        ctx.close()


@app.command("import")
@guarded
def import_(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="a `mongodump --archive` file")],
    tenant: TenantOption,
    actor: Annotated[str, typer.Option(help="who asks (needs 'create')")],
    note: Annotated[str | None, typer.Option(help="a short note shown in the list")] = None,
) -> None:
    """Add a mongodump archive (gzipped or not, any database name) to the tenant's backups."""
    from daai_backup.operations import import_archive

    ctx = engine()
    try:
        record = ctx.tenant(tenant)
        try:
            source = path.open("rb")
        except OSError as exc:
            raise fail(f"cannot read {path}: {exc.strerror or exc}") from None
        with source:
            done = import_archive(
                ctx,
                record,
                source,
                actor=actor,
                note=note,
                what=path.name,
                size_hint=path.stat().st_size,
            )
    finally:
        ctx.close()
    m = done.manifest
    console.print(
        f"imported {path.name} (database {done.source_database or '-'}: "
        f"{len(m.namespaces)} collections, {m.documents:,} documents) as",
        highlight=False,
    )
    typer.echo(done.entry.file)
