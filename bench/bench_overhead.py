"""Benchmark: the overhead of a command and of a scheduled run (issue 13), around a tiny engine.

Run: ``uv run python bench/bench_overhead.py [--rounds 5] [--skip-worker]``. Targets: the
command overhead (wall minus the engine's own time, as the flow logs it) at most 1.5 s for
``daai-backup backup`` and ``daai-backup restore`` (the safety backup's engine time excluded
too); a scheduled run in a process worker at most 2 s (process start to final state, minus
engine time) and at most 1.5 CPU-s.

It starts its own Prefect server (its own ``PREFECT_HOME``, a free port) and SecantusDB daemon,
one tenant of 200 small documents, registers the deployments to a process work pool (as
``daai-backup deploy --pool`` does), then runs each command as the operator does (the
``daai-backup`` console script, a fresh process) and reports the median of N rounds of: wall
time, the engine's time (parsed from the run's log lines: "wrote ... in X s", "staged ... in X
s", "restored ... in X s"), the overhead (wall - engine) and the CPU seconds of the process
(``RUSAGE_CHILDREN`` deltas). Then a worker (``prefect worker start --pool``) runs N backups
created from the tenant's deployment, each started through ``bench/overhead_probe.py`` (the
pool's ``command`` job variable), which records the flow-run process's wall time and rusage.

Also the floors: ``python -c pass``, ``import prefect``, and the imports of the backup flow.

The machine is shared (2 cores, other engineers' tests and benchmarks): read medians, and
repeat a run that looks disturbed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_mongo import free_port

PROJECT = Path(__file__).resolve().parents[1]
TENANT = "acme-hr"
WORKSPACE = "Acme HR"
ACTOR = "ops@daai.example"
POOL = "bench-overhead-pool"
TENANTS_YAML = f"""tenants:
  - id: {TENANT}
    workspace_name: {WORKSPACE}
    database: acme_hr
    permissions:
      {ACTOR}: [create, restore]
"""
ENGINE_LINES = {
    "backup": re.compile(r"tenant \S+: wrote \S+ \(.*\) in ([0-9.]+) s"),
    "stage": re.compile(r"tenant \S+: staged \S+: .* in ([0-9.]+) s"),
    "swap": re.compile(r"tenant \S+: restored \S+: .* in ([0-9.]+) s"),
}


def engine_seconds(text: str) -> dict[str, float]:
    """Engine seconds per kind of log line found in ``text`` (summed over repeats)."""
    found: dict[str, float] = {}
    for kind, pattern in ENGINE_LINES.items():
        for match in pattern.finditer(text):
            found[kind] = found.get(kind, 0.0) + float(match.group(1))
    return found


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """(wall s, CPU s, stderr + stdout) of one process (stdout last: the command's result)."""
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    output = done.stderr + done.stdout
    if done.returncode != 0:
        raise SystemExit(f"{argv[1:]} exited {done.returncode}:\n{output[-3000:]}")
    return wall, children_cpu() - cpu, output


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}"


def row(label: str, walls: list[float], engines: list[float], cpus: list[float]) -> str:
    overheads = [w - e for w, e in zip(walls, engines, strict=True)]
    return (
        f"| {label} | {med(walls)} s | {med(engines)} s | **{med(overheads)} s** | "
        f"{med(cpus)} s | {min(overheads):.2f}-{max(overheads):.2f} s |"
    )


def floors(env: dict[str, str], rounds: int) -> list[str]:
    """Process start and import floors, each a fresh process."""
    probes = {
        "`python -c pass`": "pass",
        "`import prefect`": "import prefect",
        "`import prefect` + its flow and task engines": (
            "import prefect, prefect.flow_engine, prefect.task_engine"
        ),
        "imports of the CLI + backup and restore flows": (
            "import cli.main, flows.backup, flows.restore"
        ),
    }
    lines = ["| process | median wall | median CPU |", "|---|---:|---:|"]
    for label, code in probes.items():
        timed([sys.executable, "-c", code], env, PROJECT)  # writes the bytecode
        walls, cpus = [], []
        for _ in range(rounds):
            wall, cpu, _ = timed([sys.executable, "-c", code], env, PROJECT)
            walls.append(wall)
            cpus.append(cpu)
        lines.append(f"| {label} | {med(walls)} s | {med(cpus)} s |")
    return lines


def run_worker(env: dict[str, str], tmp: Path, rounds: int, project: Path) -> list[str]:
    """N backups from the tenant's deployment, run one at a time by a process worker."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    probe_dir = tmp / "probe"
    probe_dir.mkdir()
    worker_env = {
        **env,
        "OVERHEAD_PROBE_DIR": str(probe_dir),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
    }
    log = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--name", "bench"],
        cwd=project,
        env=worker_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    probe = PROJECT / "bench" / "overhead_probe.py"
    modules = ["prefect.engine"]
    if (project / "deployments" / "flow_run.py").exists():
        modules.append("deployments.flow_run")
    results: dict[str, dict[str, list[float]]] = {
        m: {"wall": [], "final": [], "engine": [], "cpu": []} for m in modules
    }
    try:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"backup/backup-{TENANT}")
            for round_ in range(rounds + 1):  # the first warms the worker's bytecode
                for module in modules if round_ % 2 else modules[::-1]:
                    run = client.create_flow_run_from_deployment(
                        deployment.id,
                        parameters={"label": "manual", "actor": ACTOR},
                        job_variables={
                            "command": f"{sys.executable} {probe} {module}",
                            "working_dir": str(project),
                        },
                    )
                    deadline = time.monotonic() + 300
                    state = None
                    while time.monotonic() < deadline:
                        state = client.read_flow_run(run.id).state
                        if state is not None and state.is_final():
                            break
                        time.sleep(0.2)
                    if state is None or not state.is_completed():
                        raise SystemExit(f"flow run {run.id} ended {state}")
                    out = probe_dir / f"{run.id}.json"
                    while not out.exists() and time.monotonic() < deadline:
                        time.sleep(0.1)
                    measured = json.loads(out.read_text(encoding="utf-8"))
                    logs = client.read_logs(
                        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
                    )
                    engine = sum(engine_seconds("\n".join(e.message for e in logs)).values())
                    if round_ == 0:
                        continue
                    got = results[module]
                    got["wall"].append(measured["ended"] - measured["started"])
                    got["final"].append(state.timestamp.timestamp() - measured["started"])
                    got["engine"].append(engine)
                    got["cpu"].append(measured["cpu_s"])
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    def span(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"

    lines = [
        "| scheduled backup in a process worker, flow-run process | "
        + " | ".join(f"`python -m {m}`" for m in modules)
        + " |",
        "|---|" + "---:|" * len(modules),
    ]
    for label, key in (
        ("process start to final state", "final"),
        ("engine (its log)", "engine"),
        ("**overhead: start to final state - engine**", "overhead"),
        ("process wall (start to exit)", "wall"),
        ("**CPU of the flow-run process**", "cpu"),
    ):
        cells = []
        for m in modules:
            got = results[m]
            values = (
                [f - e for f, e in zip(got["final"], got["engine"], strict=True)]
                if key == "overhead"
                else got[key]
            )
            cells.append(span(values))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-worker", action="store_true")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="as this machine runs by default (PYTHONDONTWRITEBYTECODE=1, the environment not "
        "compiled): every process compiles every module it imports",
    )
    parser.add_argument(
        "--before", metavar="DIR", help="the project's files of the run to compare (PYTHONPATH)"
    )
    args = parser.parse_args()

    script = Path(sys.executable).with_name("daai-backup")
    tmp = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        prefect_port, mongo_port = free_port(), free_port()
        api = f"http://127.0.0.1:{prefect_port}/api"
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DAAI_BACKUP_", "BACKUP_ENCRYPTION_", "PREFECT_"))
        }
        base.pop("PYTHONPYCACHEPREFIX", None)
        if not args.no_bytecode:  # bytecode written once (warm-up), read by later processes
            base.pop("PYTHONDONTWRITEBYTECODE", None)
            base["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        if args.before:
            base["PYTHONPATH"] = args.before
        server_env = {**base, "PREFECT_HOME": str(tmp / "prefect-home")}
        processes.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "prefect", "server", "start"),
                    *("--host", "127.0.0.1", "--port", str(prefect_port)),
                ],
                env=server_env,
                stdout=(tmp / "server.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        processes.append(
            subprocess.Popen(
                [
                    shutil.which("secantusd-py") or "secantusd-py",
                    *("--host", "127.0.0.1", "--port", str(mongo_port)),
                    *("--storage-path", str(tmp / "mongo")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        from daai_backup.format.keys import generate_master_key

        work = tmp / "work"
        (work / "storage").mkdir(parents=True)
        (work / "tenants.yaml").write_text(TENANTS_YAML, encoding="utf-8")
        env = {
            **server_env,
            "PREFECT_API_URL": api,
            "BACKUP_ENCRYPTION_KEY": generate_master_key(),
            "DAAI_BACKUP_MONGODB_URI": f"mongodb://127.0.0.1:{mongo_port}/",
            "DAAI_BACKUP_TENANTS_FILE": str(work / "tenants.yaml"),
            "DAAI_BACKUP_STORAGE_URL": (work / "storage").as_uri(),
        }
        os.environ.update(env)  # this process's own Prefect client (deploy, worker runs)

        from pymongo import MongoClient

        client: MongoClient[Any] = MongoClient(env["DAAI_BACKUP_MONGODB_URI"])
        client.acme_hr.people.insert_many([{"n": i, "name": f"person {i}"} for i in range(200)])
        client.close()
        wait_http(f"{api}/health", 180)

        from daai_backup.settings import Settings
        from daai_backup.tenants import TenantRegistry
        from deployments.sync import ensure_process_pool, sync_deployments

        registry = TenantRegistry.load(work / "tenants.yaml")
        ensure_process_pool(POOL)
        sync_deployments(
            registry.values(),
            settings=Settings(_env_file=None),  # type: ignore[call-arg]
            work_pool=POOL,
        )

        print(
            f"{'no bytecode' if args.no_bytecode else 'bytecode cached'}, "
            f"{args.rounds} rounds, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} at the start"
        )
        print("\nFloors (fresh processes):\n")
        print("\n".join(floors(env, args.rounds)))

        help_walls, help_cpus = [], []
        backup = {"wall": [], "engine": [], "cpu": []}  # type: dict[str, list[float]]
        restore = {"wall": [], "engine": [], "cpu": []}  # type: dict[str, list[float]]
        files: list[str] = []
        timed([str(script), "backup", "-t", TENANT, "--actor", ACTOR], env, work)  # warm-up
        for _ in range(args.rounds):
            wall, cpu, _ = timed([str(script), "--help"], env, work)
            help_walls.append(wall)
            help_cpus.append(cpu)
            backup_argv = [str(script), "backup", "-t", TENANT, "--actor", ACTOR]
            wall, cpu, out = timed(backup_argv, env, work)
            backup["wall"].append(wall)
            backup["cpu"].append(cpu)
            backup["engine"].append(sum(engine_seconds(out).values()))
            files.append(out.strip().splitlines()[-1])
        for file in files:
            wall, cpu, out = timed(
                [
                    *(str(script), "restore", "-t", TENANT, "--actor", ACTOR),
                    *("--file", file, "--confirm", WORKSPACE),
                ],
                env,
                work,
            )
            restore["wall"].append(wall)
            restore["cpu"].append(cpu)
            restore["engine"].append(sum(engine_seconds(out).values()))
        print("\nCommands, Prefect server running (each a fresh process):\n")
        print("| command | wall | engine | overhead | CPU | overhead range |")
        print("|---|---:|---:|---:|---:|---:|")
        print(row("`daai-backup --help`", help_walls, [0.0] * args.rounds, help_cpus))
        print(row("`daai-backup backup`", backup["wall"], backup["engine"], backup["cpu"]))
        print(
            row(
                "`daai-backup restore` (engine: stage + swap + safety backup)",
                restore["wall"],
                restore["engine"],
                restore["cpu"],
            )
        )
        if not args.skip_worker:
            print("\nScheduled run (process work pool, `prefect worker start --pool`):\n")
            print("\n".join(run_worker(env, tmp, args.rounds, Path(args.before or PROJECT))))
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
