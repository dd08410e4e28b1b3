"""Commands that find the moment to restore to: ``timeline`` and ``history``.

They call the engine directly (no flow run) and read only the tenant's encrypted backups
and change segments, never the live database. The ``timeline`` flow publishes the same
table and chart in the Prefect UI.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.app import app, console, fail, guarded
from cli.context import engine
from cli.inspect_cmds import ActorOption, TenantOption, frame_table

_TimeOption = Annotated[
    str | None,
    typer.Option(help="2026-11-28 14:00[:00] in the tenant's zone (or naming one, e.g. UTC)"),
]


def _when(text: str | None, tz: str) -> datetime | None:
    from daai_backup.moments import parse_moment

    return None if text is None else parse_moment(text, tz)


@app.command()
@guarded
def timeline(
    tenant: TenantOption,
    actor: ActorOption = None,
    since: _TimeOption = None,
    until: _TimeOption = None,
    plot: Annotated[
        Path | None, typer.Option(help="also write the chart to this PNG file", dir_okay=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The tenant's write activity from its captured changes, per minute (coarser for long
    ranges) and collection, and the bursts that look like mass changes, each with the
    moment just before it to pass to `restore --at`. Reads only the tenant's change
    segments."""
    from daai_backup.inspection.timeline import tenant_timeline

    if plot is not None and plot.suffix.lower() != ".png":
        raise fail(f"--plot {plot}: give a file name ending in .png")
    ctx = engine()
    try:
        record = ctx.tenant(tenant)
        tz = ctx.timezone(record)
        result = tenant_timeline(
            ctx, record, actor=actor, since=_when(since, tz), until=_when(until, tz)
        )
    finally:
        ctx.close()
    if plot is not None:
        from daai_backup.inspection.chart import timeline_png

        plot.write_bytes(timeline_png(result))
    if as_json:
        payload: dict[str, Any] = {
            "tenant": result.tenant,
            "timezone": result.tz,
            "start": result.start.isoformat(),
            "end": result.end.isoformat(),
            "bucket_seconds": result.bucket_seconds,
            "events": result.events,
            "totals": result.totals(),
            "rows": result.table().to_dict(orient="records"),
            "bursts": [
                {
                    "what": b.what,
                    "collection": b.collection,
                    "first": b.first.isoformat(),
                    "last": b.last.isoformat(),
                    "counts": b.counts,
                    "detail": b.detail,
                    "moment_before": b.at,
                }
                for b in result.bursts
            ],
        }
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    minutes = result.bucket_seconds // 60
    console.print(
        frame_table(
            result.table(),
            title=f"{result.tenant}: changes per {minutes} minute(s) ({result.tz})",
        )
    )
    totals = ", ".join(f"{n:,} {k}" for k, n in result.totals().items())
    console.print(
        f"{result.events:,} changes from {result.start:%Y-%m-%d %H:%M:%S} to "
        f"{result.end:%Y-%m-%d %H:%M:%S} {result.tz}: {totals}",
        highlight=False,
    )
    if result.bursts:
        console.print(
            frame_table(
                result.bursts_frame(),
                title="bursts (mass changes)",
                whole=("Moment before (restore --at)",),
            )
        )
        for number, burst in enumerate(result.bursts, start=1):
            console.print(
                f"{number}. before the {burst.what} of {burst.collection}: "
                f"{burst.restore_command(result.tenant)}",
                highlight=False,
                markup=False,
            )
    else:
        console.print("no bursts (mass changes) in this range", highlight=False)
    if plot is not None:
        console.print(f"chart written to {plot}", highlight=False, markup=False)


@app.command()
@guarded
def history(
    tenant: TenantOption,
    collection: Annotated[str, typer.Option("--collection", "-c", help="the collection")],
    where: Annotated[
        list[str],
        typer.Option(
            "--where",
            "-w",
            help="field=value (repeat for AND), as `find` reads it",
        ),
    ],
    actor: ActorOption = None,
    since: _TimeOption = None,
    until: _TimeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON, documents too")] = False,
) -> None:
    """Every version of the matching documents through the captured changes: the base
    snapshot's, then each change (when, what changed, the moment before it for
    `restore --at`). Reads only the tenant's backups and change segments."""
    from bson import json_util

    from daai_backup.inspection.history import document_history

    ctx = engine()
    try:
        record = ctx.tenant(tenant)
        tz = ctx.timezone(record)
        result = document_history(
            ctx,
            record,
            collection,
            where,
            actor=actor,
            since=_when(since, tz),
            until=_when(until, tz),
        )
    finally:
        ctx.close()
    if as_json:
        payload = {
            "collection": result.collection,
            "where": [c.text for c in result.conditions],
            "base": result.base_file,
            "base_at": result.base_at.isoformat(),
            "until": result.until.isoformat(),
            "truncated": result.truncated,
            "versions": [
                {
                    "_id": v.id,
                    "at": v.at.isoformat(),
                    "what": v.what,
                    "matches": v.matches,
                    "changes": v.changes,
                    "moment_before": v.moment_before,
                    "document": v.document,
                }
                for v in result.versions
            ],
        }
        typer.echo(json_util.dumps(payload, indent=2, json_options=json_util.RELAXED_JSON_OPTIONS))
        return
    console.print(
        frame_table(
            result.to_frame(),
            title=f"{result.collection}: {result.query} ({result.tenant}, {tz})",
            whole=("Moment before (restore --at)",),
        )
    )
    if result.truncated:
        console.print("more documents match than are followed: narrow the query", highlight=False)
    console.print(
        f"{result.documents} document(s), {len(result.versions)} version(s): from "
        f"{result.base_file} ({result.base_at:%Y-%m-%d %H:%M:%S}) through the captured changes "
        f"to {result.until:%Y-%m-%d %H:%M:%S}",
        highlight=False,
    )
