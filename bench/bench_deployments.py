"""Deployments benchmark: register 1,000 tenants' deployments, re-sync, one scheduler pass.

Run with ``uv run python bench/bench_deployments.py [--tenants 1000] [--database postgres]``.
It starts its own ``prefect server start`` (SQLite in a temporary ``PREFECT_HOME``, or with
``--database postgres`` a throw-away PostgreSQL cluster from :mod:`deployments.postgres`, the
production layout; a free port) and measures, in this process, every HTTP request the
Prefect client sends (count, total, p50/p95/p99/max):

1. first ``sync_deployments`` of N tenants (frequencies spread over the production rows,
   time zones over five zones): N backup deployments + 4 operation deployments created;
2. the same sync again (nothing to do: reads only), the hourly cost at steady state;
3. one change to 1 % of tenants (frequency) and 1 % suspended: the incremental cost;
4. the scheduler: time from the end of registration until every backup deployment has its
   upcoming runs in the database, and how many runs that is (the server's scheduler and its
   recent-deployments scheduler create them; nothing is triggered by hand).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

ZONES = ["Asia/Kolkata", "Europe/Berlin", "America/New_York", "UTC", "Asia/Tokyo"]
FREQUENCIES = ["15-day", "15-day", "7-day", "3-day", "24-hour", "monthly"]


@dataclass
class Requests:
    latencies: list[float] = field(default_factory=list)

    def summary(self, wall: float) -> str:
        if not self.latencies:
            return f"{wall:.1f} s, 0 requests"
        ms = sorted(x * 1000 for x in self.latencies)
        p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        return (
            f"{wall:.1f} s wall, {len(ms)} requests, {sum(ms) / 1000:.1f} s in requests, "
            f"p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, "
            f"max {ms[-1]:.0f} ms"
        )


@contextmanager
def counted() -> Iterator[Requests]:
    """Count and time every request any httpx client (sync or async) in this process sends."""
    record = Requests()
    original = httpx.Client.send
    original_async = httpx.AsyncClient.send

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        start = time.perf_counter()
        try:
            return original(self, request, **kwargs)
        finally:
            record.latencies.append(time.perf_counter() - start)

    async def send_async(
        self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        start = time.perf_counter()
        try:
            return await original_async(self, request, **kwargs)
        finally:
            record.latencies.append(time.perf_counter() - start)

    httpx.Client.send = send  # type: ignore[method-assign]
    httpx.AsyncClient.send = send_async  # type: ignore[method-assign]
    try:
        yield record
    finally:
        httpx.Client.send = original  # type: ignore[method-assign]
        httpx.AsyncClient.send = original_async  # type: ignore[method-assign]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tenants_data(count: int, changed: bool = False) -> dict[str, Any]:
    items = []
    for i in range(count):
        frequency = FREQUENCIES[i % len(FREQUENCIES)]
        item: dict[str, Any] = {
            "id": f"tenant-{i:05d}",
            "workspace_name": f"Tenant {i}",
            "frequency": frequency,
            "timezone": ZONES[i % len(ZONES)],
        }
        if changed and i % 100 == 1:
            item["frequency"] = "7-day" if frequency != "7-day" else "3-day"
        if changed and i % 100 == 2:
            item["subscription"] = "suspended"
        items.append(item)
    return {"tenants": items}


def count_runs(api: str, client: httpx.Client) -> tuple[int, int]:
    """(backup deployments with at least one scheduled run, scheduled runs in total)."""
    body = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
    total = int(client.post(f"{api}/flow_runs/count", json=body).json())
    with_runs = int(
        client.post(
            f"{api}/deployments/count",
            json={**body, "deployments": {"name": {"like_": "backup-tenant-"}}},
        ).json()
    )
    return with_runs, total


@contextmanager
def database(kind: str) -> Iterator[dict[str, str]]:
    """Environment for the server: SQLite in PREFECT_HOME (nothing), or a PostgreSQL cluster."""
    if kind == "sqlite":
        yield {}
        return
    from deployments.postgres import PostgresCluster

    with PostgresCluster.start() as pg:
        yield {"PREFECT_API_DATABASE_CONNECTION_URL": pg.prefect_url}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with database(args.database) as db_env:
        run(args.tenants, args.database, db_env)


def run(tenants: int, kind: str, db_env: dict[str, str]) -> None:
    home = Path(tempfile.mkdtemp(prefix="bench-prefect-"))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    env.update(db_env)
    print(f"{kind} database, {tenants} tenants")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--port", str(port)],
        env=env,
        stdout=(home / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() - started > 240:
                raise SystemExit((home / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        print(f"server healthy after {time.monotonic() - started:.1f} s")
        os.environ["PREFECT_API_URL"] = api
        os.environ["PREFECT_HOME"] = str(home)

        from daai_backup.settings import Settings
        from daai_backup.tenants import TenantRegistry
        from deployments.build import load_flows
        from deployments.sync import sync_deployments

        # 8 writes in flight on PostgreSQL (operations.md); SQLite keeps the default 1.
        concurrent = 8 if kind == "postgres" else 1
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, sync_concurrent_writes=concurrent
        )
        flows = load_flows()
        registry = TenantRegistry.from_data(tenants_data(tenants))

        def phase(name: str, reg: TenantRegistry) -> float:
            with counted() as record:
                t0 = time.monotonic()
                report = sync_deployments(
                    reg.values(), settings=settings, now=datetime.now(UTC), flows=flows
                )
                wall = time.monotonic() - t0
            print(f"{name}: {report.summary()}")
            print(f"    {record.summary(wall)}")
            return time.monotonic()

        registered = phase(f"1. register {tenants} tenants", registry)
        expected = sum(1 for t in registry.values() if t.subscription != "suspended")
        with httpx.Client(timeout=30) as http:
            seen = (0, 0)
            while time.monotonic() - registered < 900:
                seen = count_runs(api, http)
                if seen[0] >= expected:
                    break
                time.sleep(2)
            print(
                f"4. scheduler: {seen[0]}/{expected} backup deployments scheduled "
                f"{time.monotonic() - registered:.1f} s after registration; "
                f"{seen[1]} scheduled runs in total so far"
            )
        phase("2. re-sync, nothing changed", registry)
        phase(
            "3. 1 % frequency changes + 1 % suspended",
            TenantRegistry.from_data(tenants_data(tenants, changed=True)),
        )
        with httpx.Client(timeout=30) as http:
            time.sleep(10)
            print(f"   scheduled runs after the change: {count_runs(api, http)[1]}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
