"""Change capture: throughput against the server's write rate, lag under load, flat memory.

    uv run python bench/bench_capture.py [--steady 40] [--backlog 20] [--max-lag 5]

SecantusDB runs as its own process (so this process's RSS is the capture's). Two tenants.

1. Steady: writer threads insert small documents as fast as the server takes them while the
   capture runs in a thread (``max_lag`` seconds target); lag = commit (event ``wallTime``)
   -> segment stored, per event, p50/p99; RSS sampled each second.
2. Backlog: with capture stopped, the writers run again; then ``capture --once`` drains the
   backlog: its events/s against the writers' rate (the server's insert rate).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daai_backup.capture.runner import run_capture
from daai_backup.format.keys import generate_master_key
from daai_backup.settings import Settings


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write(uri: str, db: str, stop: threading.Event, counter: list[int]) -> None:
    client: MongoClient[dict[str, object]] = MongoClient(uri)
    coll = client[db]["events"]
    n = 0
    while not stop.is_set():
        coll.insert_many(
            [{"n": n + k, "kind": "order", "amount": 12.5, "note": "x" * 80} for k in range(10)]
        )
        n += 10
    counter.append(n)
    client.close()


def _writers(uri: str, dbs: list[str], seconds: float) -> float:
    stop = threading.Event()
    counts: list[int] = []
    threads = [threading.Thread(target=_write, args=(uri, db, stop, counts)) for db in dbs]
    start = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steady", type=float, default=40)
    parser.add_argument("--backlog", type=float, default=20)
    parser.add_argument("--max-lag", type=float, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    port = _free_port()
    server = subprocess.Popen(
        [
            "secantusd-py",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(work / "db"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"mongodb://127.0.0.1:{port}/"
    try:
        client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=30000)
        client.admin.command("ping")
        tenants = work / "tenants.yaml"
        tenants.write_text(
            "tenants:\n"
            "  - {id: alpha, workspace_name: Alpha, database: alpha}\n"
            "  - {id: beta, workspace_name: Beta, database: beta}\n"
        )
        (work / "storage").mkdir()
        settings = Settings(
            backup_encryption_key=generate_master_key(),
            mongodb_uri=uri,
            storage_url=(work / "storage").as_uri(),
            tenants_file=tenants,
            _env_file=None,  # type: ignore[call-arg]
        )
        run_capture(settings, once=True)  # start point

        # 1. steady load with capture running
        stop = threading.Event()
        result: dict[str, object] = {}
        rss: list[float] = []

        def capture() -> None:
            result["outcome"] = run_capture(settings, stop=stop, max_lag_s=args.max_lag)

        def sample() -> None:
            while not stop.is_set():
                rss.append(_rss_mb())
                time.sleep(1)

        worker = threading.Thread(target=capture)
        sampler = threading.Thread(target=sample)
        worker.start()
        sampler.start()
        write_rate = _writers(uri, ["alpha", "beta"], args.steady)
        time.sleep(args.max_lag + 2)
        stop.set()
        worker.join()
        sampler.join()
        outcome = result["outcome"]
        lags = sorted(outcome.lag_samples)  # type: ignore[attr-defined]
        p50 = statistics.median(lags)
        p99 = lags[int(len(lags) * 0.99) - 1]
        third = max(1, len(rss) // 3)
        print(
            f"steady: writers {write_rate:,.0f} events/s for {args.steady:.0f} s; "
            f"captured {outcome.events:,} events; lag p50 {p50:.2f} s, p99 {p99:.2f} s "  # type: ignore[attr-defined]
            f"(target {args.max_lag:g} s); RSS first third {max(rss[:third]):.0f} MB, "
            f"last third {max(rss[-third:]):.0f} MB"
        )

        # 2. backlog drained by capture --once
        backlog_rate = _writers(uri, ["alpha", "beta"], args.backlog)
        started = time.monotonic()
        drained = run_capture(settings, once=True)
        seconds = time.monotonic() - started
        print(
            f"backlog: writers {backlog_rate:,.0f} events/s for {args.backlog:.0f} s; "
            f"capture --once stored {drained.events:,} events in {seconds:.1f} s = "
            f"{drained.events / seconds:,.0f} events/s "
            f"({drained.events / seconds / backlog_rate:.1f}x the write rate); "
            f"RSS {_rss_mb():.0f} MB"
        )
        client.close()
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
