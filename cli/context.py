"""Loading settings and the engine context for commands, with errors as one line."""

from __future__ import annotations

from pydantic import ValidationError

from daai_backup.errors import ConfigError
from daai_backup.operations import EngineContext, load_context
from daai_backup.settings import Settings


def load_settings() -> Settings:
    """``Settings()`` with validation errors turned into one ``ConfigError`` line."""
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"setting {field}: {message}") from None


def engine() -> EngineContext:
    """Settings plus the tenant registry they point at."""
    return load_context(load_settings())
