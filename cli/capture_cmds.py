"""``daai-backup capture``: continuous change capture in the foreground (or ``--once``).

Ctrl-C (or SIGTERM) stops it cleanly: what was read is stored and the resume point saved
before it exits. ``--check`` only says whether the cluster can give change streams.
"""

from __future__ import annotations

import json
import signal
import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.app import app, console, err_console, fail, guarded
from cli.context import load_settings

if TYPE_CHECKING:
    from daai_backup.capture.runner import CaptureOutcome


def _report(outcome: CaptureOutcome, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(outcome.as_dict()))
        return
    from daai_backup.capture.segments import ts_datetime, ts_text

    position = (
        f"; everything up to {ts_datetime(outcome.position):%Y-%m-%d %H:%M:%S} UTC "
        f"({ts_text(outcome.position)}) is stored"
        if outcome.position is not None
        else ""
    )
    console.print(
        f"captured {outcome.events} events of {len(outcome.tenants)} tenant(s) in "
        f"{outcome.segments} segment(s){position}",
        highlight=False,
    )
    for tenant, count in sorted(outcome.per_tenant.items()):
        lag = outcome.lag_s.get(tenant, 0.0)
        console.print(f"  {tenant}: {count} events, lag {lag:.1f} s", highlight=False)
    for tenant, reason in sorted(outcome.history_lost.items()):
        err_console.print(
            f"[bold red]gap:[/] {tenant}: changes lost ({reason}): take a backup of it now "
            f"(`daai-backup backup --tenant {tenant} --actor ...`)",
            highlight=False,
        )


@app.command("capture")
@guarded
def capture(
    once: Annotated[
        bool, typer.Option("--once", help="store everything committed so far, then exit")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="only check that the cluster gives change streams")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
) -> None:
    """Capture every tenant's changes into its folder, until Ctrl-C (or --once)."""
    settings = load_settings()
    if check:
        from pymongo import MongoClient

        from daai_backup.capture.runner import check_change_streams

        client: MongoClient[Any] = MongoClient(
            settings.mongodb_uri.get_secret_value(), serverSelectionTimeoutMS=5000
        )
        try:
            console.print(check_change_streams(client), highlight=False)
        finally:
            client.close()
        return
    from daai_backup.capture.runner import run_capture

    stop = threading.Event()
    if not once:

        def _stop(signum: int, frame: object) -> None:
            if stop.is_set():
                raise KeyboardInterrupt
            err_console.print("stopping: storing what was read and saving the resume point")
            stop.set()

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        err_console.print(
            f"capturing changes (segments closed within {settings.capture_max_lag_seconds:g} "
            "s); Ctrl-C stops",
            highlight=False,
        )
    outcome = run_capture(settings, once=once, stop=stop)
    _report(outcome, as_json)
    if outcome.history_lost:
        raise fail(
            f"change history lost for {len(outcome.history_lost)} tenant(s) "
            f"({', '.join(sorted(outcome.history_lost))}): gaps recorded; back them up now"
        )


__all__ = ["capture", "typer"]
