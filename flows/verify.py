"""The verify flow (restore drill without a database): read backups whole, check every tag
and CRC, report which file is bad and why, and fail if any is."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from daai_backup.errors import (
    ArchiveError,
    DaaiBackupError,
    KeyMissing,
    ObjectNotFound,
    WrongKey,
)
from flows.common import engine
from flows.refusals import one_line_refusals
from tasks.catalog import describe_backup, list_backups, publish_description
from tasks.verify import verify_backup


@one_line_refusals
@flow(name="verify", flow_run_name="verify-{tenant}", persist_result=False)
def verify(tenant: str, file: str | None = None) -> dict[str, Any]:
    """Verify one backup of the tenant, or all of them; each result is recorded beside it.

    Each backup's manifest is checked against it too (built when missing); what the newest
    good one holds is published as the markdown artifact ``contents-<tenant>``.

    A file that fails a check is reported BAD. A file the configured keys cannot read is
    not bad: it is reported as such, naming the key it needs, and nothing is recorded.
    """
    logger = get_run_logger()
    with engine() as ctx:
        ctx.settings.keyring  # noqa: B018  a malformed key fails here, once, in one line
        who = ctx.tenant(tenant)
        if file is not None:
            files = [describe_backup(ctx, who, file).file]
        else:
            files = [e.file for e in list_backups(ctx, who)]
        good: list[str] = []
        bad: dict[str, str] = {}
        unreadable: dict[str, str] = {}
        rows: list[dict[str, str]] = []
        for name in files:
            try:
                outcome = verify_backup(ctx, who, name)
            except ObjectNotFound:
                logger.info("tenant %s: %s was deleted meanwhile", who.id, name)
                rows.append({"File": name, "Result": "deleted meanwhile"})
                continue
            except (KeyMissing, WrongKey) as exc:
                unreadable[name] = str(exc)
                logger.warning("tenant %s: cannot check %s: %s", who.id, name, exc)
                rows.append({"File": name, "Result": f"🔑 not checked: {exc}"})
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
        if good:
            # What the newest good backup holds (from its manifest, checked just now): the
            # artifact people open to pick a snapshot. A failure here fails no verification.
            try:
                publish_description(ctx, who, good[0])
            except DaaiBackupError as exc:
                logger.warning("tenant %s: contents of %s not published: %s", who.id, good[0], exc)
    problems: list[str] = []
    if bad:
        problems.append(
            f"{len(bad)} of {len(files)} backups of {tenant!r} are bad: "
            + "; ".join(f"{f}: {why}" for f, why in bad.items())
        )
    if unreadable:
        first = next(iter(unreadable.values()))
        problems.append(
            f"{len(unreadable)} of {len(files)} backups of {tenant!r} could not be checked "
            f"with the configured keys (the files may be fine): {first}"
        )
    if problems:
        raise (ArchiveError if bad else WrongKey)("; ".join(problems))
    return {"tenant": tenant, "good": good, "bad": bad}
