"""Console entry point ``daai-backup``: assembles the command modules on one app."""

from __future__ import annotations

import importlib
import os
import sys

# Flow runs started by this process send heartbeats, so a killed command's run ends Crashed
# (deployments.crashed_runs) instead of Running forever. Set before Prefect is imported: its
# settings are read once. Kept in step with crashed_runs.HEARTBEAT_SECONDS by a test.
os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")

from cli.app import app
from daai_backup.process_exit import exit_now

# Each module registers its commands on ``app`` when imported.
_COMMAND_MODULES = (
    "archive_cmds",
    "storage_cmds",
    "flow_cmds",
    "deploy_cmds",
    "status_cmds",
    "copy_cmds",
    "inspect_cmds",
    "capture_cmds",
    "activity_cmds",
)

for _module in _COMMAND_MODULES:
    importlib.import_module(f"cli.{_module}")


def main() -> None:
    try:
        app()  # standalone mode: always ends in SystemExit
    except SystemExit as exc:
        if "prefect" in sys.modules:  # a flow ran: skip the slow teardown (a light
            exit_now(exc.code)  # command has little to tear down and exits as usual)
        raise


__all__ = ["app", "main"]
