"""The flow-run process of a process work pool: ``python -m deployments.flow_run``.

It is Prefect's own ``python -m prefect.engine`` (run as it is, same arguments and
environment: the flow run's id in ``PREFECT__FLOW_RUN_ID``), ended by
:func:`daai_backup.process_exit.exit_now` instead of the interpreter's teardown, which cost
about 1.3 s of wall time per scheduled run here (``bench/bench_overhead.py``). Use it as the
pool's ``command`` job variable (``docs/operations.md``, "Scale-out"); the default command
works the same, only slower to exit.
"""

from __future__ import annotations

import runpy

from daai_backup.process_exit import exit_now


def main() -> None:
    try:
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        exit_now(exc.code)
        raise
    exit_now(0)


if __name__ == "__main__":
    main()
