"""Benchmark: `daai-backup diff` throughput and peak memory as the largest collection grows.

Run: ``uv run python bench/bench_diff.py`` (``--quick`` for a smoke run).

For each case two encrypted backups of one tenant are written straight into a local tenant
folder (the archive framing, ISA-L gzip and DBK1 of a real backup; no database needed):
A holds ``docs`` documents of ``size`` bytes in collection ``big`` plus 1,000 in ``small``;
B is A with 1% of ``big`` changed, 1% removed and 1% added. Each measurement runs in a fresh
subprocess:

- ``read``: the baseline, the same two backups decrypted, gunzipped and parsed (every CRC
  checked) with nothing else done: what any reader of them must pay;
- ``diff``: :func:`daai_backup.inspection.diff_backups` on the same two backups.

Throughput is documents of both sides per second. Memory: the subprocess's peak RSS, and
(in a second run under ``tracemalloc``) the peak of Python allocations; the diff's extra
memory per map entry is its heap peak minus the baseline's, over the entries it held. The
claim checked: extra memory grows with the number of documents of the largest collection
(20k -> 80k: ~4x), not with their bytes (200 B -> 2 kB at 20k documents: about the same).

A last case diffs a backup against the live database on SecantusDB (the test server), with
a bare ``find_raw_batches`` scan of the same collections as the baseline.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import bson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEY = base64.b64encode(bytes(range(32))).decode()
TENANT = "bench"
SMALL_DOCS = 1_000


def _doc(rng: random.Random, i: int, size: int, version: int = 0) -> dict[str, Any]:
    """About ``size`` BSON bytes: an invoice-like head and hex text (compresses ~2:1)."""
    head = {"_id": i, "number": f"INV-{i:07d}", "total": 100 + i % 997, "v": version}
    pad = max(0, size - 90)
    return {**head, "text": rng.randbytes(pad // 4).hex() + "a" * (pad - pad // 4 * 2)}


def _ctx(root: Path, mongo_uri: str = "mongodb://127.0.0.1:1/") -> Any:
    from daai_backup.operations import EngineContext
    from daai_backup.settings import Settings
    from daai_backup.tenants import TenantRegistry

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        backup_encryption_key=KEY,
        mongodb_uri=mongo_uri,
        storage_url=root.as_uri(),
        tenants_file=Path("unused.yaml"),
    )
    tenant = {
        "id": TENANT,
        "workspace_name": "Bench",
        "database": "bench",
        "permissions": {"ops": ["restore"]},
    }
    return EngineContext(settings, TenantRegistry.from_data({"tenants": [tenant]}))


def _write_backup(ctx: Any, when: datetime, collections: dict[str, list[bytes]]) -> str:
    """One encrypted backup of ``collections`` (name -> raw documents) in the tenant folder."""
    from daai_backup.format.compression import open_gzip_writer
    from daai_backup.format.dbk1 import ContentType, EncryptingWriter
    from daai_backup.mongo.archive_format import ArchiveHeader, ArchiveWriter, CollectionMetadata
    from daai_backup.mongo.crc64 import Crc64
    from daai_backup.repository.names import new_backup_name

    name = new_backup_name("manual", when)
    tenant = ctx.tenant(TENANT)
    sink = io.BytesIO()
    master = ctx.settings.keyring.require_current()
    with EncryptingWriter(
        sink,
        master,
        TENANT,
        created_at=name.taken_at,
        name=name.filename,
        content_type=ContentType.BACKUP_ARCHIVE,
    ) as encrypted:
        gz = open_gzip_writer(cast(Any, encrypted))
        writer = ArchiveWriter(gz)
        metas = [CollectionMetadata(db="bench", collection=c) for c in sorted(collections)]
        writer.write_prelude(ArchiveHeader(server_version="8.0.0", tool_version="bench"), metas)
        for meta in metas:
            docs = collections[meta.collection]
            crc = Crc64()
            for start in range(0, len(docs), 500):
                batch = b"".join(docs[start : start + 500])
                writer.write_segment("bench", meta.collection, batch)
                crc.update(batch)
            writer.write_eof("bench", meta.collection, crc.value)
        gz.close()
    sink.seek(0)
    ctx.folder(tenant).write(name, sink)
    return name.filename


def make_case(root: Path, docs: int, size: int) -> tuple[str, str]:
    """Backups A and B of one case; returns their file names."""
    rng = random.Random(docs * 7 + size)
    ctx = _ctx(root)
    big = [bson.encode(_doc(rng, i, size)) for i in range(docs)]
    small = [bson.encode({"_id": i, "n": i}) for i in range(SMALL_DOCS)]
    a = _write_backup(ctx, datetime(2026, 1, 1, tzinfo=UTC), {"big": big, "small": small})
    step = 100  # 1% of each kind
    changed = {i: bson.encode(_doc(rng, i, size, version=1)) for i in range(0, docs, step)}
    removed = set(range(1, docs, step))
    b_big = [changed.get(i, d) for i, d in enumerate(big) if i not in removed]
    b_big += [bson.encode(_doc(rng, docs + i, size)) for i in range(docs // step)]
    b = _write_backup(
        ctx, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=1), {"big": b_big, "small": small}
    )
    ctx.close()
    return a, b


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not carry the forking
    parent's size across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(mode: str, root: Path, a: str, b: str) -> dict[str, Any]:
    """Run one measurement in this (fresh) process; print a JSON line.

    ``read``/``diff`` are timed and give the peak RSS; ``read-heap``/``diff-heap`` run the
    same under tracemalloc for the peak of Python allocations (slower: not timed).
    """
    import tracemalloc
    from contextlib import ExitStack

    from daai_backup.inspection import diff_backups
    from daai_backup.inspection.sources import open_backup
    from daai_backup.operations import describe_backup

    ctx = _ctx(root)
    tenant = ctx.tenant(TENANT)
    heap = mode.endswith("-heap")
    if heap:
        tracemalloc.start()
    started = time.perf_counter()
    documents = 0
    out: dict[str, Any] = {}
    if mode.startswith("read"):
        for name in (a, b):
            with ExitStack() as stack:
                snap = open_backup(ctx, tenant, describe_backup(ctx, tenant, name), stack)
                for _, batch in snap.events():
                    if batch:
                        documents += len(batch)
    else:
        result = diff_backups(ctx, tenant, a, b, actor="ops")
        documents = sum(c.documents_a + c.documents_b for c in result.collections)
        big = next(c for c in result.collections if c.name == "big")
        out.update(
            added=big.added, removed=big.removed, changed=big.changed, peak=result.peak_entries
        )
    seconds = time.perf_counter() - started
    if heap:
        out["heap_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    rss_mb = _peak_rss_mb()
    return {"mode": mode, "seconds": seconds, "documents": documents, "rss_mb": rss_mb, **out}


def _child(mode: str, root: Path, a: str, b: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(root), a, b],
        check=True,
        capture_output=True,
        text=True,
    )
    return cast(dict[str, Any], json.loads(proc.stdout.strip().splitlines()[-1]))


def live_case(docs: int) -> dict[str, Any]:
    """Backup vs live on SecantusDB: the diff, and a bare scan of the same collection."""
    from bson.raw_bson import RawBSONDocument
    from pymongo import MongoClient
    from secantus import SecantusDBServer

    from daai_backup.inspection import diff_backups
    from daai_backup.operations import backup_tenant

    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as tmp, SecantusDBServer(storage_path=tmp + "/db") as srv:
        client: MongoClient[Any] = MongoClient(srv.uri)
        raw = [RawBSONDocument(bson.encode(_doc(rng, i, 200))) for i in range(docs)]
        for start in range(0, docs, 1000):
            client.bench.big.insert_many(raw[start : start + 1000])
        root = Path(tmp) / "storage"
        root.mkdir()
        ctx = _ctx(root, srv.uri)
        tenant = ctx.tenant(TENANT)
        file = backup_tenant(ctx, tenant, "manual").entry.file
        client.bench.big.update_many({"_id": {"$lt": docs // 100}}, {"$set": {"v": 2}})
        started = time.perf_counter()
        scanned = sum(len(b) > 0 for b in client.bench.big.find_raw_batches({}, batch_size=500))
        scan_s = time.perf_counter() - started
        started = time.perf_counter()
        result = diff_backups(ctx, tenant, file, "live", actor="ops")
        diff_s = time.perf_counter() - started
        ctx.close()
        client.close()
    changed = next(c.changed for c in result.collections if c.name == "big")
    assert changed == docs // 100, changed
    return {"docs": docs, "scan_s": scan_s, "diff_s": diff_s, "batches": scanned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, root, a, b = args.child
        print(json.dumps(_measure(mode, Path(root), a, b)))
        return
    scale = 10 if args.quick else 1
    cases = [(20_000 // scale, 200), (80_000 // scale, 200), (20_000 // scale, 2_000)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for docs, size in cases:
            root = Path(tmp) / f"c{docs}-{size}"
            root.mkdir()
            a, b = make_case(root, docs, size)
            read = _child("read", root, a, b)
            diff = _child("diff", root, a, b)
            read["heap_mb"] = _child("read-heap", root, a, b)["heap_mb"]
            diff["heap_mb"] = _child("diff-heap", root, a, b)["heap_mb"]
            assert (diff["added"], diff["removed"], diff["changed"]) == (
                docs // 100,
                docs // 100,
                docs // 100,
            ), diff
            rows.append((docs, size, read, diff))
            print(f"done {docs} x {size} B", file=sys.stderr)
    live = live_case(20_000 // scale)

    print(
        "| largest collection | read A+B (baseline) | diff | diff / read | peak RSS read "
        "| peak RSS diff | heap peak read | heap peak diff | map entries | diff heap per entry |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for docs, size, read, diff in rows:
        extra = diff["heap_mb"] - read["heap_mb"]
        rate_read = read["documents"] / read["seconds"]
        rate_diff = diff["documents"] / diff["seconds"]
        print(
            f"| {docs:,} docs x {size:,} B | {read['seconds']:.2f} s ({rate_read:,.0f} docs/s) "
            f"| {diff['seconds']:.2f} s ({rate_diff:,.0f} docs/s) "
            f"| {diff['seconds'] / read['seconds']:.2f}x | {read['rss_mb']:.1f} MB "
            f"| {diff['rss_mb']:.1f} MB | {read['heap_mb']:.1f} MB | {diff['heap_mb']:.1f} MB "
            f"| {diff['peak']:,} | {extra * 1e6 / max(1, diff['peak']):.0f} B |"
        )
    print()
    print(
        f"live: {live['docs']:,} docs: bare scan {live['scan_s']:.2f} s, diff backup vs live "
        f"{live['diff_s']:.2f} s ({live['diff_s'] / live['scan_s']:.2f}x the scan)"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
