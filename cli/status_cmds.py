"""``daai-backup status``: every tenant at a glance (the fleet view, as the ``fleet`` flow
publishes it), without needing a Prefect server.

With ``PREFECT_API_URL`` set, each tenant's newest finished backup run is read from Prefect
(so ``failing`` can be shown); without it, or when the server does not answer, the last-run
column shows ``—`` and a note says that ``failing`` is unknown. Everything else comes from
storage, the verification records, the leases and the key, as in the flow.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cli.app import app, console, guarded
from cli.context import engine

if TYPE_CHECKING:  # the fleet module needs pandas: imported when `status` runs, not before
    from daai_backup.fleet import LastRun


def state_styles() -> dict[str, str]:
    from daai_backup import fleet as rules

    return {
        rules.FAILING: "bold red",
        rules.NO_KEY: "bold red",
        rules.OVERDUE: "red",
        rules.UNKNOWN: "yellow",
        rules.WAITING: "yellow",
        rules.SUSPENDED: "dim",
        rules.OK: "green",
    }


TABLE_MIN_WIDTH = 180
"""Below this many columns one line per tenant reads better than a squeezed table."""


def run_history(
    tenant_ids: list[str],
) -> tuple[dict[str, LastRun | None] | None, dict[str, datetime] | None, str | None]:
    """(last runs, registration times, note) from Prefect when a server is configured."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return (
            None,
            None,
            (
                "no Prefect server (PREFECT_API_URL is not set): whether a tenant's last run "
                "failed is unknown"
            ),
        )
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        return (
            None,
            None,
            (
                f"the Prefect server at {url} does not answer ({type(problem).__name__}): "
                "whether a tenant's last run failed is unknown"
            ),
        )
    from flows.fleet import read_run_history

    last_runs, registered_at = read_run_history(tenant_ids)
    return last_runs, registered_at, None


def _line(row: dict[str, str]) -> str:
    parts = [f"{row['Tenant']:<16} {row['State']:<9} {row['Frequency']}"]
    if row["Last good backup"] != "none":
        parts.append(f"last good {row['Last good backup']} ({row['Age']} ago, {row['Size']})")
    else:
        parts.append("no good backup")
    parts.append(f"next {row['Next run']}")
    parts.append(f"quota {row['Quota']}")
    if row["Held"]:
        parts.append(f"{row['Held']} held")
    if row["Lease"]:
        parts.append(f"lease: {row['Lease']}")
    if row["Maintenance"]:
        parts.append(f"IN MAINTENANCE: {row['Maintenance']}")
    parts.append(f"last run {row['Last run']}")
    line = "  ".join(parts)
    return f"{line}  — {row['Detail']}" if row["Detail"] else line


@app.command()
@guarded
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every tenant at a glance: state, last good backup, next run, quota, holds, lease."""
    from daai_backup import fleet as rules
    from daai_backup.operations import fleet_view

    ctx = engine()
    try:
        last_runs, registered_at, note = run_history(list(ctx.registry))
        view = fleet_view(
            ctx, now=datetime.now(UTC), last_runs=last_runs, registered_at=registered_at
        )
    finally:
        ctx.close()
    notes = ([note] if note else []) + view.notes
    if as_json:
        payload: dict[str, Any] = {
            "at": view.now.isoformat(timespec="seconds"),
            "counts": rules.counts(view.table),
            "tenants": rules.json_records(view.table),
            "notes": notes,
        }
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    rows = rules.display_rows(view.table)
    console.print(rules.summary(view.table, view.now).replace("**", ""), highlight=False)
    if console.width >= TABLE_MIN_WIDTH:
        table = Table()
        for column in rules.DISPLAY_COLUMNS:
            table.add_column(
                column, no_wrap=column not in ("Detail", "Lease", "Maintenance", "Frequency")
            )
        for row in rows:
            style = state_styles().get(row["State"], "")
            cells = [
                f"[{style}]{row[c]}[/]" if c == "State" and style else row[c]
                for c in rules.DISPLAY_COLUMNS
            ]
            table.add_row(*cells)
        console.print(table)
    else:
        for row in rows:
            console.print(_line(row), highlight=False, markup=False)
    for text in notes:
        console.print(f"note: {text}", highlight=False, markup=False)
