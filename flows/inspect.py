"""The diff flow: compare two snapshots of a tenant and publish the table as an artifact.

Support confirms the right snapshot from the Prefect UI with it: which collections differ
between two backups (or a backup and the live database), by how many documents, and
whether indexes or options changed. It only reads; the artifact holds counts, index and
option names and, with ``show``, ``_id``s, never document contents.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.common import engine
from flows.refusals import one_line_refusals
from tasks.inspect import diff_snapshots


@one_line_refusals
@flow(name="diff", flow_run_name="diff-{tenant}", persist_result=False)
def diff(
    tenant: str, a: str, b: str = "live", actor: str | None = None, show: int = 0
) -> dict[str, Any]:
    """Diff backup ``a`` of the tenant against backup ``b`` (default: the live database).

    The actor needs the ``restore`` permission: a diff shows what a restore would change.
    Publishes the ``diff-<tenant>`` markdown artifact and returns the totals.
    """
    with engine() as ctx:
        result = diff_snapshots(ctx, ctx.tenant(tenant), a, b, actor, show)
    create_markdown_artifact(
        result.to_markdown(),
        key=f"diff-{tenant}",
        description=f"Diff of {a} and {b} ({tenant})",
    )
    return {"tenant": tenant, "a": result.a, "b": result.b, **result.totals()}
