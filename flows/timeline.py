"""The timeline flow: a tenant's write activity and its mass changes, as artifacts.

Support finds the second to restore to from the Prefect UI with it. Two artifacts, keyed
per tenant so each run adds a version:

- ``timeline-<tenant>``: a *table* artifact, one row per bucket (a minute, or coarser for a
  long range) and collection: inserts, updates, replaces, deletes, DDL;
- ``timeline-chart-<tenant>``: a *markdown* artifact with the bursts (what, collection,
  first and last second, counts, the moment before for ``restore --at``) and the chart,
  embedded as a ``data:image/png;base64`` image. The Prefect UI renders markdown artifacts
  through a sanitizer that keeps ``data:`` images (its image artifact type shows an image
  from a URL too, but prints that URL under it, and a URL needs the PNG stored somewhere the
  browser can reach). The chart holds counts and collection names only.

It only reads (the tenant's change segments) and needs ``restore``: it shows the tenant's
activity.
"""

from __future__ import annotations

import base64
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from daai_backup.inspection.chart import timeline_png
from daai_backup.inspection.timeline import Timeline
from daai_backup.moments import parse_moment
from flows.common import engine
from flows.refusals import one_line_refusals
from tasks.activity import change_timeline


def chart_markdown(result: Timeline) -> str:
    """The bursts as a markdown table, then the chart as an embedded PNG."""
    lines = [
        f"# Changes of {result.tenant}",
        "",
        f"{result.events:,} changes from {result.start:%Y-%m-%d %H:%M:%S} to "
        f"{result.end:%Y-%m-%d %H:%M:%S} ({result.tz}).",
        "",
    ]
    if result.bursts:
        lines += [
            "| # | what | collection | first | last | changes | moment before (restore at) |",
            "|---|---|---|---|---|---|---|",
        ]
        for number, b in enumerate(result.bursts, start=1):
            counts = ", ".join(f"{n:,} {k}" for k, n in b.counts.items() if n)
            detail = f" ({b.detail})" if b.detail else ""
            lines.append(
                f"| {number} | {b.what} | {b.collection} | {b.first:%Y-%m-%d %H:%M:%S} | "
                f"{b.last:%Y-%m-%d %H:%M:%S} | {counts}{detail} | `{b.at}` |"
            )
    else:
        lines.append("No bursts (mass changes) in this range.")
    png = base64.b64encode(timeline_png(result)).decode()
    lines += ["", f"![changes of {result.tenant}](data:image/png;base64,{png})", ""]
    return "\n".join(lines)


@one_line_refusals
@flow(name="timeline", flow_run_name="timeline-{tenant}", persist_result=False)
def timeline(
    tenant: str,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """The tenant's changes per minute and collection from its captured changes, and the
    bursts that look like mass changes, each with the moment before it (``since``/``until``:
    ``2026-11-28 14:00:00`` in the tenant's zone, or naming one). The actor needs
    ``restore``. Publishes the ``timeline-<tenant>`` table and ``timeline-chart-<tenant>``
    markdown artifacts; returns the totals and the bursts' moments before."""
    with engine() as ctx:
        record = ctx.tenant(tenant)
        tz = ctx.timezone(record)
        start = parse_moment(since, tz) if since else None
        end = parse_moment(until, tz) if until else None
        result = change_timeline(ctx, record, actor, start, end)
    rows: list[dict[str, Any]] = [
        {str(k): v for k, v in row.items()} for row in result.table().to_dict(orient="records")
    ]
    minutes = result.bucket_seconds // 60
    create_table_artifact(
        rows or [{"Bucket": "", "Collection": "(no changes)"}],
        key=f"timeline-{tenant}",
        description=f"Changes of {tenant} per {minutes} minute(s) ({result.tz})",
    )
    create_markdown_artifact(
        chart_markdown(result),
        key=f"timeline-chart-{tenant}",
        description=f"Bursts and chart of {tenant}'s changes",
    )
    return {
        "tenant": tenant,
        "events": result.events,
        "totals": result.totals(),
        "bursts": [
            {"what": b.what, "collection": b.collection, "moment_before": b.at}
            for b in result.bursts
        ],
    }
