"""The 01:00 storm: N small tenant backups due at the same minute, run by 2 process workers.

Run with ``uv run python bench/bench_storm.py [--tenants 1000] [--limit 4] [--window 1500]``.

The production layout, all on this machine: a throw-away PostgreSQL cluster
(:mod:`deployments.postgres`), ``prefect server start`` on it, a SecantusDB daemon
(``secantusd-py``), N tenants each with a small real database (a few documents in one
collection), their backup deployments registered by :func:`deployments.sync.sync_deployments`
to a process work pool, the per-cluster cap (``backups-cluster:default``,
``max_concurrent_backups`` slots) created as a deployment does, and 2
``prefect worker start --pool`` processes.

Every tenant is "24-hour" in the one time zone whose next 01:00 is the nearest after
``--lead`` seconds (T), with ``schedule_spread_minutes = 0``: the production schedule itself
puts every backup at the same minute, the server's scheduler creates the runs and the
workers pick them up as they would at 01:00. Measured:

- backups per hour (first start to last end), and per worker CPU second;
- per-run overhead: the run's wall (worker picked it up -> run finished) minus the engine's
  time (the ``backup-tenant`` task run); the flow-run process start is in the overhead;
- worker CPU seconds per run (the two workers and their flow-run children, from /proc);
- lateness: the run's start minus T, p50/p99;
- the cap: the most ``backup_tenant`` task runs overlapping at any instant;
- no run lost or run twice: every tenant exactly one completed scheduled run due at T, and
  exactly one new backup file in its folder.

If not every run finished within ``--window`` seconds after T, the rate is reported over the
runs that did, and the unfinished ones are counted (still scheduled or pending, not lost).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

POOL = "storm-pool"
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime+stime of the process and of its children it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def wait_for(check: Any, what: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return
        except Exception:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"{what}: process exited {proc.returncode}")
        time.sleep(0.5)
    raise SystemExit(f"{what}: not ready after {timeout:.0f} s")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--docs", type=int, default=5, help="documents per tenant database")
    parser.add_argument("--limit", type=int, default=4, help="worker --limit (each)")
    parser.add_argument("--cap", type=int, default=4, help="max_concurrent_backups")
    parser.add_argument("--query-seconds", type=float, default=2.0)
    parser.add_argument("--prefetch-seconds", type=float, default=10.0)
    parser.add_argument("--lead", type=float, default=600.0, help="T at least this far (s)")
    parser.add_argument("--window", type=float, default=1500.0, help="max seconds after T")
    args = parser.parse_args()

    from deployments.postgres import PostgresCluster

    with PostgresCluster.start() as pg:
        run(args, pg.prefect_url)


def run(args: argparse.Namespace, database_url: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    port, mongo_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}/api"
    mongo_uri = f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true"
    storage = work / "storage"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DAAI_"))}
    server_env = {
        **base,
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
    }
    children: list[subprocess.Popen[bytes]] = []

    def start(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv,
            cwd=PROJECT,
            env=env,
            stdout=(work / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        children.append(proc)
        return proc

    try:
        t0 = time.monotonic()
        server = start(
            "server",
            [sys.executable, "-m", "prefect", "server", "start", "--port", str(port)],
            server_env,
        )
        daemon = Path(sys.executable).with_name("secantusd-py")
        mongo = start(
            "secantusd",
            [
                str(daemon) if daemon.exists() else "secantusd-py",
                "--host",
                "127.0.0.1",
                "--port",
                str(mongo_port),
                "--storage-path",
                str(work / "mongo"),
            ],
            base,
        )
        from pymongo import MongoClient

        client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
        wait_for(lambda: client.admin.command("ping"), "SecantusDB", 60, mongo)
        ids = [f"storm-{i:05d}" for i in range(args.tenants)]
        zone, due = pick_zone(args.lead)
        print(f"every tenant in {zone}: due at 01:00 local = {due:%H:%M} UTC (T)")
        for n, tenant in enumerate(ids):
            docs = [
                {"_id": k, "tenant": tenant, "name": f"record {k}", "amount": n * 10 + k}
                for k in range(args.docs)
            ]
            client[f"wp_{tenant.replace('-', '_')}"]["records"].insert_many(docs)
        print(f"seeded {args.tenants} databases x {args.docs} documents")
        tenants_file = work / "tenants.yaml"
        tenants_file.write_text(
            yaml.safe_dump(
                {
                    "tenants": [
                        {
                            "id": t,
                            "workspace_name": t,
                            "database": f"wp_{t.replace('-', '_')}",
                            "frequency": "24-hour",
                            "timezone": zone,
                        }
                        for t in ids
                    ]
                }
            )
        )
        wait_for(
            lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200,
            "Prefect server",
            240,
            server,
        )
        print(f"server on PostgreSQL and SecantusDB up after {time.monotonic() - t0:.0f} s")

        from daai_backup.format.keys import generate_master_key

        key = generate_master_key()
        os.environ["PREFECT_API_URL"] = api
        os.environ["PREFECT_HOME"] = str(work / "client")
        os.environ["DAAI_BACKUP_MAX_CONCURRENT_BACKUPS"] = str(args.cap)
        from daai_backup.settings import Settings
        from daai_backup.tenants import TenantRegistry
        from deployments.sync import ensure_process_pool, sync_deployments
        from tasks.common import ensure_limits

        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            tenants_file=tenants_file,
            storage_url=storage.as_uri(),
            max_concurrent_backups=args.cap,
            schedule_spread_minutes=0,
        )
        registry = TenantRegistry.load(tenants_file)
        ensure_process_pool(POOL)
        ensure_limits(settings)
        t1 = time.monotonic()
        report = sync_deployments(
            registry.values(), settings=settings, work_pool=POOL, now=datetime.now(UTC)
        )
        print(f"registered: {report.summary()} in {time.monotonic() - t1:.0f} s")

        if (due - datetime.now(UTC)).total_seconds() < 20:
            raise SystemExit("registration ended after T: raise --lead")

        worker_env = {
            **base,
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(work / "worker"),
            "PREFECT_WORKER_QUERY_SECONDS": str(args.query_seconds),
            "PREFECT_WORKER_PREFETCH_SECONDS": str(args.prefetch_seconds),
            "DAAI_BACKUP_MONGODB_URI": mongo_uri,
            "DAAI_BACKUP_STORAGE_URL": storage.as_uri(),
            "DAAI_BACKUP_TENANTS_FILE": str(tenants_file),
            "DAAI_BACKUP_MAX_CONCURRENT_BACKUPS": str(args.cap),
            "BACKUP_ENCRYPTION_KEY": key,
        }
        workers = [
            start(
                name,
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "worker",
                    "start",
                    "--pool",
                    POOL,
                    "--name",
                    name,
                    "--limit",
                    str(args.limit),
                ],
                worker_env,
            )
            for name in ("worker-a", "worker-b")
        ]
        cpu_before = {w.pid: cpu_seconds(w.pid) for w in workers}
        others_before = {p.pid: cpu_seconds(p.pid) for p in (server, mongo)}
        with httpx.Client(base_url=api, timeout=60) as http:
            due_filter = {
                "flow_runs": {
                    "expected_start_time": {
                        "after_": (due - timedelta(seconds=1)).isoformat(),
                        "before_": (due + timedelta(seconds=1)).isoformat(),
                    }
                },
                "deployments": {"name": {"like_": "backup-storm-"}},
            }
            created = 0
            while datetime.now(UTC) < due:
                created = int(http.post("/flow_runs/count", json=due_filter).json())
                time.sleep(5)
            print(f"at T: {created}/{args.tenants} runs due at T created by the scheduler")
            finished = 0
            deadline = due + timedelta(seconds=args.window)
            done_filter = {
                **due_filter,
                "flow_runs": {
                    **due_filter["flow_runs"],
                    "state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]}},
                },
            }
            last_print = 0.0
            while datetime.now(UTC) < deadline:
                finished = int(http.post("/flow_runs/count", json=done_filter).json())
                if finished >= args.tenants:
                    break
                if time.monotonic() - last_print > 60:
                    late = (datetime.now(UTC) - due).total_seconds()
                    print(f"  T+{late:.0f} s: {finished} finished")
                    last_print = time.monotonic()
                time.sleep(5)
            cpu_after = {w.pid: cpu_seconds(w.pid) for w in workers}
            others = [cpu_seconds(p.pid) - others_before[p.pid] for p in (server, mongo)]
            print(
                f"during the storm: Prefect server {others[0]:.0f} CPU s, SecantusDB "
                f"{others[1]:.0f} CPU s"
            )
            for w in workers:
                os.killpg(w.pid, signal.SIGINT)
            for w in workers:
                try:
                    w.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(w.pid, signal.SIGKILL)
            report_runs(http, args, ids, due, storage, cpu_before, cpu_after, workers)
    finally:
        for proc in reversed(children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in children:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        print(f"logs in {work}")


def pick_zone(lead_s: float) -> tuple[str, datetime]:
    """The time zone whose next 01:00 comes soonest but at least ``lead_s`` from now.

    With ``schedule_spread_minutes = 0`` every tenant in that zone is due at 01:00 local, the
    same minute: the storm is the production schedule itself, nothing is moved by hand.
    Zones' offsets come in quarter hours, so the wait is at most about 30 minutes.
    """
    from zoneinfo import ZoneInfo, available_timezones

    earliest = datetime.now(UTC) + timedelta(seconds=lead_s)
    best: tuple[datetime, str] | None = None
    for name in sorted(available_timezones()):
        if "/" not in name or name.startswith(("Etc/", "posix/", "right/")):
            continue
        local = earliest.astimezone(ZoneInfo(name))
        one = local.replace(hour=1, minute=0, second=0, microsecond=0)
        if one < local:
            one += timedelta(days=1)
        due = one.astimezone(UTC)
        if best is None or due < best[0]:
            best = (due, name)
    assert best is not None
    return best[1], best[0]


def report_runs(
    http: httpx.Client,
    args: argparse.Namespace,
    ids: list[str],
    due: datetime,
    storage: Path,
    cpu_before: dict[int, float],
    cpu_after: dict[int, float],
    workers: list[subprocess.Popen[bytes]],
) -> None:
    runs: list[dict[str, Any]] = []
    body: dict[str, Any] = {
        "deployments": {"name": {"like_": "backup-storm-"}},
        "sort": "ID_DESC",  # stable while states change (all share one expected start)
        "limit": 200,
    }
    offset = 0
    while True:
        page = http.post("/flow_runs/filter", json={**body, "offset": offset}).json()
        runs.extend(page)
        if len(page) < 200:
            break
        offset += 200
    runs = list({r["id"]: r for r in runs}.values())
    at_t = [
        r for r in runs if abs((parse_time(r["expected_start_time"]) - due).total_seconds()) < 1
    ]
    ran = [r for r in runs if r["start_time"] is not None]
    per_tenant: dict[str, list[dict[str, Any]]] = {}
    for r in ran:
        per_tenant.setdefault(r["parameters"].get("tenant", "?"), []).append(r)
    completed = [r for r in at_t if r["state_type"] == "COMPLETED"]
    states: dict[str, int] = {}
    for r in at_t:
        states[r["state_type"]] = states.get(r["state_type"], 0) + 1
    twice = sorted(t for t, rs in per_tenant.items() if len(rs) > 1)
    files = {t: list((storage / t / "db-backups").glob("24-hour_*.gz.enc")) for t in ids}
    done_tenants = {r["parameters"]["tenant"] for r in completed}
    wrong_files = sorted(t for t in done_tenants if len(files[t]) != 1)
    stray_files = sorted(t for t in ids if t not in done_tenants and files[t])
    print(
        f"runs due at T: {len(at_t)} ({states}); runs that started at all: {len(ran)}; "
        f"tenants with more than one started run: {len(twice)} {twice[:5]}"
    )
    print(
        f"completed tenants with exactly one new backup file: "
        f"{len(done_tenants) - len(wrong_files)}/{len(done_tenants)} (wrong: {wrong_files[:5]}); "
        f"files of tenants without a completed run: {len(stray_files)}"
    )
    if not completed:
        return
    # engine time: the backup_tenant task run of each completed run
    engine: dict[str, float] = {}
    intervals: list[tuple[datetime, datetime]] = []
    offset = 0
    ids_done = [r["id"] for r in completed]
    for start in range(0, len(ids_done), 200):
        chunk = ids_done[start : start + 200]
        tasks = http.post(
            "/task_runs/filter",
            json={
                "flow_runs": {"id": {"any_": chunk}},
                "task_runs": {"name": {"like_": "backup-storm-"}},
                "limit": 200,
            },
        ).json()
        for task in tasks:
            if task["start_time"] and task["end_time"]:
                s, e = parse_time(task["start_time"]), parse_time(task["end_time"])
                engine[task["flow_run_id"]] = (e - s).total_seconds()
                intervals.append((s, e))
    lateness: list[float] = []
    walls: list[float] = []
    overheads: list[float] = []
    for r in completed:
        began, end = parse_time(r["start_time"]), parse_time(r["end_time"])
        lateness.append((began - due).total_seconds())
        states_of = http.get("/flow_run_states/", params={"flow_run_id": r["id"]}).json()
        pending = [parse_time(s["timestamp"]) for s in states_of if s["type"] == "PENDING"]
        picked = min(pending) if pending else began
        wall = (end - picked).total_seconds()
        walls.append(wall)
        if r["id"] in engine:
            overheads.append(wall - engine[r["id"]])
    first = min(parse_time(r["start_time"]) for r in completed)
    last = max(parse_time(r["end_time"]) for r in completed)
    span = (last - first).total_seconds()
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    cpu = sum(cpu_after[w.pid] - cpu_before[w.pid] for w in workers)
    n = len(completed)
    print(
        f"{n} completed in {span:.0f} s (first start -> last end): "
        f"{n / span * 3600:.0f} backups/hour"
    )
    print(
        f"run wall (picked up -> end) p50 {statistics.median(walls):.2f} s, "
        f"p99 {pct(walls, 0.99):.2f} s; engine (backup_tenant) p50 "
        f"{statistics.median(engine.values()):.2f} s; overhead p50 "
        f"{statistics.median(overheads):.2f} s, p99 {pct(overheads, 0.99):.2f} s"
    )
    print(
        f"lateness (start - T) p50 {statistics.median(lateness):.1f} s, "
        f"p99 {pct(lateness, 0.99):.1f} s, max {max(lateness):.1f} s"
    )
    print(
        f"worker CPU (2 workers + their flow-run processes): {cpu:.0f} s, "
        f"{cpu / n:.2f} s per run; most backup_tenant at once: {peak} (cap {args.cap})"
    )


if __name__ == "__main__":
    main()
