"""The embedded stack (``make up``) end to end, and its pieces.

The end-to-end test starts ``python -m deployments.stack up`` in a subprocess with a
temporary var dir and free ports (the real SecantusDB daemon, a real ``prefect server
start``, the real flows served), runs Backup Now through the served deployment, checks the
backup is in the tenant's list and the ``backups-<tenant>`` artifact, then stops it with
SIGINT (what Ctrl-C sends) and checks everything it started is gone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from daai_backup.operations import list_backups, load_context
from daai_backup.settings import Settings
from daai_backup.tenants import TenantRegistry
from deployments import build, stack
from deployments.seed import seed_all

PROJECT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dev_key_is_made_once_and_never_printed(tmp_path: Path, capsys: object) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SOMETHING=else")
    assert stack.ensure_dev_key(env_file) is True
    key = stack.read_env_key(env_file)
    assert key is not None
    assert len(key) == 44
    assert "SOMETHING=else\n" in env_file.read_text()
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert stack.ensure_dev_key(env_file) is False  # a second run keeps the key
    assert stack.read_env_key(env_file) == key
    assert key not in capsys.readouterr().out  # type: ignore[attr-defined]


def test_child_environment_keeps_dev_settings_out_of_env_file(tmp_path: Path) -> None:
    cfg = stack.StackConfig(tmp_path / "var", tmp_path / ".env", PROJECT / "examples/tenants.yaml")
    stack.ensure_layout(cfg)
    served = stack.child_environment(cfg, key="k", api=True)
    server = stack.child_environment(cfg, key=None, api=False)
    assert served["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert "PREFECT_API_URL" not in server
    assert "BACKUP_ENCRYPTION_KEY" not in server
    assert served["DAAI_BACKUP_TENANTS_FILE"].endswith("var/tenants.yaml")
    assert not (tmp_path / ".env").exists()  # nothing but the key ever goes there
    assert "BACKUP_ENCRYPTION_KEY" not in stack.write_stack_env(cfg).read_text()


def test_cli_script_needs_no_uv_on_path(tmp_path: Path) -> None:
    """`var/daai-backup` runs the CLI with the stack's settings where `uv` is not on PATH."""
    cfg = stack.StackConfig(tmp_path / "var", tmp_path / ".env", PROJECT / "examples/tenants.yaml")
    stack.ensure_layout(cfg)
    stack.write_stack_env(cfg)
    script = stack.write_cli_script(cfg)
    assert script == tmp_path / "var" / "daai-backup"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAAI_", "PREFECT_"))}
    env["PATH"] = "/usr/bin:/bin"  # no uv, no virtual environment
    done = subprocess.run(
        [str(script), "list", "--tenant", "acme-hr"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "No backups yet for acme-hr" in done.stdout  # the stack's registry and storage
    banner = stack.banner(cfg, ["acme-hr"])
    assert f"{script} list --tenant acme-hr" in banner
    assert "make cli" not in banner  # make cli reads the project's own var/, not this one
    project_cfg = stack.StackConfig(PROJECT / "var", tmp_path / ".env", cfg.example_tenants)
    assert 'make cli ARGS="list --tenant acme-hr"' in stack.banner(project_cfg, ["acme-hr"])


def test_seed_is_realistic_and_runs_once(mongo_uri: str, mongo_client: object) -> None:
    registry = TenantRegistry.load(PROJECT / "examples/tenants.yaml")
    renamed = [t.model_copy(update={"database": f"seed_{t.database}"}) for t in registry.values()]
    try:
        first = seed_all(mongo_uri, renamed)
        assert all(count > 400 for count in first.values()), first
        assert seed_all(mongo_uri, renamed) == dict.fromkeys(first, 0)
        hr = mongo_client["seed_acme_hr"]  # type: ignore[index]
        assert set(hr.list_collection_names()) >= {"employees", "departments", "active_employees"}
        assert hr["employees"].find_one({})["salary"]["currency"] == "INR"
    finally:
        for tenant in renamed:
            mongo_client.drop_database(tenant.database)  # type: ignore[attr-defined]


# One backup deployment per demo tenant, plus every tenant-independent operation.
EXPECTED_DEPLOYMENTS = 3 + len([role for role in build.ROLES if role != build.BACKUP])


@pytest.mark.e2e
def test_make_up_end_to_end(tmp_path: Path) -> None:
    started = time.monotonic()
    var_dir, ready = tmp_path / "var", tmp_path / "ready"
    mongo_port, prefect_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DAAI_"))}
    env.pop("BACKUP_ENCRYPTION_KEY", None)
    log = (tmp_path / "stack.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deployments.stack",
            "up",
            "--var-dir",
            str(var_dir),
            "--env-file",
            str(tmp_path / ".env"),
            "--mongo-port",
            str(mongo_port),
            "--prefect-port",
            str(prefect_port),
            "--ready-file",
            str(ready),
        ],
        cwd=PROJECT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def output() -> str:
        return (tmp_path / "stack.log").read_text(errors="replace")

    try:
        deadline = time.monotonic() + 240
        while not ready.exists():
            assert process.poll() is None, output()
            assert time.monotonic() < deadline, output()
            time.sleep(0.5)
        api_url = ready.read_text()
        text = output()
        assert "Prefect UI: http://127.0.0.1:" in text
        assert "documents inserted" in text
        assert "BACKUP_ENCRYPTION_KEY" in (tmp_path / ".env").read_text()
        key = stack.read_env_key(tmp_path / ".env")
        assert key is not None
        assert key not in text  # the key is never printed

        with temporary_settings({PREFECT_API_URL: api_url}):
            run = run_deployment(
                "backup/backup-acme-hr",
                parameters={"label": "manual", "actor": "ops@daai.example", "note": "e2e"},
                timeout=180,
            )
        assert run.state is not None, output()  # type: ignore[union-attr]
        assert run.state.is_completed(), (run.state, output())  # type: ignore[union-attr]

        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            storage_url=(var_dir / "storage").resolve().as_uri(),
            tenants_file=var_dir / "tenants.yaml",
            mongodb_uri=f"mongodb://127.0.0.1:{mongo_port}/",
            backup_encryption_key=key,  # notes are in the encrypted manifest
        )
        ctx = load_context(settings)
        entries = list_backups(ctx, ctx.tenant("acme-hr"))
        assert [e.frequency for e in entries] == ["manual"], entries
        assert entries[0].note == "e2e"
        assert entries[0].encrypted
        artifacts = httpx.post(
            f"{api_url}/artifacts/filter",
            json={"artifacts": {"key": {"any_": ["backups-acme-hr"]}}},
            timeout=10,
        ).json()
        assert artifacts, "no backups-acme-hr artifact"
        deployments = httpx.post(f"{api_url}/deployments/filter", json={}, timeout=10).json()
        assert len(deployments) == EXPECTED_DEPLOYMENTS
        # The CLI script the banner names lists that backup, with no uv on PATH.
        assert f"{var_dir.resolve()}/daai-backup list --tenant acme-hr" in text
        listed = subprocess.run(
            [str(var_dir / "daai-backup"), "list", "--tenant", "acme-hr", "--json"],
            cwd=tmp_path,
            env={**env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert [row["note"] for row in json.loads(listed.stdout)] == ["e2e"]
    finally:
        os.kill(process.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground process
        try:
            code = process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        log.close()
    assert code == 0, output()
    assert "stopped" in output()
    time.sleep(1)
    assert not stack.port_in_use(prefect_port)
    assert not stack.port_in_use(mongo_port)
    # pause_on_shutdown=False: after Ctrl-C no deployment is paused (read from the stopped
    # server's SQLite database; the demo registry has no suspended tenant).
    with sqlite3.connect(var_dir / "prefect" / "prefect.db") as db:
        rows = db.execute("SELECT name, paused FROM deployment").fetchall()
    assert len(rows) == EXPECTED_DEPLOYMENTS
    assert not any(paused for _, paused in rows), rows
    print(f"make up end to end: {time.monotonic() - started:.1f} s")
