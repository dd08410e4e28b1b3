"""Console entry point ``daai-backup``: assembles the command modules on one app."""

from __future__ import annotations

import importlib

from cli.app import app

# Each module registers its commands on ``app`` when imported.
_COMMAND_MODULES = ("archive_cmds", "storage_cmds", "flow_cmds", "deploy_cmds")

for _module in _COMMAND_MODULES:
    importlib.import_module(f"cli.{_module}")


def main() -> None:
    app()


__all__ = ["app", "main"]
