"""Expected refusals end a run in one line; only unexpected errors carry a traceback.

Every :class:`~daai_backup.errors.DaaiBackupError` is raised on purpose with a one-line
message (a wrong workspace name, no permission, no key, a full quota, a refused file name):
it is a refusal, not a crash. Two pieces make that true wherever flows run (CLI, served
deployments, workers), for every flow; see ``docs/decisions.md`` ("Refusals are one line"):

- :func:`one_line_refusals` decorates every flow (over ``@flow``). A refusal in the flow's
  body becomes the run's returned ``Failed`` state, whose message is exactly ``str(error)``
  and whose result is the error itself, so a caller still gets the original exception:
  ``state.result(raise_on_failure=False)`` returns it, and calling the flow (as a subflow,
  say) raises it. Prefect's engine never sees it raised, so it logs no traceback.
- :class:`RefusalTracebackFilter`, installed on Prefect's run loggers when this module is
  imported (every flow module imports it), drops the traceback of any run-log record that
  carries a refusal (the task engine logs a task that fails for good with ``exc_info``), and
  drops outright the engine's re-report of a refusal that already ended its run (a deployed
  run's engine logs "Engine execution exited with unexpected exception" for it).

Anything else (a bug, a driver error the engine did not translate) propagates unchanged:
Prefect logs it with its traceback and fails the run as before.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Final, ParamSpec, TypeVar, cast

from prefect import Flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Failed

from daai_backup.errors import DaaiBackupError

P = ParamSpec("P")
R = TypeVar("R")

RUN_LOGGERS: Final = ("prefect.flow_runs", "prefect.task_runs")
"""The loggers of Prefect's run logs (``get_run_logger`` and the engines' own lines)."""

ENDED_A_RUN: Final = "daai_ended_a_run"
"""Attribute set on a refusal once it is a run's final state (and logged once, in one line).

On the exception itself, not in a registry of this module: a served run executes the flow
in a subprocess from a cloudpickled copy of the wrapper, whose module-level state would be
a copy too."""


def refusal_state(error: DaaiBackupError) -> State[Any]:
    """The final state of a run refused with ``error``: Failed, its message the one line."""
    state: State[Any] = Failed(message=str(error), data=error)
    state.state_details.retriable = False  # as Prefect marks a state made from an exception
    return state


def one_line_refusals(flow: Flow[P, R]) -> Flow[P, R]:
    """Flow decorator (place it over ``@flow``): a refusal in the body ends the run ``Failed``.

    The refusal is logged once at ERROR level, without a traceback, and returned as the
    run's state (:func:`refusal_state`). The declared return type stays ``R``: seen from
    outside Prefect's engine the flow still returns ``R`` or raises the refusal.

    It wraps the flow's function in place rather than the function under ``@flow``, so that
    what Prefect derives from the function (name, parameters, entrypoint, and the version,
    a hash of the function's file) stays that of the flow's own module.
    """
    body = flow.fn

    @functools.wraps(body)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return body(*args, **kwargs)
        except DaaiBackupError as error:
            get_run_logger().error("%s: %s", type(error).__name__, error)
            setattr(error, ENDED_A_RUN, True)
            return cast(R, refusal_state(error))

    run.one_line_refusals = True  # type: ignore[attr-defined]  # checked by a test
    flow.fn = run
    return flow


class RefusalTracebackFilter(logging.Filter):
    """On a run logger: refusals lose their traceback; their re-reports are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, DaaiBackupError):
            return True
        if getattr(error, ENDED_A_RUN, False):
            return False  # the run already ended with it as its message, logged once
        record.exc_info = None
        record.exc_text = None
        return True


def install_refusal_filter() -> None:
    """Put :class:`RefusalTracebackFilter` on Prefect's run loggers (idempotent).

    Logger filters survive Prefect's logging setup (``dictConfig`` replaces handlers, not
    filters) and apply to every handler: the console and the API (the UI's run log).
    """
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RefusalTracebackFilter) for f in logger.filters):
            logger.addFilter(RefusalTracebackFilter())


install_refusal_filter()
