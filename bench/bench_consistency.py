"""What consistent backups cost: backup time with and without a concurrent transactional
writer, against a bare scan of the same data in the same run (SecantusDB in-process).

    uv run python bench/bench_consistency.py [--pairs 20000]

Prints one markdown table: bare raw-batch scan of both collections, backup of a quiet
database (a snapshot: no change events), backup while a writer moves value between the two
collections in transactions (a torn dump made consistent with its change events), and the
restore of that backup (stage, replay, swap), with the ratio to the bare scan.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=20000)
    args = parser.parse_args()
    pairs = args.pairs
    with (
        SecantusDBServer(storage_path=tempfile.mkdtemp()) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        uri = str(server.uri)
        client: MongoClient[Any] = MongoClient(uri)
        db = client.bench
        for name in ("a", "b"):
            db[name].insert_many(
                [{"_id": i, "v": 100, "pad": "x" * 200} for i in range(pairs)], ordered=False
            )
        settings = Settings(
            backup_encryption_key=base64.b64encode(os.urandom(32)).decode(),
            mongodb_uri=uri,
            storage_url=Path(tmp).as_uri(),
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
        ctx = EngineContext(settings, registry)
        tenant = ctx.tenant("bench")
        rows: list[tuple[str, float, str]] = []

        t = time.monotonic()
        for name in ("a", "b"):
            for _ in db[name].find_raw_batches({}, batch_size=500):
                pass
        scan = time.monotonic() - t
        rows.append(("bare scan of a and b", scan, ""))

        t = time.monotonic()
        quiet = backup_tenant(ctx, tenant, "manual", actor="ops")
        rows.append(("backup, no writer", time.monotonic() - t, quiet.consistency))

        stop = threading.Event()
        moves = [0]

        def writer() -> None:
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
        time.sleep(0.2)
        t = time.monotonic()
        busy = backup_tenant(ctx, tenant, "manual", actor="ops")
        took = time.monotonic() - t
        stop.set()
        thread.join()
        manifest = manifest_of(ctx, tenant, busy.entry.file)
        events = manifest.changes.events if manifest.changes else 0
        rows.append((f"backup, writer running ({events} change events)", took, busy.consistency))
        t = time.monotonic()
        restore_tenant(ctx, tenant, busy.entry.file)
        rows.append(("restore of it (stage + replay + swap)", time.monotonic() - t, ""))
        a = {d["_id"]: d["v"] for d in db.a.find({}, {"v": 1})}
        b = {d["_id"]: d["v"] for d in db.b.find({}, {"v": 1})}
        broken = sum(1 for i in a if a[i] + b[i] != 200)
        ctx.close()
        client.close()
    print(
        f"{2 * pairs} documents; transfers during the backup: {moves[0]}; broken pairs "
        f"after restore: {broken}\n"
    )
    print("| step | seconds | vs bare scan | consistency |")
    print("|---|---:|---:|---|")
    for label, seconds, consistency in rows:
        print(f"| {label} | {seconds:.2f} | {seconds / scan:.1f}x | {consistency} |")


if __name__ == "__main__":
    main()
