"""Commands that run the Prefect flows in this process: backup, restore, prune, verify.

Each shows up in the Prefect UI like any other run (``PREFECT_API_URL`` points at the server;
without it Prefect starts a temporary local one). The outcome is one line, and the last line
of the output: the new file, the restored file, or the reason it failed, with exit status 1
on failure. A refusal (a :class:`~daai_backup.errors.DaaiBackupError`, the run's state message)
is printed as it is; anything else is a bug, printed with where the run's full log (with the
traceback) is: its page in the Prefect UI.

Prefect (~3 s to import) is imported inside the commands, never with this module: `--help`
and the light commands registered beside these must not pay for it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from cli.app import app, console, fail, is_terminal
from daai_backup.errors import DaaiBackupError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="the tenant id")]


SETTLE_SECONDS: Final = 10.0
"""How long the command waits for Prefect to send the run's last logs and events."""


def _settle_prefect() -> None:
    """Let Prefect finish its background work before the command prints its last line.

    The run's last log lines and events are still queued in Prefect's workers; drained at
    interpreter exit, they would print after the command's line (a "Still processing items"
    warning was seen there). Here the command waits for them on purpose, so that progress
    warning is not shown. Without ``PREFECT_API_URL`` the temporary server this command
    started is stopped now too, for the same reason ("Stopping temporary server").
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL

    # Each queue service logs its progress on a logger named after its class.
    progress = [logging.getLogger(worker.__name__) for worker in (APILogWorker, EventsWorker)]
    levels = [logger.level for logger in progress]
    for logger in progress:
        logger.setLevel(logging.ERROR)
    try:
        APILogWorker.drain_all(timeout=SETTLE_SECONDS)
        EventsWorker.drain_all(timeout=SETTLE_SECONDS)
    finally:
        for logger, level in zip(progress, levels, strict=True):
            logger.setLevel(level)
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is not None and not PREFECT_API_URL.value():
        for server in list(server_module.SubprocessASGIServer._instances.values()):
            server.stop()


def _run_log(state: State[Any]) -> str:
    """Where the run's full log is, for a line about an unexpected failure."""
    from prefect.utilities.urls import url_for

    run_id = state.state_details.flow_run_id
    url = url_for("flow-run", obj_id=run_id) if run_id else None
    if url:
        return f"the run's full log: {url}"
    return "the run's full log is above (set PREFECT_API_URL to keep runs on a Prefect server)"


def _one_line(text: str) -> str:
    """``text`` on one line (an unexpected error's message may span several)."""
    return " ".join(text.split())


def _outcome(state: State[Any], doing: str) -> Any:
    """The flow's return value, or exit 1 with one line saying why it did not complete.

    Prints nothing itself on success (the command prints its result): either way, the
    command's line comes after Prefect's last word (:func:`_settle_prefect`).
    """
    _settle_prefect()
    if state.is_completed() and state.name != "Skipped":
        return state.result(raise_on_failure=False)
    if state.name == "Skipped":
        raise fail(_one_line(f"{doing} skipped: {state.message}"))
    error = state.result(raise_on_failure=False)
    if isinstance(error, DaaiBackupError):
        raise fail(_one_line(str(error)))
    if isinstance(error, BaseException):
        raise fail(
            _one_line(f"{doing} failed unexpectedly: {type(error).__name__}: {error}")
            + f"; {_run_log(state)}"
        )
    raise fail(
        _one_line(f"{doing} ended {state.name}: {state.message or 'no message'}")
        + f"; {_run_log(state)}"
    )


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


def as_run_of(flow: Any, deployment: str, parameters: dict[str, Any]) -> State[Any]:
    """Run ``flow`` here as a run of ``deployment`` (its page, its tags) when it exists."""
    from cli.runs import run_as_deployment_run

    try:
        return run_as_deployment_run(flow, deployment, parameters)
    except DaaiBackupError as exc:  # the server refused to create the run
        raise fail(str(exc)) from None


@contextmanager
def _say_when_waiting() -> Iterator[None]:
    """While the run waits for the tenant's lease held by another operation, print one line
    on stderr saying for what and how long so far ("waiting for the restore of acme to
    finish (12 s)"), at once and then every 10 s, instead of a silent wait."""
    from daai_backup.lease import LeaseInfo, waiting_line
    from tasks.common import wait_listener

    def say(holder: LeaseInfo, waited: float) -> None:
        print(waiting_line(holder, waited), file=sys.stderr, flush=True)

    with wait_listener(say):
        yield


def _run(flow_call: Callable[[], State[Any]], label: str, doing: str) -> Any:
    with _progress_bar(label), _say_when_waiting():
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

    parameters = {"tenant": tenant, "label": "manual", "actor": actor, "note": note}
    result = _run(
        # Without an actor the flow refuses in the product's own line; the deployment's
        # parameter schema (actor required) would refuse it in the server's words instead.
        lambda: (
            as_run_of(backup_flow, f"backup/backup-{tenant}", parameters)
            if actor
            else backup_flow(**parameters, return_state=True)
        ),
        f"backing up {tenant}",
        "backup",
    )
    typer.echo(result["file"])


@app.command()
def restore(
    tenant: TenantOption,
    actor: Annotated[str, typer.Option(help="who asks (needs 'restore')")],
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="a backup file name from `list`")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            help='restore to this moment instead, to the second: "2026-11-28 14:31:59" (the '
            "tenant's time zone unless the text names one); needs change capture"
        ),
    ] = None,
    confirm: Annotated[
        str | None,
        typer.Option(help="the workspace name, typed exactly, to confirm the restore"),
    ] = None,
    into: Annotated[
        str | None,
        typer.Option(
            help="load the backup into this new database instead, for inspection (the live "
            "workspace is untouched; no --confirm needed; expires after "
            "DAAI_BACKUP_COPY_TTL_DAYS days)"
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="with --into: replace this tenant's copy of that name")
    ] = False,
) -> None:
    """Restore a backup after a safety backup (everything after its time is lost), or restore
    to a moment (--at), or load a backup into a copy with --into."""
    from flows.restore import restore as restore_flow

    if (file is None) == (at is None):
        raise fail(
            "name what to restore: a backup with --file F (from `list`), or a moment with "
            '--at "2026-11-28 14:31:59"'
        )
    if at is not None and into is not None:
        raise fail("--at restores the workspace itself; --into loads a backup (--file) into a copy")

    if into is None and confirm is None:
        raise fail(
            'a restore replaces the live workspace: confirm it with --confirm "Workspace '
            'Name" (typed exactly), or load the backup into a copy with --into NAME'
        )
    if into is None and replace:
        raise fail("--replace goes with --into (it replaces a copy, never the live workspace)")
    parameters: dict[str, Any] = {"tenant": tenant, "actor": actor}
    parameters |= {"file": file} if at is None else {"at": at}
    if into is None:
        parameters["confirm_workspace_name"] = confirm
    else:
        parameters |= {"into": into, "replace": replace}
    result = _run(
        lambda: as_run_of(restore_flow, "restore/restore", parameters),
        f"loading a copy of {tenant}" if into else f"restoring {tenant}",
        "restore",
    )
    if into is not None:
        console.print(
            f"loaded {result['file']} of {tenant} into the copy {result['into']} "
            f"({result['documents']} documents); the live workspace was not touched; it expires "
            f"{result['expires_at'][:16].replace('T', ' ')} UTC (`daai-backup copies --tenant "
            f"{tenant}`)",
            highlight=False,
        )
        return
    reached = (
        f" and {result['replayed_events']} captured changes, to {at}" if result.get("at") else ""
    )
    console.print(
        f"restored {tenant} from {result['file']}{reached} ({result['documents']} documents); "
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

    state = as_run_of(retention, "retention/retention", {"tenant": tenant, "dry_run": dry_run})
    result = _outcome(state, "retention")
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

    state = as_run_of(verify_flow, "verify/verify", {"tenant": tenant, "file": file})
    result = _outcome(state, "verify")
    for name in result["good"]:
        console.print(f"ok   {name}", highlight=False)
    if not result["good"]:
        console.print(f"no backups of {tenant} to verify", highlight=False)


@app.command()
def rekey(
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="re-encrypt this tenant's files")
    ] = None,
    all_tenants: Annotated[bool, typer.Option("--all", help="every tenant, one by one")] = False,
) -> None:
    """After a key rotation: re-encrypt files made under previous keys to the current key.

    Each new file is read back whole and checked before it replaces the old one, under the
    same name. Safe to interrupt and run again. Then `daai-backup doctor --keys` shows which
    old keys files still need (none: drop it from BACKUP_ENCRYPTION_PREVIOUS_KEYS).
    """
    if (tenant is None) == (not all_tenants):
        raise fail("say which tenants to rekey: --tenant T, or --all")
    from flows.rekey import rekey as rekey_flow

    state = as_run_of(rekey_flow, "rekey/rekey", {"tenant": tenant, "all_tenants": all_tenants})
    result = _outcome(state, "rekey")
    for tid, rewritten in result["tenants"].items():
        parts = ", ".join(f"{n} {kind}(s)" for kind, n in sorted(rewritten.items()) if n)
        console.print(f"{tid}: re-encrypted {parts or 'nothing'}", highlight=False)
    console.print(f"every file is under key {result['key']}", highlight=False)
