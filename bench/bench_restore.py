"""Benchmark (issue 13): the engine restore against real ``mongorestore``, and scale with size.

Run: ``uv run python bench/bench_restore.py`` (``--help`` for options). It starts its own
SecantusDB daemon (``secantusd-py``, a separate process, so the server can be profiled with
``py-spy`` on its pid, printed at start) on a temporary folder and seeds a tenant like the
issue's: ~160,000 small documents in four collections with ten secondary indexes. Then, in
one run and on the same server:

- our backup (``operations.backup_tenant``: dump, gzip, DBK1 encryption, local folder) and
  ``mongodump --archive --gzip`` of the same database;
- ``mongorestore --archive --gzip`` of that dump into a fresh database, and our engine restore
  of our backup (read, decrypt, gunzip, stage, index, verify, swap into the tenant's live
  database), its phases reported and the swap separately (SecantusDB's ``renameCollection``
  copies data; on mongod a same-database rename is metadata only). Rounds interleaved.

``--scale 100,1000`` instead seeds tenants of those many MB (bigger documents, the same four
collections and indexes) and reports, per size, backup and restore throughput as ratios to
mongodump/mongorestore, and the peak RSS (VmHWM) of a fresh process running our backup and
our restore.

SecantusDB is much slower than mongod and the machine has 2 shared cores: only ratios of the
same run mean something.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import bson
from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daai_backup.format.compression import open_gzip_reader
from daai_backup.format.dbk1 import open_plaintext
from daai_backup.mongo import restore_database
from daai_backup.operations import EngineContext, backup_tenant
from daai_backup.settings import Settings
from daai_backup.tenants import TenantRegistry

MB = 1_000_000
TENANT = "bench"
DB = "bench_tenant"
INDEXES: dict[str, list[dict[str, Any]]] = {
    "employees": [
        {"key": {"email": 1}, "name": "email_1", "unique": True},
        {"key": {"dept": 1, "hired": -1}, "name": "dept_1_hired_-1"},
        {"key": {"manager": 1}, "name": "manager_1"},
    ],
    "invoices": [
        {"key": {"number": 1}, "name": "number_1", "unique": True},
        {"key": {"customer": 1, "due": 1}, "name": "customer_1_due_1"},
        {"key": {"status": 1}, "name": "status_1"},
    ],
    "contacts": [
        {"key": {"company": 1}, "name": "company_1"},
        {"key": {"tags": 1}, "name": "tags_1"},
    ],
    "activities": [
        {"key": {"contact": 1, "at": -1}, "name": "contact_1_at_-1"},
        {"key": {"at": 1}, "name": "at_1", "expireAfterSeconds": 10**9},
    ],
}
COLLECTIONS = tuple(INDEXES)
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
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _doc(rng: random.Random, kind: str, i: int, pad: int) -> dict[str, Any]:
    when = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(30_000_000))
    extra = {"notes": _text(rng, pad)} if pad else {}
    if kind == "employees":
        return {
            "_id": ObjectId(),
            "email": f"e{i}@acme.example",
            "name": _text(rng, 2).title(),
            "dept": rng.choice(_WORDS),
            "hired": when,
            "manager": rng.randrange(2000),
            "salary": bson.Decimal128(f"{rng.randrange(30000, 200000)}.00"),
            **extra,
        }
    if kind == "invoices":
        return {
            "number": i,
            "customer": rng.randrange(20000),
            "due": when,
            "status": rng.choice(["draft", "sent", "paid", "overdue"]),
            "lines": [{"sku": f"S{rng.randrange(10**5)}", "qty": rng.randrange(9)}] * 2,
            **extra,
        }
    if kind == "contacts":
        return {
            "company": f"c{rng.randrange(5000)}",
            "phone": f"+41 {rng.randrange(10**9)}",
            "tags": [rng.choice(_WORDS) for _ in range(3)],
            **extra,
        }
    return {
        "contact": rng.randrange(40000),
        "at": when,
        "kind": rng.choice(_WORDS),
        "text": _text(rng, 12),
        **extra,
    }


def seed(client: MongoClient[Any], documents: int, pad: int, megabytes: int = 0) -> int:
    """Seed the tenant database: ``documents`` (or ``megabytes`` MB) over the four collections,
    ``pad`` extra words each; indexes after the load. Returns the BSON bytes."""
    rng = random.Random(13)
    db = client[DB]
    client.drop_database(DB)
    total = n = 0
    while (megabytes and total < megabytes * MB) or (not megabytes and n * 4 < documents):
        for kind in COLLECTIONS:
            raw = [RawBSONDocument(bson.encode(_doc(rng, kind, n + k, pad))) for k in range(250)]
            total += sum(len(r.raw) for r in raw)
            db[kind].insert_many(raw, ordered=False)
        n += 250
    for name, specs in INDEXES.items():
        db.command("createIndexes", name, indexes=specs)
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(folder: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            shutil.which("secantusd-py") or "secantusd-py",
            *("--host", "127.0.0.1", "--port", str(port), "--storage-path", str(folder)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"mongodb://127.0.0.1:{port}/?directConnection=true", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tools() -> Path:
    for cand in (
        os.environ.get("MONGO_TOOLS_BIN"),
        "/work/shared/tools/mongo-tools",
        str(Path(__file__).resolve().parents[2] / "shared/tools/mongo-tools"),
    ):
        if cand and (Path(cand) / "mongorestore").exists():
            return Path(cand)
    raise SystemExit("mongo-tools not found: set MONGO_TOOLS_BIN")


def context(uri: str, store: Path, key: str) -> EngineContext:
    settings = Settings(
        backup_encryption_key=key,
        mongodb_uri=uri,
        storage_url=store.as_uri(),
        tenants_file=Path("unused.yaml"),
    )
    tenant = {
        "id": TENANT,
        "workspace_name": "bench workspace",
        "database": DB,
        "permissions": {"ops": ["create", "restore"]},
    }
    return EngineContext(settings, TenantRegistry.from_data({"tenants": [tenant]}))


def engine_backup(ctx: EngineContext) -> tuple[str, float]:
    t0 = time.perf_counter()
    outcome = backup_tenant(ctx, ctx.tenant(TENANT), "manual")
    return outcome.entry.file, time.perf_counter() - t0


def engine_restore(ctx: EngineContext, filename: str) -> dict[str, float]:
    """The engine's restore path (``operations.stage_restore`` + swap) with its phases."""
    t0 = time.perf_counter()
    tenant = ctx.tenant(TENANT)
    with ctx.folder(tenant).open(filename) as stored:
        plain = open_plaintext(
            cast(BinaryIO, stored), ctx.settings.keyring, TENANT, name=filename, encrypted=True
        )
        result = restore_database(ctx.mongo_client, DB, open_gzip_reader(plain))
    total = time.perf_counter() - t0
    return {
        "total_s": round(total, 2),
        "load_s": round(result.load_seconds, 2),
        "index_s": round(result.index_seconds, 2),
        "verify_s": round(result.verify_seconds, 2),
        "swap_s": round(result.swap_seconds, 2),
        "without_swap_s": round(total - result.swap_seconds, 2),
        "documents": result.total_documents,
    }


def run_tool(*cmd: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{Path(cmd[0]).name} failed: {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - t0


def mongodump(uri: str, archive: Path) -> float:
    return run_tool(
        str(tools() / "mongodump"), f"--uri={uri}", f"--db={DB}", f"--archive={archive}", "--gzip"
    )


def mongorestore(uri: str, archive: Path, into: str) -> float:
    return run_tool(
        str(tools() / "mongorestore"),
        f"--uri={uri}",
        f"--archive={archive}",
        "--gzip",
        f"--nsFrom={DB}.*",
        f"--nsTo={into}.*",
        "--drop",
    )


def child(args: argparse.Namespace) -> None:
    """Fresh process: one engine backup or restore; prints its seconds and VmHWM (KiB)."""
    ctx = context(args.uri, Path(args.store), args.key)
    if args.child == "backup":
        name, seconds = engine_backup(ctx)
        out: dict[str, Any] = {"file": name, "seconds": seconds}
    else:
        out = engine_restore(ctx, args.file)
        out["seconds"] = out["total_s"]
    status = Path("/proc/self/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    out["peak_rss_kib"] = int(hwm.split()[1])
    print(json.dumps(out))


def in_child(uri: str, store: Path, key: str, mode: str, file: str = "") -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--uri", uri, "--store", str(store)]
    cmd += ["--key", key, "--file", file]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return cast(dict[str, Any], json.loads(done.stdout.strip().splitlines()[-1]))


def restore_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with server(tmp / "data") as (uri, pid):
        print(f"SecantusDB pid {pid} at {uri}", file=sys.stderr)
        client: MongoClient[Any] = MongoClient(uri, serverSelectionTimeoutMS=30_000)
        t0 = time.perf_counter()
        report["data_mb"] = round(seed(client, args.documents, 0) / MB, 1)
        report["seed_s"] = round(time.perf_counter() - t0, 1)
        report["documents"] = sum(client[DB][c].estimated_document_count() for c in COLLECTIONS)
        report["indexes"] = sum(len(v) for v in INDEXES.values())
        key = base64.b64encode(os.urandom(32)).decode()
        ctx = context(uri, tmp / "store", key)
        name, report["engine_backup_s"] = engine_backup(ctx)
        archive = tmp / "dump.archive.gz"
        report["mongodump_s"] = mongodump(uri, archive)
        rounds: list[dict[str, Any]] = []
        for _ in range(args.rounds):  # interleaved: drift hits both sides alike
            tool = mongorestore(uri, archive, "bench_mongorestore")
            ours = engine_restore(ctx, name)
            ours["mongorestore_s"] = round(tool, 2)
            ours["ratio_without_swap"] = round(ours["without_swap_s"] / tool, 3)
            ours["ratio_total"] = round(ours["total_s"] / tool, 3)
            print(json.dumps(ours), file=sys.stderr)
            rounds.append(ours)
            client.drop_database("bench_mongorestore")
        report["rounds"] = rounds
        best = min(rounds, key=lambda x: x["ratio_without_swap"])
        report["best_ratio_without_swap"] = best["ratio_without_swap"]
        report["median_ratio_without_swap"] = sorted(r["ratio_without_swap"] for r in rounds)[
            len(rounds) // 2
        ]
        client.close()
        ctx.close()
    return report


def scale_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    report: dict[str, Any] = {}
    key = base64.b64encode(os.urandom(32)).decode()
    for mb in (int(s) for s in args.scale.split(",")):
        here = tmp / f"{mb}mb"
        with server(here / "data") as (uri, pid):
            print(f"{mb} MB: SecantusDB pid {pid} at {uri}", file=sys.stderr)
            client: MongoClient[Any] = MongoClient(uri, serverSelectionTimeoutMS=30_000)
            row: dict[str, Any] = {}
            t0 = time.perf_counter()
            row["data_mb"] = round(seed(client, 0, args.pad, megabytes=mb) / MB, 1)
            row["seed_s"] = round(time.perf_counter() - t0, 1)
            row["documents"] = sum(client[DB][c].estimated_document_count() for c in COLLECTIONS)
            print(json.dumps(row), file=sys.stderr)
            backup = in_child(uri, here / "store", key, "backup")
            row["engine_backup_s"] = round(backup["seconds"], 2)
            row["backup_peak_rss_kib"] = backup["peak_rss_kib"]
            archive = here / "dump.archive.gz"
            row["mongodump_s"] = round(mongodump(uri, archive), 2)
            row["backup_ratio"] = round(row["engine_backup_s"] / row["mongodump_s"], 3)
            row["mongorestore_s"] = round(mongorestore(uri, archive, "bench_mongorestore"), 2)
            client.drop_database("bench_mongorestore")
            restore = in_child(uri, here / "store", key, "restore", backup["file"])
            row["engine_restore"] = {k: v for k, v in restore.items() if k != "seconds"}
            row["restore_peak_rss_kib"] = restore["peak_rss_kib"]
            row["restore_ratio_without_swap"] = round(
                restore["without_swap_s"] / row["mongorestore_s"], 3
            )
            row["restore_ratio_total"] = round(restore["total_s"] / row["mongorestore_s"], 3)
            print(json.dumps(row), file=sys.stderr)
            report[f"{mb}MB"] = row
            client.close()
        shutil.rmtree(here, ignore_errors=True)
    sizes = list(report)
    if len(sizes) >= 2:
        small, large = report[sizes[0]], report[sizes[-1]]
        report["backup_rss_growth"] = round(
            large["backup_peak_rss_kib"] / small["backup_peak_rss_kib"], 3
        )
        report["restore_rss_growth"] = round(
            large["restore_peak_rss_kib"] / small["restore_peak_rss_kib"], 3
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--documents", type=int, default=160_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scale", help="comma-separated sizes in MB, e.g. 100,1000")
    parser.add_argument("--pad", type=int, default=1000, help="extra words a document (--scale)")
    parser.add_argument("--child", choices=["backup", "restore"])
    parser.add_argument("--uri")
    parser.add_argument("--store")
    parser.add_argument("--key")
    parser.add_argument("--file", default="")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    try:
        report = scale_bench(args, tmp) if args.scale else restore_bench(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
