"""Timeline over a large history: time, and memory flat in the number of events.

    uv run python bench/bench_timeline.py [--events 1000000] [--hours 6]

Writes the change segments directly with the capture's segment writer (no server: events
shaped like the server's, 50,000 per segment, encrypted into a local folder), then runs
the timeline in a fresh process over the first quarter, half and all of the range, and
reports each run's events, seconds, events/s and peak RSS (``VmHWM``). Memory bounded by
minutes x collections (not events) shows as the same peak for 4x the events.

The history: four collections with steady inserts, updates, replaces and deletes (one
event every few ms), a bulk delete of 20,000 documents at two thirds of the range and a
drop of one collection near its end: the timeline must find both bursts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import bson
from bson import Timestamp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daai_backup.capture.segments import coverage, write_segment
from daai_backup.format.keys import Keyring, generate_master_key
from daai_backup.inspection.timeline import build_timeline
from daai_backup.repository.folder import folder_for_tenant

TENANT = "bench"
DB = "bench_db"
PER_SEGMENT = 50_000
BULK_DELETE = 20_000
START = 1_795_000_000  # 2026-11-18


def _event(n: int, at: Timestamp, op: str, coll: str, doc_id: int) -> bytes:
    event: dict[str, object] = {
        "_id": {"_data": f"{at.time:08X}{at.inc:08X}{n:010d}"},
        "operationType": op,
        "clusterTime": at,
        "wallTime": datetime.fromtimestamp(at.time, UTC),
        "ns": {"db": DB, "coll": coll},
    }
    if op != "drop":
        event["documentKey"] = {"_id": doc_id}
    if op in ("insert", "replace"):
        event["fullDocument"] = {"_id": doc_id, "n": n, "name": f"item {n}", "tags": ["a", "b"]}
    if op == "update":
        event["updateDescription"] = {"updatedFields": {"n": n}, "removedFields": []}
    return bson.encode(event)


def generate(root: Path, key: str, events: int, hours: float) -> None:
    folder = folder_for_tenant(TENANT, None, root.as_uri())
    master = Keyring.from_strings(key).current
    assert master is not None
    span = int(hours * 3600)
    steady = events - BULK_DELETE - 1
    burst_at = START + span * 2 // 3
    ops = ("insert", "update", "update", "replace", "delete")
    colls = ("invoices", "customers", "orders", "audit")
    batch: list[bytes] = []
    seg_start: Timestamp | None = None
    last = Timestamp(START, 0)
    n = 0

    def flush(until: Timestamp) -> None:
        nonlocal batch, seg_start
        if batch and seg_start is not None:
            write_segment(folder, master, TENANT, seg_start, until, batch)
        batch, seg_start = [], None

    def add(raw: bytes, at: Timestamp) -> None:
        nonlocal seg_start, last
        if seg_start is None:
            seg_start = Timestamp(last.time, last.inc + 1)
        batch.append(raw)
        last = at
        if len(batch) >= PER_SEGMENT:
            flush(at)

    for i in range(steady):
        second = START + i * span // steady
        at = Timestamp(second, i + 1)
        if second >= burst_at and n == 0:
            for j in range(BULK_DELETE):  # the bulk delete: one second, one collection
                add(
                    _event(i * 100 + j, Timestamp(burst_at, 10**7 + j), "delete", "orders", j),
                    Timestamp(burst_at, 10**7 + j),
                )
            n = 1
        if n and second == burst_at:  # after the bulk delete, in its second
            at = Timestamp(second, 10**7 + BULK_DELETE + i)
        add(_event(i, at, ops[i % 5], colls[i % 4], i), at)
    end = Timestamp(START + span, 10**8)
    add(_event(events, end, "drop", "audit", 0), end)
    flush(end)


def child(root: Path, key: str, fraction: float) -> None:
    folder = folder_for_tenant(TENANT, None, root.as_uri())
    ranges = coverage(folder)
    first, last = ranges[0][0], ranges[-1][1]
    until = datetime.fromtimestamp(first.time + (last.time - first.time) * fraction, UTC)
    started = time.perf_counter()
    result = build_timeline(folder, Keyring.from_strings(key), TENANT, "UTC", ranges, until=until)
    seconds = time.perf_counter() - started
    peak = 0.0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    print(
        json.dumps(
            {
                "fraction": fraction,
                "events": result.events,
                "seconds": round(seconds, 2),
                "rate": round(result.events / seconds),
                "peak_rss_mb": round(peak, 1),
                "minute_rows": len(result.minutes),
                "bursts": [(b.what, b.collection, sum(b.counts.values())) for b in result.bursts],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--child", type=Path)
    parser.add_argument("--key")
    parser.add_argument("--fraction", type=float, default=1.0)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.key, args.fraction)
        return
    key = generate_master_key()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        generate(root, key, args.events, args.hours)
        print(f"generated {args.events:,} events in {time.perf_counter() - started:.1f} s")
        for fraction in (0.25, 0.5, 1.0):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(root), "--key", key,
                 "--fraction", str(fraction)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            print(out.stdout.strip())


if __name__ == "__main__":
    main()
