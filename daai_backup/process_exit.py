"""End a process that ran a Prefect flow without the interpreter's teardown, when it is safe.

After a flow run, what a normal exit still does is finalize the thousands of modules and
objects Prefect imported: measured at about 1.3 s of wall time per process on the 2-core
development machine (``bench/bench_overhead.py``), longer than the whole flow run of a small
tenant, at every command and every scheduled run. :func:`exit_now` skips only that part: the
exit handlers (``atexit``: Prefect's last logs and events are sent there) still run first, in
the usual order, both standard streams are flushed, and the exit status is the one given.

Standard library only: imported by the CLI's entry point and by the flow-run process of a
work pool, before anything else.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading


def exit_status(code: object) -> int:
    """The process exit status ``sys.exit(code)`` gives (a message is printed by the caller)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def exit_now(code: object) -> None:
    """Run the exit handlers, flush, and end the process with ``code``'s status.

    Returns (for a normal exit to follow) while a non-daemon thread is still alive: the
    interpreter would wait for it, so this must too.
    """
    main = threading.main_thread()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not main):
        return
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what sys.exit("message") prints
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(exit_status(code))
