"""The verify flow (restore drill without a database): read backups whole, check every tag
and CRC, report which file is bad and why, and fail if any is.

Given a tenant it checks that tenant's backups (one, or all of them). Without a tenant it is
the *drill*: the newest backup of every tenant, which is what the verify deployment's weekly
schedule runs (``DAAI_BACKUP_VERIFY_DRILL_DAYS``, 7 by default). Each result is recorded in
the tenant's folder, where the backup list and the fleet view show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from daai_backup.errors import (
    ArchiveError,
    DaaiBackupError,
    InvalidName,
    KeyMissing,
    ObjectNotFound,
    WrongKey,
)
from daai_backup.operations import EngineContext
from daai_backup.tenants import Tenant
from flows.common import engine
from flows.refusals import one_line_refusals
from tasks.catalog import describe_backup, list_backups, publish_description
from tasks.verify import verify_backup

DRILL_KEY = "verify-drill"
"""Key of the drill's table artifact (one row per tenant)."""


@dataclass
class _Results:
    good: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, str]] = field(default_factory=list)


def _check(ctx: EngineContext, who: Tenant, files: list[str], results: _Results) -> None:
    """Verify ``files`` of one tenant, adding each outcome to ``results``."""
    logger = get_run_logger()
    for name in files:
        row = {"Tenant": who.id, "File": name}
        try:
            outcome = verify_backup(ctx, who, name)
        except ObjectNotFound:
            logger.info("tenant %s: %s was deleted meanwhile", who.id, name)
            results.rows.append({**row, "Result": "deleted meanwhile"})
            continue
        except (KeyMissing, WrongKey) as exc:
            results.unreadable[name] = str(exc)
            logger.warning("tenant %s: cannot check %s: %s", who.id, name, exc)
            results.rows.append({**row, "Result": f"🔑 not checked: {exc}"})
            continue
        except DaaiBackupError as exc:
            results.bad[name] = f"{type(exc).__name__}: {exc}"
            logger.error("tenant %s: %s is BAD: %s", who.id, name, results.bad[name])
            results.rows.append({**row, "Result": f"❌ {results.bad[name]}"})
            continue
        results.good.append(name)
        results.rows.append(
            {**row, "Result": f"✅ {outcome.namespaces} namespaces, {outcome.documents} documents"}
        )


def _raise_problems(results: _Results, checked: int, whose: str) -> None:
    problems: list[str] = []
    if results.bad:
        problems.append(
            f"{len(results.bad)} of {checked} backups of {whose} are bad: "
            + "; ".join(f"{f}: {why}" for f, why in results.bad.items())
        )
    if results.unreadable:
        first = next(iter(results.unreadable.values()))
        problems.append(
            f"{len(results.unreadable)} of {checked} backups of {whose} could not be checked "
            f"with the configured keys (the files may be fine): {first}"
        )
    if problems:
        raise (ArchiveError if results.bad else WrongKey)("; ".join(problems))


def _drill(ctx: EngineContext) -> dict[str, Any]:
    """The newest backup of every tenant; one tenant's trouble does not stop the others."""
    logger = get_run_logger()
    results = _Results()
    skipped: dict[str, str] = {}
    checked = 0
    for who in ctx.registry.values():
        try:
            entries = list_backups(ctx, who)
        except DaaiBackupError as exc:
            skipped[who.id] = f"cannot list: {exc}"
            logger.error("tenant %s: drill skipped: %s", who.id, exc)
            results.rows.append({"Tenant": who.id, "File": "", "Result": f"⚠️ {exc}"})
            continue
        if not entries:
            results.rows.append({"Tenant": who.id, "File": "", "Result": "no backups yet"})
            continue
        checked += 1
        _check(ctx, who, [entries[0].file], results)
    create_table_artifact(
        results.rows,
        key=DRILL_KEY,
        description=(
            f"Restore drill: the newest backup of {len(ctx.registry)} tenants read whole, "
            f"{len(results.good)} good, {len(results.bad)} bad"
        ),
    )
    _raise_problems(results, checked, "the fleet's newest")
    if skipped:
        raise DaaiBackupError(
            f"drill skipped {len(skipped)} tenants: "
            + "; ".join(f"{t}: {why}" for t, why in skipped.items())
        )
    return {"tenant": None, "good": results.good, "bad": results.bad}


def _run_name() -> str:
    from prefect.runtime import flow_run

    tenant = flow_run.parameters.get("tenant")
    return f"verify-{tenant}" if tenant else "verify-drill"


@one_line_refusals
@flow(name="verify", flow_run_name=_run_name, persist_result=False)
def verify(tenant: str | None = None, file: str | None = None) -> dict[str, Any]:
    """Verify one backup of the tenant, or all of them; without a tenant, the newest backup
    of every tenant (the weekly drill). Each result is recorded beside the backup.

    Each backup's manifest is checked against it too (built when missing); what the newest
    good one holds is published as the markdown artifact ``contents-<tenant>``.

    A file that fails a check is reported BAD. A file the configured keys cannot read is
    not bad: it is reported as such, naming the key it needs, and nothing is recorded.
    """
    if tenant is None and file is not None:
        raise InvalidName("file given without tenant: say whose backup it is (--tenant)")
    with engine() as ctx:
        ctx.settings.keyring  # noqa: B018  a malformed key fails here, once, in one line
        if tenant is None:
            return _drill(ctx)
        who = ctx.tenant(tenant)
        if file is not None:
            files = [describe_backup(ctx, who, file).file]
        else:
            files = [e.file for e in list_backups(ctx, who)]
        results = _Results()
        _check(ctx, who, files, results)
        create_table_artifact(
            [{"File": r["File"], "Result": r["Result"]} for r in results.rows],
            key=f"verify-{who.id}",
            description=f"Verification of {who.id}'s backups",
        )
        if results.good:
            # What the newest good backup holds (from its manifest, checked just now): the
            # artifact people open to pick a snapshot. A failure here fails no verification.
            try:
                publish_description(ctx, who, results.good[0])
            except DaaiBackupError as exc:
                get_run_logger().warning(
                    "tenant %s: contents of %s not published: %s", who.id, results.good[0], exc
                )
    _raise_problems(results, len(files), repr(tenant))
    return {"tenant": tenant, "good": results.good, "bad": results.bad}
