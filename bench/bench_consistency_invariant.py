"""Issue 16's proof at full size: backups of 100,000 documents taken while a transactional
writer moves value between two collections (the invariant a[i] + b[i] = 200 holds in the live
database at every moment); every backup, restored, must hold it too. Three runs of three
backups, SecantusDB in-process.

    uv run python bench/bench_consistency_invariant.py [--pairs 50000] [--runs 3] [--backups 3]

Prints one row per backup: its consistency label, the change events kept with it, the
transfers the writer made while it ran, and the broken pairs after its restore (must be 0).
Not a test: at this size it takes minutes; the suite runs the same workload on 3,000
documents (tests/test_consistent_backup.py).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from secantus import SecantusDBServer

from daai_backup.operations import EngineContext, backup_tenant, manifest_of, restore_tenant
from daai_backup.settings import Settings
from daai_backup.tenants import TenantRegistry


def _context(uri: str, storage: str) -> EngineContext:
    settings = Settings(
        backup_encryption_key=base64.b64encode(os.urandom(32)).decode(),
        mongodb_uri=uri,
        storage_url=Path(storage).as_uri(),
        tenants_file=Path("unused.yaml"),
    )
    registry = TenantRegistry.from_data(
        {
            "tenants": [
                {
                    "id": "bench",
                    "workspace_name": "Bench",
                    "database": "bench",
                    "permissions": {"ops": ["create", "restore"]},
                }
            ]
        }
    )
    return EngineContext(settings, registry)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backups", type=int, default=3)
    args = parser.parse_args()
    pairs = args.pairs
    rows: list[tuple[int, int, str, int, int, float, int]] = []
    with (
        SecantusDBServer(storage_path=tempfile.mkdtemp()) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        uri = str(server.uri)
        client: MongoClient[Any] = MongoClient(uri)
        db = client.bench
        ctx = _context(uri, tmp)
        tenant = ctx.tenant("bench")
        for run in range(1, args.runs + 1):
            client.drop_database("bench")
            for name in ("a", "b"):
                db[name].insert_many(
                    [{"_id": i, "v": 100, "pad": "x" * 200} for i in range(pairs)], ordered=False
                )
            stop = threading.Event()
            moves = [0]

            def writer(stop: threading.Event = stop, moves: list[int] = moves) -> None:
                w: MongoClient[Any] = MongoClient(uri)
                rng = random.Random(1)
                while not stop.is_set():
                    i = rng.randrange(pairs)
                    with w.start_session() as s, s.start_transaction():
                        w.bench.a.update_one({"_id": i}, {"$inc": {"v": -1}}, session=s)
                        w.bench.b.update_one({"_id": i}, {"$inc": {"v": 1}}, session=s)
                    moves[0] += 1
                w.close()

            thread = threading.Thread(target=writer)
            thread.start()
            taken = []
            for _ in range(args.backups):
                before = moves[0]
                t = time.monotonic()
                outcome = backup_tenant(ctx, tenant, "manual", actor="ops")
                taken.append((outcome, moves[0] - before, time.monotonic() - t))
            stop.set()
            thread.join()
            for n, (outcome, transfers, seconds) in enumerate(taken, 1):
                manifest = manifest_of(ctx, tenant, outcome.entry.file)
                events = manifest.changes.events if manifest.changes else 0
                restore_tenant(ctx, tenant, outcome.entry.file)
                a = {d["_id"]: d["v"] for d in db.a.find({}, {"v": 1})}
                b = {d["_id"]: d["v"] for d in db.b.find({}, {"v": 1})}
                broken = sum(1 for i in a if a[i] + b.get(i, 0) != 200) + len(set(b) - set(a))
                rows.append((run, n, outcome.consistency, events, transfers, seconds, broken))
                print(f"run {run} backup {n}: {outcome.consistency}, broken {broken}", flush=True)
        ctx.close()
        client.close()
    print(f"\n{2 * pairs} documents per backup\n")
    print(
        "| run | backup | consistency | change events kept | transfers during it | backup s "
        "| broken pairs after restore |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|")
    for run, n, label, events, transfers, seconds, broken in rows:
        print(f"| {run} | {n} | {label} | {events} | {transfers} | {seconds:.1f} | {broken} |")
    print(f"\nbroken pairs in all: {sum(r[-1] for r in rows)}")


if __name__ == "__main__":
    main()
