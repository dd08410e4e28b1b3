"""Deployment commands: deploy (sync with the registry), notify (failure webhook), up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, console, guarded
from cli.context import load_settings


@app.command()
@guarded
def deploy(
    work_pool: Annotated[
        str | None,
        typer.Option(
            "--work-pool",
            help="register to this process work pool (created if missing) for workers to run",
        ),
    ] = None,
) -> None:
    """Create, update, pause, resume and remove deployments to match the tenant registry."""
    from deployments.deploy import deploy_command

    report, created_pool = deploy_command(work_pool, settings=load_settings())
    if created_pool:
        console.print(f"created process work pool {work_pool!r}")
    for kind, names in report.as_dict().items():
        if isinstance(names, list):
            for name in names:
                console.print(f"{kind:>8}  {name}", highlight=False)
    console.print(f"deployments: {report.summary()}", highlight=False)
    if work_pool:
        console.print(f"start workers with: prefect worker start --pool {work_pool}")


@app.command()
@guarded
def notify(
    webhook: Annotated[str, typer.Option("--webhook", help="URL to POST failures to")],
) -> None:
    """Post failed or crashed backup/restore runs, and tenants that become overdue or failing."""
    from deployments.notify import (
        AUTOMATION_NAME,
        TENANT_AUTOMATION_NAME,
        create_failure_notification,
    )

    automation_id = create_failure_notification(webhook)
    console.print(f"automation {AUTOMATION_NAME!r} ({automation_id}) posts failures to the webhook")
    console.print(
        f"automation {TENANT_AUTOMATION_NAME!r} posts tenants that become overdue or failing "
        "(from the fleet flow)"
    )


@app.command()
def up(
    var_dir: Annotated[Path, typer.Option(help="data of the embedded stack")] = Path("var"),
    mongo_port: Annotated[int, typer.Option(help="SecantusDB port")] = 27817,
    prefect_port: Annotated[int, typer.Option(help="Prefect server/UI port")] = 4200,
) -> None:
    """The embedded stack (what `make up` runs): local DB, demo tenants, Prefect, serve all."""
    from deployments.stack import main

    raise typer.Exit(
        main(
            [
                "up",
                "--var-dir",
                str(var_dir),
                "--mongo-port",
                str(mongo_port),
                "--prefect-port",
                str(prefect_port),
            ]
        )
    )
