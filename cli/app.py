"""The Typer application every command module registers on, and its error handling.

Commands are grouped by concern in sibling modules (``archive_cmds``, ``storage_cmds``,
``flow_cmds``, ``deploy_cmds``); :mod:`cli.main` imports them all. Every command runs under
:func:`guarded`: a :class:`~daai_backup.errors.DaaiBackupError` becomes one line on stderr
and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from daai_backup.errors import DaaiBackupError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="daai-backup",
    help="Encrypted, restorable backups of every tenant's MongoDB database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console(soft_wrap=True)
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; return the Exit to raise.

    ``message`` is plain text: brackets in it (a list in an error) are not rich markup.
    """
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """Turn the engine's errors into one line on stderr and exit status 1."""
    try:
        yield
    except DaaiBackupError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", code=130) from None


def guarded(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`errors_as_messages` for command functions."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with errors_as_messages():
            return func(*args, **kwargs)

    return wrapper


def is_terminal() -> bool:
    return sys.stderr.isatty()
