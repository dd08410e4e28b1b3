"""Benchmark: start time of the light CLI commands, each a fresh process, against bare Python.

Run: ``uv run python bench/bench_cli_start.py [--rounds 7]``. Target: ``--help``, ``keygen``,
``inspect``, ``list`` (local storage) and ``doctor`` each finish in under 0.5 s.

It starts its own SecantusDB daemon (``secantusd-py``) on a temporary folder, so that
``doctor`` has a MongoDB to ping, writes a tenants file and one real backup of a small
database into local folder storage (for ``inspect`` and ``list``), then runs each command as
the operator does (the ``daai-backup`` console script of this environment, in a temporary
working directory without a ``.env``) N times, rounds interleaved and the order rotated, next
to the baseline ``python -c pass`` measured in the same rounds. It reports the median and p90
(nearest rank) wall time of each and the medians' ratio to the baseline's.

Two conditions, each with its own ``PYTHONPYCACHEPREFIX`` so that whatever ``__pycache__``
folders the environment has do not matter:

- ``bytecode cached``: Python as it normally runs; warm-up rounds write the bytecode.
- ``dependencies not compiled``: ``PYTHONDONTWRITEBYTECODE=1`` and bytecode only for the
  standard library, so every module of the environment and of this project is compiled from
  source at every start: ``uv sync`` without ``--compile-bytecode`` in an environment that
  sets that variable (this development machine does).

``--before REV`` also runs the same commands on the project as it was at ``REV`` (``git
archive`` into a temporary folder, first on ``PYTHONPATH``), in the same rounds.

The machine is shared: read the ratios and the medians, not single runs.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_mongo import free_port

from daai_backup.format.keys import generate_master_key
from daai_backup.operations import backup_tenant, load_context
from daai_backup.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]
TARGET_S = 0.5
TENANT = "acme-hr"
TENANTS_YAML = f"""tenants:
  - id: {TENANT}
    workspace_name: Acme HR
    database: acme_hr
    timezone: Asia/Kolkata
    storage_quota_mb: 512
"""


@dataclass
class Command:
    label: str
    argv: list[str]
    baseline: bool = False


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (p90 of 7 samples is the largest)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def run_once(command: Command, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        command.argv, env=env, cwd=cwd, capture_output=True, check=False, timeout=120
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{command.label} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
        )
    return elapsed


Job = tuple[str, Command, dict[str, str]]
"""(source name, command, environment): one process to time."""


def measure(
    jobs: list[Job], cwd: Path, rounds: int, warmup: int
) -> dict[tuple[str, str], list[float]]:
    """Wall times per (source, command label); rounds interleave every job, order rotated."""
    for _ in range(warmup):
        for _source, command, env in jobs:
            run_once(command, env, cwd)
    times: dict[tuple[str, str], list[float]] = {(s, c.label): [] for s, c, _ in jobs}
    for r in range(rounds):
        shift = r % len(jobs)
        for source, command, env in jobs[shift:] + jobs[:shift]:  # drift hits all alike
            times[source, command.label].append(run_once(command, env, cwd))
    return times


def report(title: str, commands: list[Command], times: dict[str, list[float]]) -> None:
    base = statistics.median(next(times[c.label] for c in commands if c.baseline))
    print(f"\n{title}")
    print("| command | median | p90 | median vs `python -c pass` | under 0.5 s (median / p90) |")
    print("|---|---:|---:|---:|---|")
    for command in commands:
        samples = times[command.label]
        median, p90 = statistics.median(samples), percentile(samples, 0.9)
        ok = (
            "-"
            if command.baseline
            else f"{'yes' if median < TARGET_S else 'NO'} / {'yes' if p90 < TARGET_S else 'NO'}"
        )
        print(f"| {command.label} | {median:.3f} s | {p90:.3f} s | {median / base:.1f}x | {ok} |")


def export_tree(rev: str, into: Path) -> Path:
    """The project's files at ``rev`` in ``into`` (no checkout: the work tree is untouched)."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", rev], cwd=PROJECT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def keep_only_stdlib(prefix: Path) -> None:
    """Delete the cached bytecode of everything but the standard library under ``prefix``."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    keep = prefix / stdlib.relative_to(stdlib.anchor)
    for path in sorted(prefix.rglob("*.pyc")):
        if keep not in path.parents:
            path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--before", metavar="REV", help="also measure the project at this git rev")
    args = parser.parse_args()

    script = Path(sys.executable).with_name("daai-backup")
    if not script.exists():
        raise SystemExit(f"no {script}: run `uv sync --frozen` first")
    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    port = free_port()
    server = subprocess.Popen(
        [
            shutil.which("secantusd-py") or "secantusd-py",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(tmp / "mongo"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"mongodb://127.0.0.1:{port}/"
    try:
        client: MongoClient[Any] = MongoClient(uri, serverSelectionTimeoutMS=30_000)
        client.acme_hr.people.insert_many([{"n": i, "name": f"person {i}"} for i in range(200)])
        client.close()
        work = tmp / "work"
        (work / "storage").mkdir(parents=True)
        (work / "tenants.yaml").write_text(TENANTS_YAML, encoding="utf-8")
        settings_env = {
            "BACKUP_ENCRYPTION_KEY": generate_master_key(),
            "DAAI_BACKUP_MONGODB_URI": uri,
            "DAAI_BACKUP_TENANTS_FILE": str(work / "tenants.yaml"),
            "DAAI_BACKUP_STORAGE_URL": (work / "storage").as_uri(),
        }
        settings = Settings(
            **{k.removeprefix("DAAI_BACKUP_").lower(): v for k, v in settings_env.items()}
        )
        ctx = load_context(settings)
        try:
            file = backup_tenant(ctx, ctx.tenant(TENANT), "manual").entry.file
        finally:
            ctx.close()
        backup = work / "storage" / TENANT / "db-backups" / file

        commands = [
            Command("baseline `python -c pass`", [sys.executable, "-c", "pass"], baseline=True),
            Command("`daai-backup --help`", [str(script), "--help"]),
            Command("`daai-backup keygen`", [str(script), "keygen"]),
            Command("`daai-backup inspect FILE`", [str(script), "inspect", str(backup)]),
            Command("`daai-backup list --tenant T` (local)", [str(script), "list", "-t", TENANT]),
            Command("`daai-backup doctor`", [str(script), "doctor"]),
        ]
        base_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DAAI_BACKUP_", "BACKUP_ENCRYPTION_", "PREFECT_API_"))
            and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
        }
        base_env.update(settings_env)
        base_env["COLUMNS"] = "160"  # `list` prints its table, as in a wide terminal

        sources: dict[str, Path | None] = {"this tree": None}
        if args.before:
            sources[f"before ({args.before})"] = export_tree(args.before, tmp / "before")
        cached_prefix, stdlib_prefix = tmp / "pyc-cached", tmp / "pyc-stdlib"
        print(
            f"{args.rounds} rounds per condition, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f} at the start"
        )
        for condition, prefix, cold in (
            ("bytecode cached (how Python normally runs)", cached_prefix, False),
            ("dependencies not compiled (PYTHONDONTWRITEBYTECODE=1)", stdlib_prefix, True),
        ):
            jobs: list[Job] = []
            for name, source in sources.items():
                env = {**base_env, "PYTHONPYCACHEPREFIX": str(prefix)}
                if source is not None:
                    env["PYTHONPATH"] = str(source)
                for command in commands:
                    run_once(command, env, work)  # writes the bytecode into the prefix
                if cold:
                    env["PYTHONDONTWRITEBYTECODE"] = "1"
                # The baseline runs once per round, whatever the number of sources.
                jobs += [(name, c, env) for c in commands if name == "this tree" or not c.baseline]
            if cold:
                keep_only_stdlib(prefix)
            times = measure(jobs, work, args.rounds, 0 if cold else args.warmup)
            for name in sources:
                per_command = {
                    c.label: times[("this tree" if c.baseline else name), c.label] for c in commands
                }
                report(f"{condition}, {name}", commands, per_command)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
