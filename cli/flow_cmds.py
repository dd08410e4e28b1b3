"""Commands that run the Prefect flows in this process: backup, restore, prune, verify.

Each shows up in the Prefect UI like any other run (``PREFECT_API_URL`` points at the server;
without it Prefect starts a temporary local one). The outcome is one line: the new file, the
restored file, or the reason it failed, with exit status 1 on failure.

Prefect (~3 s to import) is imported inside the commands, never with this module: `--help`
and the light commands registered beside these must not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.app import app, console, fail, is_terminal
from daai_backup.errors import DaaiBackupError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="the tenant id")]


def _outcome(state: State[Any], doing: str) -> Any:
    """The flow's return value, or exit 1 with one line saying why it did not complete."""
    if state.is_completed() and state.name != "Skipped":
        return state.result(raise_on_failure=False)
    if state.name == "Skipped":
        raise fail(f"{doing} skipped: {state.message}")
    error = state.result(raise_on_failure=False)
    if isinstance(error, DaaiBackupError):
        raise fail(str(error))
    if isinstance(error, BaseException):
        raise fail(f"{doing} failed: {type(error).__name__}: {error}")
    raise fail(f"{doing} ended {state.name}: {state.message or 'no message'}")


@contextmanager
def _progress_bar(label: str) -> Iterator[None]:
    """A rich progress bar fed by the tasks' byte counts, when stderr is a terminal."""
    if not is_terminal():
        yield
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from tasks.common import progress_listener

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    ) as bar:
        task_id = bar.add_task(label, total=None)

        def update(done: int, expected: int) -> None:
            bar.update(task_id, completed=done, total=expected or None)

        with progress_listener(update):
            yield


def _run(flow_call: Callable[[], State[Any]], label: str, doing: str) -> Any:
    with _progress_bar(label):
        state = flow_call()
    return _outcome(state, doing)


@app.command()
def backup(
    tenant: TenantOption,
    actor: Annotated[str | None, typer.Option(help="who asks (needs 'create')")] = None,
    note: Annotated[str | None, typer.Option(help="a short note shown in the list")] = None,
) -> None:
    """Backup Now: take a manual backup of the tenant; prints the new file name."""
    from flows.backup import backup as backup_flow

    result = _run(
        lambda: backup_flow(
            tenant=tenant, label="manual", actor=actor, note=note, return_state=True
        ),
        f"backing up {tenant}",
        "backup",
    )
    typer.echo(result["file"])


@app.command()
def restore(
    tenant: TenantOption,
    file: Annotated[str, typer.Option("--file", "-f", help="a backup file name from `list`")],
    actor: Annotated[str, typer.Option(help="who asks (needs 'restore')")],
    confirm: Annotated[
        str, typer.Option(help="the workspace name, typed exactly, to confirm the restore")
    ],
) -> None:
    """Restore a backup after a safety backup; everything after its time is lost."""
    from flows.restore import restore as restore_flow

    result = _run(
        lambda: restore_flow(
            tenant=tenant,
            file=file,
            actor=actor,
            confirm_workspace_name=confirm,
            return_state=True,
        ),
        f"restoring {tenant}",
        "restore",
    )
    console.print(
        f"restored {tenant} from {result['file']} ({result['documents']} documents); "
        f"to go back, restore the safety backup {result['safety_backup']}",
        highlight=False,
    )


@app.command()
def prune(
    tenant: TenantOption,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show, do not delete")] = False,
) -> None:
    """Apply retention to the tenant's backups (never the newest, never a held one)."""
    from flows.retention import retention

    result = _outcome(retention(tenant=tenant, dry_run=dry_run, return_state=True), "retention")
    gone = result["would_delete"] if dry_run else result["deleted"]
    verb = "would delete" if dry_run else "deleted"
    for name in gone:
        console.print(f"{verb} {name}", highlight=False)
    console.print(f"kept {len(result['kept'])}, {verb} {len(gone)}", highlight=False)


@app.command()
def verify(
    tenant: TenantOption,
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="[FILE]", help="one backup file name from `list` (default: every backup)"
        ),
    ] = None,
    file: Annotated[str | None, typer.Option("--file", "-f", help="the same, as an option")] = None,
) -> None:
    """Read backups whole and check every tag and CRC; says which file is bad and why."""
    if name is not None and file is not None and name != file:
        raise fail(f"two backups given ({name} and --file {file}): verify one, or every backup")
    file = file or name
    from flows.verify import verify as verify_flow

    result = _outcome(verify_flow(tenant=tenant, file=file, return_state=True), "verify")
    for name in result["good"]:
        console.print(f"ok   {name}", highlight=False)
    if not result["good"]:
        console.print(f"no backups of {tenant} to verify", highlight=False)
