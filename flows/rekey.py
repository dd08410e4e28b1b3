"""The rekey flow: after a key rotation, re-encrypt every file made under a previous key.

Tenant by tenant, each under its lease (no backup, restore or retention of the tenant runs
meanwhile). One tenant's trouble does not stop the others; the flow fails at the end naming
them. The table artifact ``rekey`` has one row per tenant: what was re-encrypted and how many
files still need each old key (none once the rotation is complete: the old key can then be
dropped from ``BACKUP_ENCRYPTION_PREVIOUS_KEYS``, which ``daai-backup doctor --retire`` checks).
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact

from daai_backup.errors import DaaiBackupError, InvalidName
from flows.common import engine
from flows.refusals import one_line_refusals
from tasks.rekey import rekey_tenant

REKEY_KEY = "rekey"
"""Key of the rekey table artifact (one row per tenant)."""


def _run_name() -> str:
    from prefect.runtime import flow_run

    tenant = flow_run.parameters.get("tenant")
    return f"rekey-{tenant}" if tenant else "rekey-all"


@one_line_refusals
@flow(name="rekey", flow_run_name=_run_name, persist_result=False)
def rekey(tenant: str | None = None, all_tenants: bool = False) -> dict[str, Any]:
    """Re-encrypt one tenant's files (``tenant``) or every tenant's (``all_tenants``) made
    under previous keys to the current key; each new file is fully verified before it
    replaces the old one. Safe to run again: files already under the current key are skipped.
    """
    if (tenant is None) == (not all_tenants) or (tenant is not None and all_tenants):
        raise InvalidName("say which tenants to rekey: a tenant, or all_tenants=true")
    logger = get_run_logger()
    with engine() as ctx:
        current = ctx.settings.keyring.require_current()
        who = [ctx.tenant(tenant)] if tenant is not None else list(ctx.registry.values())
        rows: list[dict[str, str]] = []
        failed: dict[str, str] = {}
        done: dict[str, dict[str, int]] = {}
        progress = cast(
            UUID,
            create_progress_artifact(
                0.0, description=f"Rekey of {len(who)} tenant(s) to key {current.fingerprint}"
            ),
        )
        for n, record in enumerate(who):
            share = (100.0 * n / len(who), 100.0 * (n + 1) / len(who))
            try:
                outcome = rekey_tenant(ctx, record, progress, share)
            except DaaiBackupError as exc:
                failed[record.id] = str(exc)
                logger.error("tenant %s: rekey failed: %s", record.id, exc)
                rows.append({"Tenant": record.id, "Result": f"❌ {exc}", "Still old": "?"})
                continue
            done[record.id] = dict(outcome.rewritten)
            left = ", ".join(f"{fp}: {n}" for fp, n in sorted(outcome.remaining.items()))
            rows.append(
                {"Tenant": record.id, "Result": f"✅ {outcome.summary()}", "Still old": left or "0"}
            )
        create_table_artifact(
            rows,
            key=REKEY_KEY,
            description=(
                f"Rekey to key {current.fingerprint}: {len(done)} of {len(who)} tenants done"
            ),
        )
        if failed:
            raise DaaiBackupError(
                f"rekey failed for {len(failed)} of {len(who)} tenants: "
                + "; ".join(f"{t}: {why}" for t, why in failed.items())
            )
        return {"key": current.fingerprint, "tenants": done}
