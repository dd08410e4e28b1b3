"""Benchmark: the whole backup (dump -> gzip -> DBK1 -> local folder) against a bare scan.

Run: ``uv run python bench/bench_backup_pipeline.py`` (``--help`` for options). It starts its
own SecantusDB daemon (``secantusd-py``) on a temporary folder, seeds it with the realistic
data of ``bench_mongo.py`` (imported, not copied) and measures, rounds interleaved, best of N:

- (a) a bare ``find_raw_batches`` scan of every collection;
- (b) ``dump_database`` into a discarding sink;
- (p1) the backup's producer alone, dump + gzip + DBK1 in one thread (what ``backup_tenant``
  runs), drained from its pipe and discarded;
  (p2) the candidate in two threads (dump | gzip + DBK1, two bounded pipes);
- (w) the local storage write alone (temp file, fsync, rename) of one backup's bytes;
- (c) the full ``operations.backup_tenant`` into local folder storage;

and reports (c)/(a) and (b)/(a). During (c) it samples the CPU time of every thread of this
process (``/proc/self/task``) and of the server process, to show whether the pipeline is held
by one thread (the GIL) or by the server. Peak RSS (VmHWM) of (c) is taken in a fresh
subprocess at two database sizes.

SecantusDB is much slower than mongod and the machine is shared, so only same-run ratios mean
something.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, cast

import psutil
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_mongo import COLLECTIONS, MB, NullSink, bare_scan, free_port, seed

from daai_backup import operations
from daai_backup.format.compression import open_gzip_writer
from daai_backup.format.dbk1 import ContentType, EncryptingWriter
from daai_backup.format.keys import generate_master_key, parse_master_key
from daai_backup.mongo import dump_database
from daai_backup.mongo.dump import BATCH_DOCUMENTS
from daai_backup.settings import Settings
from daai_backup.storage.local import LocalStorage
from daai_backup.streams import produce_into_pipe
from daai_backup.tenants import TenantRegistry

TENANT = "bench"
NAME = "manual_20260101T000000Z_00000000.gz.enc"
_TICK = os.sysconf("SC_CLK_TCK")


def make_context(uri: str, database: str, storage: Path, key: str) -> operations.EngineContext:
    settings = Settings(
        backup_encryption_key=key,
        mongodb_uri=uri,
        storage_url=storage.as_uri(),
        tenants_file=Path("unused.yaml"),
    )
    registry = TenantRegistry.from_data(
        {"tenants": [{"id": TENANT, "workspace_name": "bench", "database": database}]}
    )
    return operations.EngineContext(settings, registry)


class ThreadCpu:
    """Samples utime+stime of every thread of this process until stopped (10 ms ticks)."""

    def __init__(self, interval: float = 0.02) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._seen: dict[int, float] = {}
        self._names: dict[int, str] = {}
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _sample(self) -> None:
        for t in threading.enumerate():
            if t.native_id is not None:
                self._names[t.native_id] = t.name
        for task in os.listdir("/proc/self/task"):
            try:
                stat = Path(f"/proc/self/task/{task}/stat").read_text()
            except OSError:
                continue  # the thread ended between listdir and read
            fields = stat.rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / _TICK
            self._seen[int(task)] = max(cpu, self._seen.get(int(task), 0.0))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def __enter__(self) -> ThreadCpu:
        self._sample()
        self._base = dict(self._seen)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def by_name(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for tid, cpu in self._seen.items():
            if self._names.get(tid) == "cpu-sampler":
                continue
            used = cpu - self._base.get(tid, 0.0)
            name = self._names.get(tid, f"tid-{tid}")
            if name.startswith("pymongo") or name.startswith("Thread-"):
                name = "pymongo/other"  # monitors and heartbeats
            out[name] = round(out.get(name, 0.0) + used, 2)
        return {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}


@contextmanager
def server_cpu(pid: int, box: dict[str, float]) -> Iterator[None]:
    proc = psutil.Process(pid)
    before = proc.cpu_times()
    yield
    after = proc.cpu_times()
    box["server_cpu_s"] = round((after.user - before.user) + (after.system - before.system), 2)


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def child(args: argparse.Namespace) -> None:
    """Fresh process: one full backup, then print peak RSS in KiB."""
    ctx = make_context(args.uri, args.db, Path(args.storage), args.key)
    operations.backup_tenant(ctx, ctx.tenant(TENANT), "manual")
    ctx.close()
    status = Path("/proc/self/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    print(json.dumps({"peak_rss_kib": int(hwm.split()[1])}))


def rss_of(uri: str, db: str, storage: Path, key: str) -> int:
    cmd = [sys.executable, __file__, "--child", "--uri", uri, "--db", db]
    cmd += ["--storage", str(storage), "--key", key]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak_rss_kib"])


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [
            shutil.which("secantusd-py") or "secantusd-py",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, f"mongodb://127.0.0.1:{port}/?directConnection=true"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--large-mb", type=int, default=200, help="0 skips the RSS growth check")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    server, uri = start_server(tmp / "data")
    key = generate_master_key()
    master = parse_master_key(key)
    try:
        client: MongoClient[Any] = MongoClient(uri, serverSelectionTimeoutMS=30_000)
        client.admin.command("ping")
        report: dict[str, Any] = {"cpus": os.cpu_count()}
        t0 = time.perf_counter()
        size = seed(client, "bench", args.size_mb)
        report["seed_s"] = round(time.perf_counter() - t0, 1)
        report["data_mb"] = round(size / MB, 1)
        report["documents"] = sum(client.bench[c].count_documents({}) for c in COLLECTIONS)

        store = tmp / "store"
        ctx = make_context(uri, "bench", store, key)
        tenant = ctx.tenant(TENANT)
        clock = iter(datetime(2030, 1, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(10**6))

        def scan() -> None:
            bare_scan(client, "bench", BATCH_DOCUMENTS)

        def dump_null() -> None:
            dump_database(client, "bench", cast(BinaryIO, NullSink()))

        def drain(pipe: BinaryIO, handle: Any) -> None:
            while pipe.read(1 << 20):
                pass
            handle.result()

        def seal(source: BinaryIO, sink: BinaryIO) -> None:
            with EncryptingWriter(
                sink, master, TENANT, name=NAME, content_type=ContentType.BACKUP_ARCHIVE
            ) as enc:
                gz = open_gzip_writer(cast(BinaryIO, enc))
                shutil.copyfileobj(source, gz, 1 << 20)
                gz.close()

        def one_thread(sink: BinaryIO) -> None:
            # The backup's producer before this benchmark: dump, gzip, encrypt in one thread.
            with EncryptingWriter(
                sink, master, TENANT, name=NAME, content_type=ContentType.BACKUP_ARCHIVE
            ) as enc:
                gz = open_gzip_writer(cast(BinaryIO, enc))
                dump_database(client, "bench", gz)
                gz.close()

        def producer_one_thread() -> None:
            drain(*produce_into_pipe(one_thread))

        def two_threads(sink: BinaryIO) -> None:
            # The candidate: the dump in its own thread, gzip + DBK1 in this one.
            source, dump = produce_into_pipe(
                partial(dump_database, client, "bench"), max_chunks=4, name="bench-dump"
            )
            try:
                seal(source, sink)
            finally:
                source.close()
            dump.result()

        def producer_two_threads() -> None:
            drain(*produce_into_pipe(two_threads, name="bench-seal"))

        sample = tmp / "sample.gz.enc"
        with sample.open("wb") as f:
            one_thread(cast(BinaryIO, f))
        storage = LocalStorage(tmp / "write-only")

        def storage_only() -> None:
            with sample.open("rb") as f:
                storage.put_stream("x.gz.enc", cast(BinaryIO, f))

        outcomes: list[operations.BackupOutcome] = []

        def full() -> None:
            outcomes.append(operations.backup_tenant(ctx, tenant, "manual", now=next(clock)))

        times: dict[str, list[float]] = {
            "scan": [],
            "dump": [],
            "producer_1t": [],
            "producer_2t": [],
            "storage": [],
            "full": [],
        }
        cpu_of_best: dict[str, Any] = {}
        for _ in range(args.rounds):  # interleaved so drift hits every measure alike
            times["scan"].append(timed(scan))
            times["dump"].append(timed(dump_null))
            times["producer_1t"].append(timed(producer_one_thread))
            times["producer_2t"].append(timed(producer_two_threads))
            times["storage"].append(timed(storage_only))
            box: dict[str, float] = {}
            proc_before = time.process_time()
            with ThreadCpu() as threads, server_cpu(server.pid, box):
                wall = timed(full)
            times["full"].append(wall)
            if wall == min(times["full"]):
                cpu_of_best = {
                    "wall_s": round(wall, 2),
                    "client_process_cpu_s": round(time.process_time() - proc_before, 2),
                    **box,
                    "threads_cpu_s": threads.by_name(),
                }
            for entry in operations.list_backups(ctx, tenant):
                operations.delete_backup(ctx, tenant, entry.file)
        best = {k: min(v) for k, v in times.items()}
        report["bare_scan_s"] = round(best["scan"], 2)
        report["dump_null_s"] = round(best["dump"], 2)
        report["producer_one_thread_s"] = round(best["producer_1t"], 2)
        report["producer_two_threads_s"] = round(best["producer_2t"], 2)
        report["storage_write_only_s"] = round(best["storage"], 2)
        report["backup_tenant_s"] = round(best["full"], 2)
        report["all_rounds_s"] = {k: [round(x, 2) for x in v] for k, v in times.items()}
        report["dump_vs_scan"] = round(best["dump"] / best["scan"], 3)
        report["producer_one_thread_vs_scan"] = round(best["producer_1t"] / best["scan"], 3)
        report["producer_two_threads_vs_scan"] = round(best["producer_2t"] / best["scan"], 3)
        report["backup_vs_scan"] = round(best["full"] / best["scan"], 3)
        report["backup_output_mb"] = round(outcomes[-1].entry.size_bytes / MB, 2)
        report["cpu_during_best_backup"] = cpu_of_best
        ctx.close()

        rss: dict[str, Any] = {"small_kib": rss_of(uri, "bench", tmp / "rss-small", key)}
        if args.large_mb:
            t0 = time.perf_counter()
            large = seed(client, "bench_large", args.large_mb)
            report["large_seed_s"] = round(time.perf_counter() - t0, 1)
            report["large_data_mb"] = round(large / MB, 1)
            rss["large_kib"] = rss_of(uri, "bench_large", tmp / "rss-large", key)
            rss["growth"] = round(rss["large_kib"] / rss["small_kib"], 3)
        report["backup_peak_rss"] = rss
        print(json.dumps(report, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
