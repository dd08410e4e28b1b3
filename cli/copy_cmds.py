"""``daai-backup copies``: a tenant's restore copies with their expiry, and dropping one early.

Copies are made by ``daai-backup restore --into NAME`` (a flow run); listing and dropping
need no Prefect: they are engine calls against the tenants' MongoDB cluster.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import app, console, guarded
from cli.context import engine

if TYPE_CHECKING:
    from daai_backup.mongo.copies import CopyInfo


def _row(info: CopyInfo, tz: str) -> dict[str, str]:
    from daai_backup.repository.catalog import zone

    local = zone(tz)
    return {
        "database": info.database,
        "backup": info.file,
        "state": "ready" if info.ready else "incomplete (dropped by the next sweep)",
        "created": f"{info.created_at.astimezone(local):%Y-%m-%d %H:%M %Z}",
        "expires": f"{info.expires_at.astimezone(local):%Y-%m-%d %H:%M %Z}",
        "by": info.actor or "",
    }


@app.command()
@guarded
def copies(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="the tenant id")],
    drop: Annotated[
        str | None, typer.Option("--drop", metavar="NAME", help="drop this copy now")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="who drops it (needs 'restore')")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The tenant's restore copies (`restore --into`) and when each expires; --drop one."""
    from daai_backup.operations import drop_copy, list_copies

    ctx = engine()
    try:
        record = ctx.tenant(tenant)
        if drop is not None:
            info = drop_copy(ctx, record, drop, actor=actor)
            console.print(f"dropped the copy {info.database} ({info.file})", highlight=False)
            return
        rows = [_row(c, ctx.timezone(record)) for c in list_copies(ctx, record)]
    finally:
        ctx.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        console.print(
            f"No restore copies of {tenant}. `daai-backup restore --tenant {tenant} --file F "
            "--into NAME --actor A` makes one.",
            highlight=False,
        )
        return
    from rich.table import Table

    table = Table(title=f"Restore copies of {record.workspace_name}")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
