"""The verify flow (restore drill without a database): read backups whole, check every tag
and CRC, report which file is bad and why, and fail if any is."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from daai_backup.errors import ArchiveError, DaaiBackupError, ObjectNotFound
from flows.common import engine
from tasks.catalog import describe_backup, list_backups
from tasks.verify import verify_backup


@flow(name="verify", flow_run_name="verify-{tenant}", persist_result=False)
def verify(tenant: str, file: str | None = None) -> dict[str, Any]:
    """Verify one backup of the tenant, or all of them."""
    logger = get_run_logger()
    with engine() as ctx:
        who = ctx.tenant(tenant)
        if file is not None:
            files = [describe_backup(ctx, who, file).file]
        else:
            files = [e.file for e in list_backups(ctx, who)]
        good: list[str] = []
        bad: dict[str, str] = {}
        rows: list[dict[str, str]] = []
        for name in files:
            try:
                outcome = verify_backup(ctx, who, name)
            except ObjectNotFound:
                logger.info("tenant %s: %s was deleted meanwhile", who.id, name)
                rows.append({"File": name, "Result": "deleted meanwhile"})
                continue
            except DaaiBackupError as exc:
                bad[name] = f"{type(exc).__name__}: {exc}"
                logger.error("tenant %s: %s is BAD: %s", who.id, name, bad[name])
                rows.append({"File": name, "Result": f"❌ {bad[name]}"})
                continue
            good.append(name)
            rows.append(
                {
                    "File": name,
                    "Result": f"✅ {outcome.namespaces} namespaces, {outcome.documents} documents",
                }
            )
        create_table_artifact(
            rows, key=f"verify-{who.id}", description=f"Verification of {who.id}'s backups"
        )
    if bad:
        raise ArchiveError(
            f"{len(bad)} of {len(files)} backups of {tenant!r} are bad: "
            + "; ".join(f"{f}: {why}" for f, why in bad.items())
        )
    return {"tenant": tenant, "good": good, "bad": bad}
