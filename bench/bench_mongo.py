"""Benchmark: the MongoDB engine against bare pymongo on the same server, in the same run.

Run: ``uv run python bench/bench_mongo.py`` (``--help`` for options). It starts its own
SecantusDB daemon (``secantusd-py``) on a temporary folder, seeds realistic ~7 KB documents
(users with nested profiles, orders with line items, free-text events) and measures:

- backup: ``dump_database`` into a discarding sink (and through gzip) vs a bare
  ``find_raw_batches`` scan of the same collections, rounds interleaved, best of N;
- restore: ``restore_database`` (staging, indexes, verify, swap) vs a bare unordered
  ``insert_many`` of the same raw documents plus the same index builds;
- peak RSS of a backup and of a restore, each in a fresh subprocess, at two sizes.

SecantusDB is much slower than mongod, so only the ratios mean something.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daai_backup.mongo import dump_database, restore_database
from daai_backup.mongo.dump import BATCH_DOCUMENTS

MB = 1_000_000
COLLECTIONS = ("users", "orders", "events")
INDEXES: dict[str, list[dict[str, Any]]] = {
    "users": [{"key": {"email": 1}, "name": "email_1", "unique": True}],
    "orders": [{"key": {"user": 1, "created": -1}, "name": "user_1_created_-1"}],
    "events": [],
}
_WORDS = [
    "invoice",
    "payment",
    "shipped",
    "delayed",
    "customer",
    "support",
    "refund",
    "upgrade",
    "plan",
    "tenant",
    "workspace",
    "report",
    "export",
    "import",
    "analytics",
    "dashboard",
    "billing",
    "annual",
    "monthly",
    "discount",
    "coupon",
    "region",
    "mumbai",
    "delhi",
    "bengaluru",
    "pune",
    "chennai",
    "hyderabad",
    "kolkata",
    "priority",
    "ticket",
    "resolved",
    "pending",
]


class NullSink(io.RawIOBase):
    """Counts and discards."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(data)
        self.count += n
        return n


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _doc(rng: random.Random, kind: str, i: int) -> dict[str, Any]:
    when = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(30_000_000))
    if kind == "users":
        return {
            "email": f"user{i}@tenant{rng.randrange(50)}.example",
            "name": _text(rng, 2).title(),
            "created": when,
            "profile": {
                "bio": _text(rng, 150),
                "prefs": {f"p{k}": rng.random() < 0.5 for k in range(20)},
                "addresses": [{"city": rng.choice(_WORDS), "pin": rng.randrange(10**6)}] * 3,
            },
            "notes": [_text(rng, 60) for _ in range(6)],
        }
    if kind == "orders":
        return {
            "user": rng.randrange(10**5),
            "created": when,
            "status": rng.choice(["new", "paid", "shipped", "refunded"]),
            "items": [
                {
                    "sku": f"SKU-{rng.randrange(10**6)}",
                    "qty": rng.randrange(1, 9),
                    "price": round(rng.uniform(1, 500), 2),
                    "desc": _text(rng, 25),
                }
                for _ in range(20)
            ],
            "comment": _text(rng, 150),
        }
    return {"at": when, "type": rng.choice(_WORDS), "payload": _text(rng, 1000)}


def seed(client: MongoClient[Any], db_name: str, megabytes: int) -> int:
    """Seed ~``megabytes`` MB of documents spread over the three collections; returns bytes."""
    rng = random.Random(7)
    db = client[db_name]
    db.drop_collection("users")
    total = 0
    i = 0
    target = megabytes * MB
    while total < target:
        for kind in COLLECTIONS:
            batch = [_doc(rng, kind, i + k) for k in range(100)]
            total += sum(len(bson.encode(d)) for d in batch)
            db[kind].insert_many(batch, ordered=False)
        i += 100
    for name, specs in INDEXES.items():
        if specs:
            db.command("createIndexes", name, indexes=specs)
    return total


def bare_scan(client: MongoClient[Any], db_name: str, batch_size: int = 0) -> int:
    n = 0
    for name in COLLECTIONS:
        for batch in client[db_name][name].find_raw_batches({}, batch_size=batch_size):
            n += len(batch)
    return n


def parallel_scan(client: MongoClient[Any], db_name: str) -> int:
    def one(name: str) -> int:
        return sum(
            len(b) for b in client[db_name][name].find_raw_batches({}, batch_size=BATCH_DOCUMENTS)
        )

    with ThreadPoolExecutor(len(COLLECTIONS)) as pool:
        return sum(pool.map(one, COLLECTIONS))


def best(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bare_restore(client: MongoClient[Any], db_name: str, docs: dict[str, list[bytes]]) -> None:
    client.drop_database(db_name)
    db = client[db_name]
    for name in COLLECTIONS:
        db.create_collection(name)
        raw = docs[name]
        batch: list[RawBSONDocument] = []
        size = 0
        for d in raw:
            batch.append(RawBSONDocument(d))
            size += len(d)
            if size >= 8 * 1024 * 1024 or len(batch) >= 1000:
                db[name].insert_many(batch, ordered=False, bypass_document_validation=True)
                batch, size = [], 0
        if batch:
            db[name].insert_many(batch, ordered=False, bypass_document_validation=True)
        if INDEXES[name]:
            db.command("createIndexes", name, indexes=INDEXES[name])


def raw_documents(client: MongoClient[Any], db_name: str) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for name in COLLECTIONS:
        docs: list[bytes] = []
        for batch in client[db_name][name].find_raw_batches({}):
            docs.extend(
                bson.decode_all(
                    batch, codec_options=bson.CodecOptions(document_class=RawBSONDocument)
                )
            )  # type: ignore[arg-type]
        out[name] = [d.raw for d in docs]  # type: ignore[attr-defined]
    return out


def child(args: argparse.Namespace) -> None:
    """Fresh process: one dump or one restore, then print peak RSS in KiB."""
    client: MongoClient[Any] = MongoClient(args.uri)
    if args.child == "dump":
        dump_database(client, args.db, NullSink())  # type: ignore[arg-type]
    else:
        with open(args.archive, "rb") as source:
            restore_database(client, args.db, source)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec from the (big) parent.
    status = Path("/proc/self/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    print(json.dumps({"peak_rss_kib": int(hwm.split()[1])}))


def rss_of(uri: str, mode: str, db: str, archive: str | None = None) -> int:
    cmd = [sys.executable, __file__, "--child", mode, "--uri", uri, "--db", db]
    if archive:
        cmd += ["--archive", archive]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak_rss_kib"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--large-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=["dump", "restore"])
    parser.add_argument("--uri")
    parser.add_argument("--db")
    parser.add_argument("--archive")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-mongo-"))
    port = free_port()
    server = subprocess.Popen(
        [
            shutil.which("secantusd-py") or "secantusd-py",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(tmp / "data"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    try:
        client: MongoClient[Any] = MongoClient(uri, serverSelectionTimeoutMS=30_000)
        client.admin.command("ping")
        report: dict[str, Any] = {}
        t0 = time.perf_counter()
        size = seed(client, "bench", args.size_mb)
        report["seed_s"] = round(time.perf_counter() - t0, 1)
        report["data_mb"] = round(size / MB, 1)
        report["documents"] = sum(client.bench[c].count_documents({}) for c in COLLECTIONS)

        from daai_backup.format.compression import open_gzip_writer

        def dump_null() -> None:
            dump_database(client, "bench", NullSink())  # type: ignore[arg-type]

        def dump_gzip() -> None:
            sink = NullSink()
            gz = open_gzip_writer(sink)  # type: ignore[arg-type]
            dump_database(client, "bench", gz)
            gz.close()

        scans, scans_default, dumps, gzips, pars = [], [], [], [], []
        for _ in range(args.rounds):  # interleaved so drift hits both sides alike
            scans.append(best(lambda: bare_scan(client, "bench", BATCH_DOCUMENTS), 1))
            scans_default.append(best(lambda: bare_scan(client, "bench"), 1))
            dumps.append(best(dump_null, 1))
            gzips.append(best(dump_gzip, 1))
            pars.append(best(lambda: parallel_scan(client, "bench"), 1))
        scans = [min(a, b) for a, b in zip(scans, scans_default, strict=True)]
        report["bare_scan_default_batches_s"] = round(min(scans_default), 2)
        report["bare_scan_s"] = round(min(scans), 2)  # the faster of the two batch sizes
        report["dump_s"] = round(min(dumps), 2)
        report["dump_gzip_s"] = round(min(gzips), 2)
        report["parallel_scan_s"] = round(min(pars), 2)
        report["dump_vs_scan"] = round(min(dumps) / min(scans), 3)
        report["dump_gzip_vs_scan"] = round(min(gzips) / min(scans), 3)
        report["parallel_vs_sequential_scan"] = round(min(pars) / min(scans), 3)

        archive = tmp / "bench.archive"
        with archive.open("wb") as f:
            dump_database(client, "bench", f)  # type: ignore[arg-type]
        docs = raw_documents(client, "bench")
        bares: list[float] = []
        restores: list[float] = []
        phases: list[dict[str, float]] = []
        for _ in range(max(1, args.rounds - 1)):
            bares.append(best(lambda: bare_restore(client, "bench_bare", docs), 1))

            def restore_once() -> None:
                client.drop_database("bench_restore")
                with archive.open("rb") as source:
                    r = restore_database(client, "bench_restore", source)  # type: ignore[arg-type]
                phases.append(
                    {
                        "load_s": round(r.load_seconds, 2),
                        "index_s": round(r.index_seconds, 2),
                        "verify_s": round(r.verify_seconds, 2),
                        "swap_s": round(r.swap_seconds, 2),
                    }
                )

            restores.append(best(restore_once, 1))
        docs.clear()
        report["bare_insert_s"] = round(min(bares), 2)
        report["restore_s"] = round(min(restores), 2)
        report["restore_vs_insert"] = round(min(restores) / min(bares), 3)
        report["restore_phases"] = phases[restores.index(min(restores))]
        client.drop_database("bench_bare")
        client.drop_database("bench_restore")

        rss = {}
        rss["dump_small_kib"] = rss_of(uri, "dump", "bench")
        rss["restore_small_kib"] = rss_of(uri, "restore", "bench_restore", str(archive))
        client.drop_database("bench_restore")
        if args.large_mb:
            t0 = time.perf_counter()
            large = seed(client, "bench_large", args.large_mb)
            report["large_seed_s"] = round(time.perf_counter() - t0, 1)
            report["large_data_mb"] = round(large / MB, 1)
            big_archive = tmp / "bench_large.archive"
            with big_archive.open("wb") as f:
                dump_database(client, "bench_large", f)  # type: ignore[arg-type]
            rss["dump_large_kib"] = rss_of(uri, "dump", "bench_large")
            rss["restore_large_kib"] = rss_of(uri, "restore", "bench_large_r", str(big_archive))
            rss["dump_growth"] = round(rss["dump_large_kib"] / rss["dump_small_kib"], 3)
            rss["restore_growth"] = round(rss["restore_large_kib"] / rss["restore_small_kib"], 3)
        report["rss"] = rss
        print(json.dumps(report, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
