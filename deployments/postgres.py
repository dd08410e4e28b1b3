"""A throw-away PostgreSQL cluster for the production layout's test and benchmark.

In production the Prefect server runs on a PostgreSQL database the platform team keeps
(``PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://...``); ``make up`` keeps its
embedded SQLite. The test of the production layout and ``bench/bench_fleet.py`` need a real
PostgreSQL they can start and throw away, which this module gives::

    with PostgresCluster.start() as pg:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = pg.prefect_url

The server binaries are found in ``$DAAI_PG_BIN``, else with ``pg_config --bindir``, else in
Debian's ``/usr/lib/postgresql/<version>/bin`` (newest version first). ``initdb`` refuses to
run as root, so as root the cluster is created and run as the ``postgres`` user (its data
folder is handed to that user); as anyone else, as that user. The cluster listens on
127.0.0.1 only, with ``trust`` authentication: it is reachable from this machine alone and
lives as long as the ``with`` block.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DATABASE = "prefect"
"""The database created for the Prefect server."""

SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "300",
    "shared_buffers": "256MB",
}
"""A server sized for a Prefect API with several workers; durability settings are left at
PostgreSQL's defaults so that what is measured is what production would see."""


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server programs are not installed or the cluster did not start."""


def find_bin_dir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates: list[Path] = []
    if os.environ.get("DAAI_PG_BIN"):
        candidates.append(Path(os.environ["DAAI_PG_BIN"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()),
            key=lambda p: int(p.name),
            reverse=True,
        )
        candidates.extend(p / "bin" for p in versions)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise PostgresUnavailable(
        "PostgreSQL's server programs (initdb, pg_ctl) were not found: install Debian's "
        "postgresql-15 (apt-get install postgresql-15) or set DAAI_PG_BIN to their folder"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PostgresCluster:
    """A running throw-away cluster: where it is and how to reach it."""

    bin_dir: Path
    data_dir: Path
    port: int
    user: str

    @property
    def dsn(self) -> str:
        """libpq form, for ``psql`` and ``pgbench``."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def prefect_url(self) -> str:
        """The value of ``PREFECT_API_DATABASE_CONNECTION_URL`` for this cluster."""
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{DATABASE}"

    @classmethod
    @contextmanager
    def start(cls, *, port: int | None = None) -> Iterator[PostgresCluster]:
        """Create a cluster in a new temporary folder, start it, create the database.

        On exit the server is stopped and the folder removed. The folder is made here (not
        taken from the caller) because as root the ``postgres`` user must be able to reach
        it, and a test's ``tmp_path`` lies under a folder only root may enter.
        """
        bin_dir = find_bin_dir()
        run_as = _run_as()
        user = run_as or pwd.getpwuid(os.geteuid()).pw_name
        port = port or free_port()
        workdir = Path(tempfile.mkdtemp(prefix="daai-pg-"))
        data_dir = workdir / "pgdata"
        pg_ctl = str(bin_dir / "pg_ctl")
        try:
            if run_as:
                entry = pwd.getpwnam(run_as)
                os.chown(workdir, entry.pw_uid, entry.pw_gid)
            initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), "-A", "trust", "-U", user]
            _run(run_as, [*initdb, "-E", "UTF8"], what="initdb")
            options = " ".join(f"-c {key}={value}" for key, value in SERVER_SETTINGS.items())
            options += f" -p {port} -k {workdir}"
            log = str(workdir / "postgres.log")
            start = [pg_ctl, "-D", str(data_dir), "-l", log, "-o", options, "-w", "-t", "60"]
            _run(run_as, [*start, "start"], what="pg_ctl start")
            _wait_for_port(port, timeout_s=30)
            createdb = [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port)]
            _run(run_as, [*createdb, "-U", user, DATABASE], what="createdb")
            yield cls(bin_dir=bin_dir, data_dir=data_dir, port=port, user=user)
        finally:
            if (data_dir / "postmaster.pid").exists():
                stop = [pg_ctl, "-D", str(data_dir), "-m", "fast", "-w", "stop"]
                subprocess.run(_as(run_as, stop), capture_output=True, check=False)
            shutil.rmtree(workdir, ignore_errors=True)


def _run_as() -> str | None:
    """The user to run PostgreSQL as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root, and initdb refuses root: create a 'postgres' user "
            "(Debian's postgresql package does) or run as an ordinary user"
        ) from None
    return "postgres"


def _as(user: str | None, argv: Sequence[str]) -> list[str]:
    if user is None:
        return list(argv)
    runuser = shutil.which("runuser") or shutil.which("su")
    if runuser is None:
        raise PostgresUnavailable("neither runuser nor su is available to run as 'postgres'")
    if runuser.endswith("runuser"):
        return [runuser, "-u", user, "--", *argv]
    return [runuser, user, "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in argv)]


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _run(user: str | None, argv: Sequence[str], *, what: str) -> None:
    out = subprocess.run(_as(user, argv), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise PostgresUnavailable(f"{what} failed (exit {out.returncode}): {detail[0]}")


def _wait_for_port(port: int, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise PostgresUnavailable(f"PostgreSQL did not accept connections on port {port}")
