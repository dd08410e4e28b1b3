"""The restore flow: refuse early, preview and ask for the workspace name, then, holding the
tenant lease, finish an earlier restore that stopped mid-swap, take the pre-restore safety
backup (a subflow) and run the staged restore, checking the lease right before the swap.

Nothing changes before the confirmation, and nothing live changes if the safety backup fails.

A restore is a maintenance window the suite can act on (:mod:`flows.maintenance`): it emits
``daai-backup.restore.*`` events (requested, maintenance-started, swapping, completed or
failed, maintenance-ended), records the tenant's maintenance flag in the control database
from just before the safety backup until the swap is done, asks the suite's webhook to
confirm the maintenance when one is configured, and reports the live writes made after the
safety backup (which the swap loses).

With ``into``, the backup is loaded into a copy instead (a new database, for inspection;
:func:`daai_backup.operations.restore_copy`): the live database is untouched, so there is no
confirmation and no safety backup, only the permission check and the copy's own refusals.
"""

from __future__ import annotations

from typing import Any, Final

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from daai_backup.errors import (
    ConfirmationMismatch,
    ConfirmationTimeout,
    DaaiBackupError,
    MomentInvalid,
)
from daai_backup.lease import format_duration
from daai_backup.moments import MomentPlan
from daai_backup.operations import EngineContext
from daai_backup.repository import catalog
from daai_backup.repository.catalog import BackupEntry
from daai_backup.tenants import Tenant
from flows.backup import pre_restore_backup
from flows.common import engine, local_time
from flows.maintenance import (
    RESTORE_PREFIX,
    TenantEvents,
    expected_end,
    lost_writes,
    maintenance_window,
)
from flows.pick_backup import ask_which_backup
from flows.refusals import one_line_refusals
from tasks.catalog import describe_backup, list_backups
from tasks.common import tenant_lock
from tasks.copies import preflight_copy, restore_copy
from tasks.restore import (
    discard_restore,
    finish_interrupted_restore,
    plan_moment,
    preflight_restore,
    replay_changes,
    stage_restore,
    swap_restore,
)

CONFIRM_ATTEMPTS: Final = 3
"""Wrong names typed before the run gives up (each is logged)."""

CONFIRM_POLL_SECONDS: Final = 2


class RestoreConfirmation(RunInput):
    """What the person resuming a paused restore types."""

    workspace_name: str = Field(
        description="Type the workspace name exactly as shown to confirm the restore"
    )


def how_to_confirm(tenant: Tenant) -> str:
    """What to type, as the confirmation shows it (in the form and in every mismatch)."""
    return (
        f'type the workspace name exactly as shown: "{tenant.workspace_name}" '
        "(capitals and spaces count)"
    )


def confirmation_text(
    ctx: EngineContext, tenant: Tenant, entry: BackupEntry, moment: MomentPlan | None = None
) -> str:
    """The preview shown with the pause: what is restored and what is lost."""
    when = local_time(ctx, tenant, entry)
    kind = "🔒 encrypted" if entry.encrypted else "🔓 legacy (not encrypted)"
    replayed = []
    if moment is not None:
        taken = when
        when = moment_text(ctx, tenant, moment)
        replayed = [f"| Moment | {when}: the backup, then every captured change up to it |"]
    else:
        taken = when
    return "\n".join(
        [
            f"## Restore {tenant.workspace_name} to {when}?",
            "",
            "| | |",
            "|---|---|",
            f"| Workspace | {tenant.workspace_name} (`{tenant.id}`) |",
            *replayed,
            f"| Backup file | `{entry.file}` |",
            f"| Taken | {taken} |",
            f"| Format | {kind} |",
            "",
            f"**⚠️ Everything changed in {tenant.workspace_name} after {when} will be lost.** "
            "A safety backup is taken first, so this restore itself can be undone.",
            "",
            f"To confirm, type the workspace name exactly: **{tenant.workspace_name}**",
        ]
    )


def moment_text(ctx: EngineContext, tenant: Tenant, plan: MomentPlan) -> str:
    """The moment a restore goes back to, in the tenant's zone, to the second."""
    at = plan.moment.astimezone(catalog.zone(ctx.timezone(tenant)))
    return f"{at:%Y-%m-%d %H:%M:%S %Z}"


def mismatch_notice(tenant: Tenant, attempt: int) -> str:
    """Shown above the preview when the form reopens after a wrong name (markdown)."""
    left = CONFIRM_ATTEMPTS - attempt
    return (
        f"> ❌ **Not restored: attempt {attempt} of {CONFIRM_ATTEMPTS} did not match "
        f"the workspace name.** To confirm, {how_to_confirm(tenant)}; "
        f"{left} attempt{'s' if left != 1 else ''} left."
    )


def ask_confirmation(
    ctx: EngineContext,
    tenant: Tenant,
    entry: BackupEntry,
    timeout: int,
    moment: MomentPlan | None = None,
) -> None:
    """Pause until someone types the workspace name; a wrong name asks again, a few times.

    Each time the form reopens it says which attempt did not match and what to type. No
    answer within ``timeout`` seconds raises ``ConfirmationTimeout``.
    """
    logger = get_run_logger()
    preview = confirmation_text(ctx, tenant, entry, moment)
    description = preview
    for attempt in range(1, CONFIRM_ATTEMPTS + 1):
        form = RestoreConfirmation.with_initial_data(description=description)
        try:
            answer = pause_flow_run(
                wait_for_input=form, timeout=timeout, poll_interval=CONFIRM_POLL_SECONDS
            )
        except FlowPauseTimeout:
            # Nobody answered: an expected end (a refusal), not a crash of the flow.
            raise ConfirmationTimeout(
                f"the restore of {tenant.id!r} was never resumed: nobody confirmed it within "
                f"{format_duration(timeout)}, nothing changed; start it again to be asked again"
            ) from None
        if answer.workspace_name == tenant.workspace_name:
            logger.info("tenant %s: restore of %s confirmed", tenant.id, entry.file)
            return
        logger.warning(
            "tenant %s: confirmation %d of %d did not match the workspace name",
            tenant.id,
            attempt,
            CONFIRM_ATTEMPTS,
        )
        description = f"{mismatch_notice(tenant, attempt)}\n\n{preview}"
    raise ConfirmationMismatch(
        f"the workspace name was typed wrong {CONFIRM_ATTEMPTS} times: restore of "
        f"{tenant.id!r} cancelled, nothing changed; to restore, start it again and "
        f"{how_to_confirm(tenant)}"
    )


@one_line_refusals
@flow(name="restore", flow_run_name="restore-{tenant}", persist_result=False)
def restore(
    tenant: str,
    file: str | None = None,
    actor: str | None = None,
    confirm_workspace_name: str | None = None,
    confirm_timeout_seconds: int = 3600,
    into: str | None = None,
    replace: bool = False,
    at: str | None = None,
) -> dict[str, Any]:
    """Restore one of the tenant's backups after confirmation and a safety backup, or load
    it into a copy for inspection.

    Args:
        tenant: The tenant's id, e.g. acme-hr.
        file: The backup to restore, as the backup list shows it. Leave empty to pick it
            from the tenant's backups in a form.
        actor: Who asks for the restore (your name or email); needs the restore permission.
        confirm_workspace_name: The workspace name typed exactly. Leave empty to be shown
            what will be restored and asked to type it in a form.
        confirm_timeout_seconds: How long the forms wait for an answer before the restore
            is cancelled with nothing changed.
        into: Load the backup into this new database instead, for inspection (e.g.
            acme_hr_copy): the live workspace is untouched, so nothing is confirmed and no
            safety backup is taken. The copy is dropped after DAAI_BACKUP_COPY_TTL_DAYS days
            (3 by default). Leave empty to restore the workspace itself.
        replace: With into: replace a copy of this tenant that already has that name.
        at: Restore to this moment instead of a backup's time, to the second, e.g.
            2026-11-28 14:31:59 (the tenant's time zone unless the text names one, such as
            "2026-11-28 09:01:59 UTC"): the newest backup before it is loaded and every
            captured change up to and including that second is replayed onto it. Needs
            change capture; leave file and into empty. A moment not covered is refused
            with the recoverable ranges.
    """
    with engine() as ctx:
        who = ctx.tenant(tenant)
        events = TenantEvents(RESTORE_PREFIX, who, actor=actor, file=file, at=at, into=into)
        events.emit("requested")
        try:
            return restore_with_events(
                ctx,
                who,
                events,
                file,
                actor,
                confirm_workspace_name,
                confirm_timeout_seconds,
                into,
                replace,
                at,
            )
        except BaseException as exc:
            # Refused before the window, or failed in it (then already reported).
            events.failed(exc, live_changed=False, refused=isinstance(exc, DaaiBackupError))
            raise


def restore_with_events(
    ctx: EngineContext,
    who: Tenant,
    events: TenantEvents,
    file: str | None,
    actor: str | None,
    confirm_workspace_name: str | None,
    confirm_timeout_seconds: int,
    into: str | None,
    replace: bool,
    at: str | None,
) -> dict[str, Any]:
    """The restore flow's body, telling ``events`` what happens (see :func:`restore`)."""
    logger = get_run_logger()
    moment = None
    if at is not None:
        if file is not None or into is not None:
            raise MomentInvalid(
                "a restore to a moment picks its own backup and restores the workspace "
                "itself: give at alone, without file or into"
            )
        who.require(actor, "restore")
        moment = plan_moment(ctx, who, at)
        file = events.file = moment.file
        events.at = moment.moment.isoformat()
    if file is None:
        who.require(actor, "restore")  # the list shows the tenant's data: check first
        file = ask_which_backup(ctx, who, list_backups(ctx, who), confirm_timeout_seconds)
        events.file = file
    if into is not None:
        result = load_copy(ctx, who, file, into, actor, replace)
        events.completed(
            live_database_changed=False,
            collections=result["collections"],
            documents=result["documents"],
            expires_at=result["expires_at"],
        )
        return result
    # Everything that can be checked is checked before anyone is asked to confirm.
    entry = preflight_restore(ctx, who, file, actor)
    if confirm_workspace_name is None:
        ask_confirmation(ctx, who, entry, confirm_timeout_seconds, moment)
    elif confirm_workspace_name != who.workspace_name:
        raise ConfirmationMismatch(
            f"the confirmation {confirm_workspace_name!r} does not match the workspace "
            f"name of tenant {who.id!r}: {how_to_confirm(who)}; nothing changed"
        )
    with tenant_lock(ctx, who.id, "restore", detail=file) as lease:
        describe_backup(ctx, who, file)  # still there after the wait for the lease
        # A torn database (an earlier restore stopped mid-swap) is finished first, so the
        # safety backup holds that earlier restore whole, never a mix of two states.
        lease.check()
        finish_interrupted_restore(ctx, who)
        # Load and verify first: a bad archive fails here and costs no safety backup.
        staged = stage_restore(ctx, who, file)
        try:
            if moment is not None:
                # Onto the staged copy only; verified again before anything live changes.
                staged = replay_changes(ctx, who, staged, moment)
            lease.check()
            # The window opens only now (staging is long and harmless): from the flag and
            # the handshake on, the suite keeps users out while the safety backup is taken
            # and the staged copy swapped in.
            with maintenance_window(
                ctx,
                who,
                lease,
                events,
                operation="restore" if moment is None else "restore to a moment",
                detail=file if moment is None else moment_text(ctx, who, moment),
                ends_at=expected_end(staged.duration_s),
            ) as window:
                # The safety backup is taken as late as possible, so it holds the live
                # state right before the swap (the staging collections are never dumped).
                # Who restored what is kept with the backup that precedes it: the safety
                # backup's manifest holds the restoring actor, its note the restored file.
                restoring = file if moment is None else f"{file} to {moment_text(ctx, who, moment)}"
                safety = pre_restore_backup(tenant=who.id, actor=actor, restoring=restoring)
                logger.info("tenant %s: safety backup %s taken", who.id, safety["file"])
                lease.check()
                lost = lost_writes(ctx, who, safety["file"])
                if lost:
                    logger.warning(
                        "tenant %s: %d write(s) to the live database after the safety backup "
                        "are lost by this restore (the safety backup does not hold them)",
                        who.id,
                        lost,
                    )
                events.emit("swapping", safety_backup=safety["file"], lost_writes=lost)
                window.swapping = True
                outcome = swap_restore(ctx, who, staged)
                window.live_changed = True
                events.completed(
                    live_database_changed=True,
                    safety_backup=safety["file"],
                    lost_writes=lost,
                    collections=outcome.collections,
                    documents=outcome.documents,
                    replayed_events=staged.replayed_events,
                    duration_s=round(outcome.duration_s, 3),
                )
        except BaseException:
            # Still staged (not swapping): drop the copy, live data was never touched.
            # Mid-swap: left for the next restore to finish.
            discard_restore(ctx, who, staged)
            raise
    when = local_time(ctx, who, entry) if moment is None else moment_text(ctx, who, moment)
    replayed = (
        []
        if moment is None
        else [f"- {staged.replayed_events} captured changes replayed onto it, up to {when}"]
    )
    lost_line = (
        []
        if lost is None
        else [
            f"- Writes after the safety backup, lost: {lost}"
            if lost
            else "- No writes after the safety backup: nothing lost"
        ]
    )
    create_markdown_artifact(
        "\n".join(
            [
                f"## {who.workspace_name} restored to {when}",
                "",
                f"- Restored from `{file}` by {actor}",
                *replayed,
                f"- {outcome.collections} collections, {outcome.documents} documents, "
                f"{outcome.views} views; dropped: {', '.join(outcome.dropped) or 'none'}",
                *lost_line,
                f"- Took {outcome.duration_s:.1f} s",
                "",
                f"**To go back**, restore the safety backup `{safety['file']}`.",
            ]
        ),
        key=f"restore-{who.id}",
        description=f"Restore of {who.id} from {file}",
    )
    return {
        "tenant": who.id,
        "file": file,
        "safety_backup": safety["file"],
        "actor": actor,
        "collections": outcome.collections,
        "documents": outcome.documents,
        "at": None if moment is None else moment.moment.isoformat(),
        "replayed_events": staged.replayed_events,
        "lost_writes": lost,
    }


def load_copy(
    ctx: EngineContext, tenant: Tenant, file: str, into: str, actor: str | None, replace: bool
) -> dict[str, Any]:
    """The restore flow's ``into`` branch: refuse early, load the copy, say where it is."""
    entry = preflight_copy(ctx, tenant, file, into, actor, replace)
    outcome = restore_copy(ctx, tenant, file, into, actor, replace)
    when = local_time(ctx, tenant, entry)
    expires = outcome.expires_at.astimezone(catalog.zone(ctx.timezone(tenant)))
    create_markdown_artifact(
        "\n".join(
            [
                f"## Copy of {tenant.workspace_name} as of {when}: `{into}`",
                "",
                f"- Loaded from `{file}` by {actor}; the live workspace was not touched",
                f"- {outcome.collections} collections, {outcome.documents} documents, "
                f"{outcome.views} views, in {outcome.duration_s:.1f} s",
                f"- **Expires {expires:%Y-%m-%d %H:%M %Z}**: the retention sweep drops it then "
                f"(`daai-backup copies --tenant {tenant.id} --drop {into}` drops it sooner)",
            ]
        ),
        key=f"restore-copy-{tenant.id}",
        description=f"Copy of {tenant.id} from {file} in database {into}",
    )
    return {
        "tenant": tenant.id,
        "file": file,
        "into": into,
        "expires_at": outcome.expires_at.isoformat(),
        "collections": outcome.collections,
        "documents": outcome.documents,
    }
