"""The restore's backup picker: a form whose one field is a choice of the tenant's backups.

A restore started from the UI without a file (``file`` left empty) pauses with this form
instead of asking anyone to copy a file name. Each choice reads as the product's backup list
does (date and time in the tenant's zone, label, size, encrypted or legacy, note, held) and
ends with the file name, which is how the answer is mapped back to a backup: the answer is
checked against the choices the flow offered, never used as a name on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, cast

from prefect import get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field, create_model

from daai_backup.errors import ObjectNotFound
from daai_backup.operations import EngineContext
from daai_backup.repository.catalog import BackupEntry, human_size, newest_first
from daai_backup.tenants import Tenant
from flows.common import local_time

MAX_CHOICES: Final = 200
"""The newest this many backups are offered (a form is not a search engine)."""
PICK_POLL_SECONDS: Final = 2


def choice_label(ctx: EngineContext, tenant: Tenant, entry: BackupEntry) -> str:
    """One choice, e.g. ``2026-11-27 01:12 IST · 15-day · 12.4 MB · 🔒 · month end · <file>``."""
    parts = [
        local_time(ctx, tenant, entry),
        entry.frequency,
        human_size(entry.size_bytes),
        "🔒 encrypted" if entry.encrypted else "🔓 legacy",
    ]
    if entry.held:
        parts.append("📌 held")
    if entry.note:
        parts.append(entry.note)
    parts.append(entry.file)
    return " · ".join(parts)


def picker_form(choices: Sequence[str]) -> type[RunInput]:
    """A ``RunInput`` whose ``backup`` field is a choice of exactly ``choices`` (a select)."""
    options = cast(Any, Literal).__getitem__(tuple(choices))
    model = create_model(
        "ChooseBackup",
        __base__=RunInput,
        backup=(
            options,
            Field(description="The backup to restore (newest first); a confirmation follows"),
        ),
    )
    return model


def ask_which_backup(
    ctx: EngineContext, tenant: Tenant, entries: Sequence[BackupEntry], timeout: int
) -> str:
    """Pause until someone picks one of ``entries``; returns its file name."""
    offered = newest_first(entries)[:MAX_CHOICES]
    if not offered:
        raise ObjectNotFound(
            f"tenant {tenant.id!r} has no backups to restore yet: take one with Backup Now"
        )
    labels = {choice_label(ctx, tenant, e): e.file for e in offered}
    description = "\n".join(
        [
            f"## Which backup of {tenant.workspace_name} should be restored?",
            "",
            f"The newest {len(offered)} of {len(entries)} backups, newest first, times in "
            f"{ctx.timezone(tenant)}. Pick one; you will be asked to confirm with the "
            "workspace name before anything changes.",
        ]
    )
    form = picker_form(list(labels)).with_initial_data(description=description)
    answer = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=PICK_POLL_SECONDS)
    picked = labels[str(answer.backup)]  # type: ignore[attr-defined]
    get_run_logger().info("tenant %s: %s picked for the restore", tenant.id, picked)
    return picked
