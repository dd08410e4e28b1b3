"""Commands that look inside backups without touching the live database: diff, find.

They call the engine directly (no Prefect, no flow run): reading is all they do. The
``diff`` flow (``flows/inspect.py``) publishes the same table as a markdown artifact for
the Prefect UI.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from cli.app import app, console, err_console, fail, guarded
from cli.context import engine

if TYPE_CHECKING:
    import pandas as pd

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="the tenant id")]
ActorOption = Annotated[
    str | None, typer.Option(help="who asks (needs 'restore': it shows backup contents)")
]


def frame_table(
    frame: pd.DataFrame, title: str | None = None, *, whole: tuple[str, ...] = ()
) -> Table:
    """A DataFrame as a rich table (numbers right-aligned; ``whole`` columns never wrap, so
    a file name can be copied from them)."""
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        numeric = frame[column].dtype.kind in "iuf"
        table.add_column(
            str(column),
            justify="right" if numeric else "left",
            overflow="fold",
            no_wrap=column in whole,
        )
    for row in frame.itertuples(index=False):
        table.add_row(
            *(f"{v:,}" if isinstance(v, int) else escape(str(v)) for v in row),
        )
    return table


@app.command()
@guarded
def diff(
    a: Annotated[str, typer.Argument(metavar="A", help="a backup file name from `list`")],
    b: Annotated[
        str,
        typer.Argument(metavar="B", help="another backup file name, or `live` (the database)"),
    ],
    tenant: TenantOption,
    actor: ActorOption = None,
    show: Annotated[
        int, typer.Option(min=0, help="list up to N added, removed and changed _ids per collection")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """What differs from backup A to B, per collection: documents added, removed, changed;
    indexes and options. Reads both once; nothing is changed."""
    from daai_backup.inspection import diff_backups

    ctx = engine()
    try:
        result = diff_backups(ctx, ctx.tenant(tenant), a, b, actor=actor, show=show)
    finally:
        ctx.close()
    if as_json:
        records: list[dict[str, Any]] = []
        for c in result.collections:
            record = c.row()
            record.update(
                added_ids=c.added_ids, removed_ids=c.removed_ids, changed_ids=c.changed_ids
            )
            records.append(record)
        payload = {"a": result.a, "b": result.b, "collections": records, **result.totals()}
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    console.print(frame_table(result.to_frame(), title=f"{result.a} -> {result.b}"))
    examples = list(result.examples())
    if examples:
        console.print("documents (+ added, - removed, ~ changed):", highlight=False)
        for line in examples:
            console.print(f"  {line}", highlight=False, markup=False)
    console.print(result.summary(), highlight=False)


def _moment(text: str | None, tz: ZoneInfo, *, end: bool) -> datetime | None:
    """A date or date-time in the tenant's time zone (unless it names one), as UTC; a bare
    date as --until means the end of that day."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(
            f"{text!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (the tenant's time zone)"
        ) from None
    if end and len(text) == 10:  # a bare date: the whole day
        moment = datetime.combine(moment.date(), time.max)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


@app.command()
@guarded
def find(
    tenant: TenantOption,
    collection: Annotated[str, typer.Option("--collection", "-c", help="the collection")],
    where: Annotated[
        list[str],
        typer.Option(
            "--where",
            "-w",
            help="field=value (repeat for AND); the value is JSON if it parses "
            '(100, true, "100"), else text; 24 hex digits also match that ObjectId',
        ),
    ],
    actor: ActorOption = None,
    file: Annotated[
        list[str] | None, typer.Option("--file", "-f", help="only this backup (repeatable)")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="only backups taken at or after (YYYY-MM-DD[THH:MM])")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="only backups taken at or before (YYYY-MM-DD[THH:MM])")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON, documents too")] = False,
) -> None:
    """Which snapshots hold documents matching --where, newest first, and what changed in
    each from the snapshot before. Reads every backup chosen once; nothing is changed."""
    from bson import json_util

    from daai_backup.inspection import find_versions
    from daai_backup.repository.catalog import zone

    ctx = engine()
    try:
        record = ctx.tenant(tenant)
        tz = zone(ctx.timezone(record))

        def progress(number: int, total: int, name: str) -> None:
            if not as_json:
                err_console.print(f"reading {number}/{total} {name}", highlight=False)

        result = find_versions(
            ctx,
            record,
            collection,
            where,
            actor=actor,
            files=file or (),
            since=_moment(since, tz, end=False),
            until=_moment(until, tz, end=True),
            progress=progress,
        )
    finally:
        ctx.close()
    if as_json:
        versions = [
            {
                "file": v.file,
                "taken_at": v.taken_at.isoformat(),
                "_id": v.id,
                "status": v.status,
                "matches": v.matches,
                "changes": v.changes,
                "document": v.document,
            }
            for v in result.versions
        ]
        payload = {
            "collection": result.collection,
            "where": [c.text for c in result.conditions],
            "snapshots": result.snapshots,
            "holding": result.holding(),
            "truncated": result.truncated,
            "versions": versions,
        }
        typer.echo(json_util.dumps(payload, indent=2, json_options=json_util.RELAXED_JSON_OPTIONS))
        return
    holding = result.holding()
    if not result.documents:
        raise fail(
            f"no document of {collection!r} matches {result.query} in the {result.snapshots} "
            "snapshot(s) read"
        )
    table = frame_table(
        result.to_frame(tz), title=f"{collection}: {result.query}", whole=("Snapshot",)
    )
    console.print(table)
    if result.truncated:
        console.print(
            "more documents match than are followed: narrow the query with another --where",
            highlight=False,
        )
    console.print(
        f"{result.documents} document(s) match {result.query}; {len(holding)} of "
        f"{result.snapshots} snapshot(s) hold a match"
        + (f", the newest {holding[0]}" if holding else ""),
        highlight=False,
    )
