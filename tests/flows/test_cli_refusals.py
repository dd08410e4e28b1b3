"""The CLI as an operator runs it (a process of its own, against the test's Prefect server):
a refusal prints no traceback and ends with one ``error:`` line, with nothing after it; a bug
ends with one line naming the run's page in the UI, whose log keeps the traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from flowkit import OWNER, FlowEnv, run_logs, seed

from daai_backup import operations

RUN_CLI = "import sys; from cli.main import main; sys.argv[0] = 'daai-backup'; main()"
"""``python -c`` program: the ``daai-backup`` console script (arguments follow)."""

SLOW_EVENTS = (
    "import asyncio\n"
    "from prefect.events.clients import PrefectEventsClient\n"
    "_emit = PrefectEventsClient._emit\n"
    "async def slow_emit(self, event):\n"
    "    await asyncio.sleep(0.5)\n"
    "    await _emit(self, event)\n"
    "PrefectEventsClient._emit = slow_emit\n"
)
"""A slow Prefect server: events are still queued when the command is done (measured: their
worker then warned "Still processing items" after the command's line)."""

INJECT_FAULT = (
    "import daai_backup.operations as ops\n"
    "def broken(*args, **kwargs):\n"
    "    raise RuntimeError('injected fault:\\na bug, not a refusal')\n"
    "ops.preflight_backup = broken\n"
)


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def on_disk(env: FlowEnv) -> None:
    """Storage the CLI's process sees too (the flow tests' ``memory://`` is per process)."""
    folder = env.tmp / "storage"
    folder.mkdir(exist_ok=True)
    env.monkeypatch.setenv("DAAI_BACKUP_STORAGE_URL", folder.as_uri())


def start(*args: str, drop: tuple[str, ...] = (), prelude: str = "") -> subprocess.Popen[str]:
    """The CLI in a process of its own, with the test's environment and Prefect server."""
    from prefect_harness import start as prefect_api_url

    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PREFECT_API_URL"] = prefect_api_url()
    env["COLUMNS"] = "80"  # a narrow terminal must not wrap the line either
    return subprocess.Popen(
        [sys.executable, "-c", prelude + RUN_CLI, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> Finished:
    stdout, stderr = process.communicate(timeout=180)
    return Finished(process.returncode, stdout, stderr)


def test_refusals_print_one_error_line_last_and_no_traceback(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    on_disk(flow_env)
    big_db = mongo_db_name + "_big"
    seed(mongo_client, mongo_db_name, docs=5)
    seed(mongo_client, big_db, docs=300, blob=10_000)  # ~3 MB, incompressible
    try:
        tid = flow_env.add_tenant(
            mongo_db_name,
            workspace_name="Acme Books",
            permissions={OWNER: ["create", "restore"], "clerk@x": ["create"], "auditor@x": []},
        )
        full = flow_env.add_tenant(big_db, storage_quota_mb=1)
        ctx = flow_env.context()
        try:
            file = operations.backup_tenant(ctx, ctx.tenant(tid), "manual").entry.file
        finally:
            ctx.close()

        def restore(actor: str, confirm: str = "Acme Books", name: str = file) -> list[str]:
            return ["restore", "-t", tid, "-f", name, "--actor", actor, "--confirm", confirm]

        cases = {
            "wrong workspace name": (
                restore(OWNER, confirm="acme books"),
                (),
                "does not match the workspace name of tenant "
                f"'{tid}': type the workspace name exactly as shown: \"Acme Books\"",
            ),
            # Permission, actor and file-name refusals take the same path to the terminal;
            # their words are checked in-process (test_flow_refusals.py, test_flow_restore.py),
            # which costs no CLI process.
            "missing key": (
                ["backup", "-t", tid, "--actor", OWNER],
                ("BACKUP_ENCRYPTION_KEY",),
                "BACKUP_ENCRYPTION_KEY is not set",
            ),
            "full quota": (
                ["backup", "-t", full, "--actor", OWNER],
                (),
                "would not fit in the storage quota",
            ),
        }
        running = {
            name: start(*args, drop=drop, prelude=SLOW_EVENTS)
            for name, (args, drop, _) in cases.items()
        }
        for name, process in running.items():
            done = finish(process)
            expected = cases[name][2]
            assert done.code == 1, (name, done)
            assert "Traceback" not in done.stderr, (name, done.stderr)
            assert done.stdout == "", (name, done.stdout)
            errors = [line for line in done.lines if line.startswith("error:")]
            assert len(errors) == 1, (name, done.stderr)
            assert done.lines[-1] == errors[0], (name, done.stderr)  # nothing after it
            assert expected in errors[0], (name, errors[0])
            assert "Still processing" not in done.stderr, (name, done.stderr)
    finally:
        mongo_client.drop_database(big_db)


def test_an_unexpected_error_prints_one_line_with_the_runs_page(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str
) -> None:
    from prefect_harness import start as prefect_api_url

    on_disk(flow_env)
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name)
    done = finish(start("backup", "-t", tid, "--actor", OWNER, prelude=INJECT_FAULT))
    assert done.code == 1
    last = done.lines[-1]
    ui = prefect_api_url().removesuffix("/api")
    found = re.fullmatch(
        r"error: backup failed unexpectedly: RuntimeError: injected fault: a bug, not a "
        rf"refusal; the run's full log: {re.escape(ui)}/runs/flow-run/([0-9a-f-]{{36}})",
        last,
    )
    assert found, done.stderr
    logs = run_logs(found.group(1))
    assert [m for m in logs if "Traceback" in m and "injected fault" in m], logs
