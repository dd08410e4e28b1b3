"""Ending a process without the interpreter's teardown (daai_backup.process_exit): the exit
handlers still run, the streams are flushed, the status is kept, and a live non-daemon thread
is waited for."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


def run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "MARKER": str(tmp_path / "marker")},
    )


@pytest.mark.parametrize(("code", "status"), [(None, 0), (3, 3), ("a message", 1)])
def test_handlers_run_streams_flushed_status_kept(
    tmp_path: Path, code: object, status: int
) -> None:
    done = run(
        f"""
        import atexit, os, sys
        from daai_backup.process_exit import exit_now
        atexit.register(lambda: open(os.environ["MARKER"], "w").write("ran"))
        sys.stdout.write("no newline, still buffered")
        exit_now({code!r})
        print("not reached")
        """,
        tmp_path,
    )
    assert done.returncode == status
    assert done.stdout == "no newline, still buffered"
    assert (tmp_path / "marker").read_text() == "ran"
    if isinstance(code, str):
        assert done.stderr.strip() == code


def test_waits_for_a_live_non_daemon_thread(tmp_path: Path) -> None:
    done = run(
        """
        import os, threading, time
        from daai_backup.process_exit import exit_now
        def work():
            time.sleep(0.3)
            open(os.environ["MARKER"], "w").write("finished")
        threading.Thread(target=work).start()
        exit_now(0)
        print("returned")
        """,
        tmp_path,
    )
    assert done.returncode == 0
    assert "returned" in done.stdout
    assert (tmp_path / "marker").read_text() == "finished"


def test_flow_run_process_is_prefects_engine_with_its_status(tmp_path: Path) -> None:
    """``python -m deployments.flow_run`` runs ``prefect.engine`` as ``-m`` would: a bad flow
    run id is refused in Prefect's words, with Prefect's exit status."""
    done = subprocess.run(
        [sys.executable, "-m", "deployments.flow_run"],
        cwd=tmp_path,  # a worker starts it in a temporary folder: found as an installed module
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT__FLOW_RUN_ID": "not-a-flow-run-id",
        },
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Invalid flow run id" in done.stderr
