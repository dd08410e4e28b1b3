"""Loading settings and the engine context for commands, with errors as one line."""

from __future__ import annotations

from daai_backup.operations import EngineContext, load_context
from daai_backup.settings import Settings, load_settings

__all__ = ["Settings", "engine", "load_settings"]


def engine() -> EngineContext:
    """Settings plus the tenant registry they point at."""
    return load_context(load_settings())
