"""``make up``: the whole product on one machine, started and stopped as one thing.

``python -m deployments.stack up [--var-dir var] [--mongo-port 27817] [--prefect-port 4200]``

1. ``var/`` layout: ``mongo/`` (SecantusDB data), ``storage/`` (backups), ``prefect/``
   (``PREFECT_HOME``: the server's SQLite database), ``logs/``, ``tenants.yaml`` (copied from
   ``examples/tenants.yaml`` once; edit the copy).
2. A development key in ``.env`` (``BACKUP_ENCRYPTION_KEY``) if there is none; printed is
   only a warning to back it up, never the key. Nothing else goes into ``.env``: Prefect and
   the tests read it too, and a dev ``PREFECT_API_URL`` there would point them here.
3. Starts the Prefect server (the slow one, ~20 s) and, meanwhile, the SecantusDB daemon;
   seeds the demo tenants whose databases are empty (a second run reuses the data).
4. Waits for ``/api/health``, then runs ``python -m deployments.serve`` with
   ``PREFECT_API_URL`` set for that process only: sync + ``serve(..., pause_on_shutdown=False)``.
5. Ctrl-C (or SIGTERM) stops the children it started, newest first, each in its own process
   group (so the terminal's Ctrl-C does not reach them half-way through): serve, server, DB.

The settings the children use are also written to ``var/stack.env`` (no key in it), so that
``set -a; . var/stack.env; set +a`` lets ``daai-backup`` commands talk to the same stack, and
next to it ``var/daai-backup``: a script that reads those settings and runs this
environment's ``daai-backup`` (``var/daai-backup list --tenant acme-hr``), with no ``uv``
on ``PATH`` needed (``uv`` installed by pip is only ``python3 -m uv``). The banner names it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from deployments.crashed_runs import heartbeat_environment

PROJECT_DIR = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
KEY_VAR = "BACKUP_ENCRYPTION_KEY"


class StackError(RuntimeError):
    """The stack cannot start; the message says what to do."""


@dataclass
class StackConfig:
    var_dir: Path
    env_file: Path
    example_tenants: Path
    mongo_port: int = 27817
    prefect_port: int = 4200
    project_dir: Path = PROJECT_DIR

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.prefect_port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.prefect_port}"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://{HOST}:{self.mongo_port}/"

    @property
    def tenants_file(self) -> Path:
        return self.var_dir / "tenants.yaml"

    @property
    def storage_url(self) -> str:
        return (self.var_dir / "storage").resolve().as_uri()


# -- files ------------------------------------------------------------------------------


def ensure_layout(cfg: StackConfig) -> None:
    for name in ("mongo", "storage", "prefect", "logs"):
        (cfg.var_dir / name).mkdir(parents=True, exist_ok=True)
    if not cfg.tenants_file.exists():
        shutil.copyfile(cfg.example_tenants, cfg.tenants_file)
        say(f"tenants: wrote {cfg.tenants_file} from {cfg.example_tenants} (edit it to add yours)")


def read_env_key(env_file: Path) -> str | None:
    """The key in ``env_file`` (``KEY=value`` lines), or None."""
    if not env_file.exists():
        return None
    for line in env_file.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.strip().removeprefix("export ").strip() == KEY_VAR:
            value = value.strip().strip("'\"")
            return value or None
    return None


def ensure_dev_key(env_file: Path) -> bool:
    """Append a fresh key to ``env_file`` unless one is there; True when one was made."""
    from daai_backup.format.keys import generate_master_key

    if read_env_key(env_file) is not None or os.environ.get(KEY_VAR):
        return False
    existing = env_file.read_text(encoding="utf-8") if env_file.exists() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    note = "# Development master key made by `make up`. Back it up: without it, backups are lost.\n"
    # Write the new file beside the old, then rename: a crash leaves the old .env intact.
    tmp = env_file.with_name(env_file.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(existing + note + f"{KEY_VAR}={generate_master_key()}\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(env_file)
    return True


def child_environment(cfg: StackConfig, *, key: str | None, api: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(
        {
            "PREFECT_HOME": str((cfg.var_dir / "prefect").resolve()),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DAAI_BACKUP_MONGODB_URI": cfg.mongodb_uri,
            "DAAI_BACKUP_STORAGE_URL": cfg.storage_url,
            "DAAI_BACKUP_TENANTS_FILE": str(cfg.tenants_file.resolve()),
            "PYTHONUNBUFFERED": "1",
            # Served runs send heartbeats: a run whose process dies ends Crashed.
            **heartbeat_environment(),
        }
    )
    if api:
        env["PREFECT_API_URL"] = cfg.api_url
    if key:
        env[KEY_VAR] = key
    return env


def cli_command() -> list[str]:
    """How to run this environment's ``daai-backup``, whatever is on ``PATH``."""
    script = Path(sys.executable).with_name("daai-backup")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from cli.main import main; main()"]


def write_cli_script(cfg: StackConfig) -> Path:
    """``var/daai-backup``: ``daai-backup`` with the stack's settings (``var/stack.env``).

    Run it from the project folder: the key is read from ``.env`` in the working directory,
    as every ``daai-backup`` command does.
    """
    path = cfg.var_dir / "daai-backup"
    command = " ".join(shlex.quote(part) for part in cli_command())
    stack_env = shlex.quote(str((cfg.var_dir / "stack.env").resolve()))
    path.write_text(
        "#!/bin/sh\n"
        "# daai-backup against the `make up` stack (written by `make up`; no uv needed).\n"
        f"set -a; . {stack_env}; set +a\n"
        f'exec {command} "$@"\n',
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


def write_stack_env(cfg: StackConfig) -> Path:
    path = cfg.var_dir / "stack.env"
    lines = [
        "# Settings of the running `make up` stack (no secrets). Use: set -a; . var/stack.env",
        f"PREFECT_API_URL={cfg.api_url}",
        f"DAAI_BACKUP_MONGODB_URI={cfg.mongodb_uri}",
        f"DAAI_BACKUP_STORAGE_URL={cfg.storage_url}",
        f"DAAI_BACKUP_TENANTS_FILE={cfg.tenants_file.resolve()}",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- processes --------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes] | None
    stop_signal: int = signal.SIGTERM
    grace_s: float = 20.0


@dataclass
class Stack:
    """The children started so far; :meth:`stop` ends them newest first."""

    cfg: StackConfig
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        *,
        to_terminal: bool = False,
        stop_signal: int = signal.SIGTERM,
    ) -> Child:
        log: IO[bytes] | None = None
        out: Any = None
        if not to_terminal:
            log = (self.cfg.var_dir / "logs" / f"{name}.log").open("ab")
            out = log
        process = subprocess.Popen(
            argv,
            cwd=self.cfg.project_dir,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: we stop it, in order
        )
        child = Child(name, process, log, stop_signal)
        self.children.append(child)
        return child

    def stop(self) -> None:
        while self.children:
            child = self.children.pop()
            _stop_child(child)

    def check_alive(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise StackError(f"{child.name} exited with status {code}{self._log_hint(child)}")

    def _log_hint(self, child: Child) -> str:
        if child.log is None:
            return ""
        path = self.cfg.var_dir / "logs" / f"{child.name}.log"
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        return f"; see {path}:\n    " + "\n    ".join(tail)


def _stop_child(child: Child) -> None:
    process = child.process
    if process.poll() is None:
        say(f"stopping {child.name} (pid {process.pid})")
        _signal_group(process, child.stop_signal)
        try:
            process.wait(timeout=child.grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)
    else:
        # The leader is gone; its group may still hold children (a flow run, a server worker).
        _signal_group(process, signal.SIGTERM)
    if child.log is not None:
        child.log.close()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)  # the group we created: the child is its leader


def wait_until(check: Callable[[], bool], *, timeout_s: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check_alive()
        if check():
            return
        time.sleep(0.5)
    raise StackError(f"{what} did not become ready within {timeout_s:.0f} s")


def prefect_healthy(api_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def deployments_registered(api_url: str) -> set[str]:
    """The names of the daai-backup deployments the server has (serve registers them)."""
    import httpx

    names: set[str] = set()
    page = 200
    try:
        while True:
            body = {
                "deployments": {"tags": {"all_": ["daai-backup"]}},
                "limit": page,
                "offset": len(names),
            }
            response = httpx.post(f"{api_url}/deployments/filter", json=body, timeout=5.0)
            if response.status_code != 200:
                return names
            batch = {str(item["name"]) for item in response.json()}
            if not batch - names:
                return names
            names |= batch
            if len(batch) < page:
                return names
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return names


def expected_deployments(tenant_ids: Iterable[str]) -> set[str]:
    """What ``serve`` registers: every operation and every tenant's backup deployment.

    The stack is ready only when all of these exist: sync creates the operations first, so
    a count alone could be reached before the last tenant's backup deployment is there.
    """
    from deployments.build import BACKUP, ROLES, backup_deployment_name

    names = {role for role in ROLES if role != BACKUP}
    names.update(backup_deployment_name(tenant_id) for tenant_id in tenant_ids)
    return names


def mongo_ready(uri: str) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=1000)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


# -- up ---------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"[daai-backup] {message}", flush=True)


def banner(cfg: StackConfig, tenants: list[str]) -> str:
    first = tenants[0] if tenants else "<tenant>"
    # `make cli` reads the stack's settings from the project's own var/.
    make_cli = (
        [f'     or: make cli ARGS="list --tenant {first}"']
        if cfg.var_dir.resolve() == (cfg.project_dir / "var").resolve()
        else []
    )
    return "\n".join(
        [
            "",
            "=" * 78,
            f"  daai-backup is up.  Prefect UI: {cfg.ui_url}",
            f"  Tenants: {', '.join(tenants)}   (registry: {cfg.tenants_file})",
            "",
            "  Three things to try:",
            f"  1. Backup Now: Deployments -> backup/backup-{first} -> Run -> Custom run,",
            "     actor = ops@daai.example (it needs 'create'); the run is labelled manual.",
            f"  2. The backup list: Artifacts -> backups-{first} (its page says the newest",
            "     good backup and the next run; the timeline's top entry is the newest table).",
            "     Every tenant at once: Artifacts -> fleet, or `daai-backup status`.",
            "  3. A restore: Deployments -> restore/restore -> Run -> Custom run: tenant and",
            "     actor = ops@daai.example, file left empty; the run pauses with a form to",
            "     pick the backup, then asks you to type the workspace name before any change.",
            "",
            f"  CLI against this stack (from {cfg.project_dir}):",
            f"     {cfg.var_dir}/daai-backup list --tenant {first}",
            *make_cli,
            "  Ctrl-C stops everything started here; the data under var/ stays.",
            "=" * 78,
            "",
        ]
    )


def up(cfg: StackConfig, *, ready_file: Path | None = None) -> int:
    """Start everything, serve until interrupted, stop everything. Returns an exit status."""
    from daai_backup.tenants import TenantRegistry
    from deployments.seed import seed_all

    for port, what, flag in (
        (cfg.prefect_port, "Prefect server", "--prefect-port"),
        (cfg.mongo_port, "SecantusDB", "--mongo-port"),
    ):
        if port_in_use(port):
            raise StackError(
                f"port {port} for the {what} is in use (is another `make up` running?): "
                f"stop it, or pass {flag}"
            )
    ensure_layout(cfg)
    registry = TenantRegistry.load(cfg.tenants_file)  # refuse a bad registry before starting
    if ensure_dev_key(cfg.env_file):
        say(f"!!! generated a development BACKUP_ENCRYPTION_KEY into {cfg.env_file}")
        say("!!! back that file up: backups made with this key cannot be read without it")
    key = read_env_key(cfg.env_file) or os.environ.get(KEY_VAR)

    stack = Stack(cfg)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        say(f"starting the Prefect server on {cfg.ui_url} (PREFECT_HOME={cfg.var_dir}/prefect)")
        stack.start(
            "prefect-server",
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                HOST,
                "--port",
                str(cfg.prefect_port),
                "--analytics-off",
            ],
            child_environment(cfg, key=None, api=False),
            stop_signal=signal.SIGINT,
        )
        say(f"starting SecantusDB on {cfg.mongodb_uri} (data in {cfg.var_dir}/mongo)")
        daemon = Path(sys.executable).with_name("secantusd-py")
        stack.start(
            "secantusd",
            [
                str(daemon) if daemon.exists() else "secantusd-py",
                "--host",
                HOST,
                "--port",
                str(cfg.mongo_port),
                "--storage-path",
                str(cfg.var_dir / "mongo"),
            ],
            child_environment(cfg, key=None, api=False),
        )
        wait_until(
            lambda: mongo_ready(cfg.mongodb_uri), timeout_s=60, what="SecantusDB", stack=stack
        )
        seeded = seed_all(cfg.mongodb_uri, registry.values())
        for tenant_id, count in seeded.items():
            say(
                f"demo data: {tenant_id}: "
                + (f"{count} documents inserted" if count else "kept the existing data")
            )
        wait_until(
            lambda: prefect_healthy(cfg.api_url),
            timeout_s=240,
            what="the Prefect server",
            stack=stack,
        )
        say("Prefect server is healthy")
        stack_env = write_stack_env(cfg)
        say(f"settings of this stack: {stack_env}; CLI: {write_cli_script(cfg)}")
        stack.start(
            "serve",
            [sys.executable, "-m", "deployments.serve"],
            child_environment(cfg, key=key, api=True),
            to_terminal=True,
            stop_signal=signal.SIGINT,
        )
        expected = expected_deployments(registry)
        wait_until(
            lambda: expected <= deployments_registered(cfg.api_url),
            timeout_s=180,
            what="the served deployments",
            stack=stack,
        )
        print(banner(cfg, list(registry)), flush=True)
        if ready_file is not None:
            ready_file.write_text(cfg.api_url, encoding="utf-8")
        while True:
            stack.check_alive()
            time.sleep(1.0)
    except KeyboardInterrupt:
        say("stopping (Ctrl-C)")
        return 0
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        say("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.stack")
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="start SecantusDB, Prefect server and serve everything")
    up_cmd.add_argument("--var-dir", type=Path, default=PROJECT_DIR / "var")
    up_cmd.add_argument("--env-file", type=Path, default=PROJECT_DIR / ".env")
    up_cmd.add_argument(
        "--tenants-example", type=Path, default=PROJECT_DIR / "examples/tenants.yaml"
    )
    up_cmd.add_argument("--mongo-port", type=int, default=27817)
    up_cmd.add_argument("--prefect-port", type=int, default=4200)
    up_cmd.add_argument("--ready-file", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cfg = StackConfig(
        var_dir=args.var_dir.resolve(),
        env_file=args.env_file.resolve(),
        example_tenants=args.tenants_example.resolve(),
        mongo_port=args.mongo_port,
        prefect_port=args.prefect_port,
    )
    try:
        return up(cfg, ready_file=args.ready_file)
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    except Exception as exc:  # one line, not a traceback, for a config problem
        from daai_backup.errors import DaaiBackupError

        if isinstance(exc, DaaiBackupError):
            say(f"error: {exc}")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
