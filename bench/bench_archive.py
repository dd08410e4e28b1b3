"""Benchmark: compress + encrypt (daai-backup's pipeline) vs stdlib gzip level 6 alone.

Run: ``uv run python bench/bench_archive.py`` (add ``--help`` for options).

The input is a lazily generated stream of BSON documents shaped like a SaaS tenant's data
(users, orders, events: ObjectIds, dates, enums, names, free text, ids, numbers) in ~1 MiB
raw batches, like ``find_raw_batches`` hands them out. Each batch is fed to both pipelines in
the same loop; only the time spent inside the pipelines is counted, not generation.
Memory is measured per input size in a fresh subprocess (peak RSS).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import bson
from bson import ObjectId

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daai_backup.format.compression import open_gzip_writer
from daai_backup.format.dbk1 import DEFAULT_SEGMENT_SIZE, ContentType, EncryptingWriter
from daai_backup.format.keys import parse_master_key

MB = 1_000_000
KEY = parse_master_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
NAME = "manual_20260101T000000Z_00000000.gz.enc"

_FIRST = [
    "Aarav",
    "Vivaan",
    "Aditya",
    "Diya",
    "Ananya",
    "Priya",
    "Rahul",
    "Sneha",
    "John",
    "Maria",
    "Wei",
    "Fatima",
    "Carlos",
    "Yuki",
    "Olga",
    "Kwame",
    "Lena",
    "Omar",
]
_LAST = [
    "Sharma",
    "Patel",
    "Iyer",
    "Reddy",
    "Khan",
    "Smith",
    "Garcia",
    "Chen",
    "Kim",
    "Nakamura",
    "Novak",
    "Mensah",
    "Okafor",
    "Singh",
    "Gupta",
    "Das",
]
_WORDS = str.split(
    "order shipped delivered pending invoice payment refund customer account update "
    "support ticket priority high low normal warehouse mumbai bengaluru delhi chennai "
    "product sku quantity discount coupon festival sale review rating comment the a "
    "of to and in for with on is was please thanks received issue resolved"
)
_STATUS = ["active", "inactive", "pending", "suspended", "deleted"]
_EVENTS = ["login", "logout", "view", "click", "purchase", "add_to_cart", "search", "error"]
_CITIES = ["Mumbai", "Bengaluru", "Delhi", "Chennai", "Pune", "Hyderabad", "Kolkata"]


def _user(rng: random.Random, t: datetime) -> dict[str, object]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {
        "_id": ObjectId(),
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 9999)}@example.com",
        "status": rng.choice(_STATUS),
        "createdAt": t,
        "age": rng.randint(18, 80),
        "address": {
            "city": rng.choice(_CITIES),
            "pin": f"{rng.randint(100000, 999999)}",
            "line1": f"{rng.randint(1, 500)} {rng.choice(_WORDS)} road",
        },
        "tags": rng.sample(_WORDS, rng.randint(0, 5)),
        "apiToken": rng.randbytes(16).hex(),
    }


def _order(rng: random.Random, t: datetime) -> dict[str, object]:
    items = [
        {
            "sku": f"SKU-{rng.randint(1000, 9999)}",
            "qty": rng.randint(1, 5),
            "price": round(rng.uniform(10, 5000), 2),
        }
        for _ in range(rng.randint(1, 4))
    ]
    return {
        "_id": ObjectId(),
        "userId": ObjectId(),
        "items": items,
        "total": round(sum(i["price"] * i["qty"] for i in items), 2),  # type: ignore[operator]
        "currency": "INR",
        "status": rng.choice(["created", "paid", "shipped", "delivered", "cancelled"]),
        "placedAt": t,
        "note": " ".join(rng.choices(_WORDS, k=rng.randint(0, 20))),
    }


def _event(rng: random.Random, t: datetime) -> dict[str, object]:
    return {
        "_id": ObjectId(),
        "type": rng.choice(_EVENTS),
        "at": t,
        "sessionId": rng.randbytes(8).hex(),
        "durationMs": rng.randint(0, 120000),
        "ok": rng.random() > 0.05,
        "meta": {
            "ua": "Mozilla/5.0 (X11; Linux x86_64)",
            "ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
            "v": rng.randint(1, 3),
        },
    }


def bson_stream(total_bytes: int, *, seed: int = 7, batch: int = 1 << 20) -> Iterator[bytes]:
    """Yield ~``batch``-byte chunks of concatenated BSON documents until ``total_bytes``."""
    rng = random.Random(seed)
    t = datetime(2025, 1, 1, tzinfo=UTC)
    makers: list[Callable[[random.Random, datetime], dict[str, object]]] = [
        _user,
        _order,
        _event,
        _event,
    ]
    sent = 0
    while sent < total_bytes:
        parts: list[bytes] = []
        size = 0
        while size < batch:
            t += timedelta(milliseconds=rng.randint(1, 5000))
            doc = bson.encode(rng.choice(makers)(rng, t))
            parts.append(doc)
            size += len(doc)
        chunk = b"".join(parts)[: total_bytes - sent]
        sent += len(chunk)
        yield chunk


class CountingSink:
    """Discards bytes, counts them (stands in for the storage upload)."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, b: bytes) -> int:
        self.n += len(b)
        return len(b)

    def flush(self) -> None:
        pass


def _ours(sink: CountingSink, segment_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[BinaryIO, ...]:
    enc = EncryptingWriter(
        sink,  # type: ignore[arg-type]
        KEY,
        "bench-tenant",
        name=NAME,
        content_type=ContentType.BACKUP_ARCHIVE,
        _segment_size=segment_size,
    )
    return open_gzip_writer(enc), enc


def _gzip6(sink: CountingSink) -> tuple[BinaryIO, ...]:
    return (gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0),)  # type: ignore[arg-type]


def throughput(total: int, segment_sizes: list[int]) -> dict[str, object]:
    names = ["gzip6"] + [f"ours_seg{s // 1024}k" for s in segment_sizes]
    sinks = {n: CountingSink() for n in names}
    pipes = {"gzip6": _gzip6(sinks["gzip6"])}
    for s, n in zip(segment_sizes, names[1:], strict=True):
        pipes[n] = _ours(sinks[n], s)
    spent = dict.fromkeys(names, 0.0)
    raw = 0
    for chunk in bson_stream(total):
        raw += len(chunk)
        for n in names:
            t0 = time.perf_counter()
            pipes[n][0].write(chunk)
            spent[n] += time.perf_counter() - t0
    for n in names:
        t0 = time.perf_counter()
        for f in pipes[n]:
            f.close()
        spent[n] += time.perf_counter() - t0
    return {
        "input_mb": raw / MB,
        "results": {
            n: {"mb_per_s": raw / MB / spent[n], "output_mb": sinks[n].n / MB} for n in names
        },
    }


def compare_compressors(total: int) -> dict[str, dict[str, float]]:
    """Raw compressors on the same data: isal levels 0-3 vs zlib 1 and 6."""
    from isal import isal_zlib

    makers: dict[str, Callable[[], object]] = {
        f"isal{lv}": (lambda lv=lv: isal_zlib.compressobj(lv, isal_zlib.DEFLATED, 31))
        for lv in range(4)
    }
    makers |= {
        f"zlib{lv}": (lambda lv=lv: zlib.compressobj(lv, zlib.DEFLATED, 31)) for lv in (1, 6)
    }
    objs = {n: m() for n, m in makers.items()}
    spent = dict.fromkeys(makers, 0.0)
    out = dict.fromkeys(makers, 0)
    raw = 0
    for chunk in bson_stream(total):
        raw += len(chunk)
        for n, o in objs.items():
            t0 = time.perf_counter()
            out[n] += len(o.compress(chunk))  # type: ignore[attr-defined]
            spent[n] += time.perf_counter() - t0
    for n, o in objs.items():
        out[n] += len(o.flush())  # type: ignore[attr-defined]
    return {
        n: {"mb_per_s": round(raw / MB / spent[n], 1), "ratio": round(raw / out[n], 3)}
        for n in makers
    }


def peak_rss_child(total: int) -> None:
    sink = CountingSink()
    gz, enc = _ours(sink)
    for chunk in bson_stream(total):
        gz.write(chunk)
    gz.close()
    enc.close()
    print(
        json.dumps(
            {
                "input_mb": total / MB,
                "output_mb": sink.n / MB,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def peak_rss(total: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(total)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=256, help="input size for throughput (MB)")
    ap.add_argument("--segments", default="1024", help="segment sizes in KiB, comma-separated")
    ap.add_argument("--compressors", action="store_true", help="compare raw compressors only")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        peak_rss_child(args.rss_child)
        return
    if args.compressors:
        print(json.dumps(compare_compressors(args.mb * MB), indent=2))
        return
    segs = [int(s) * 1024 for s in args.segments.split(",")]
    tp = throughput(args.mb * MB, segs)
    res = tp["results"]
    assert isinstance(res, dict)
    base = res["gzip6"]
    for r in res.values():
        r["speedup_vs_gzip6"] = round(r["mb_per_s"] / base["mb_per_s"], 2)
        r["size_vs_gzip6"] = round(r["output_mb"] / base["output_mb"], 3)
        r["mb_per_s"] = round(r["mb_per_s"], 1)
        r["output_mb"] = round(r["output_mb"], 2)
    print(json.dumps(tp, indent=2))
    small, large = peak_rss(50 * MB), peak_rss(500 * MB)
    print(
        json.dumps(
            {
                "rss_50mb": small,
                "rss_500mb": large,
                "growth": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
