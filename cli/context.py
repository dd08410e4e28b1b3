"""Loading settings and the engine context for commands, with errors as one line.

The engine's modules are imported when a command asks for them, not with this module:
pydantic, the tenant registry and the storage backends are not needed by `--help` or
`keygen`, and every command module imports this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daai_backup.operations import EngineContext
    from daai_backup.settings import Settings

__all__ = ["engine", "load_settings"]


def load_settings() -> Settings:
    """Settings from the environment and ``.env`` (``ConfigError`` names a bad one)."""
    from daai_backup.settings import load_settings as load

    return load()


def engine() -> EngineContext:
    """Settings plus the tenant registry they point at."""
    from daai_backup.operations import load_context

    return load_context(load_settings())
