"""Storage benchmark: a 500 MB stream through each backend, against a plain baseline.

Run with ``uv run python bench/bench_storage.py [--size-mb 500]``. It writes and reads back
a lazily generated stream (never held in memory) on

- the local folder backend, against ``shutil.copyfileobj`` + fsync into the same folder;
- the S3 backend against a moto server it starts as a separate process (so the server's
  memory is not counted), against a single ``put_object``/``get_object`` of a smaller body
  (a single PUT needs the whole body in memory).

It prints MB/s (1 MB = 10^6 bytes), ratios to the baseline, and the process RSS at the
100 MB mark, at the end and at its peak: flat memory means the end is close to the mark.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psutil

from daai_backup.storage import LocalStorage, S3Storage, Storage

MB = 1_000_000
MiB = 1024 * 1024
PROCESS = psutil.Process()


def rss_mb() -> float:
    return PROCESS.memory_info().rss / MiB


@dataclass
class Marks:
    """RSS seen at the 100 MB position and at the end of a stream."""

    at_100: float = 0.0
    at_end: float = 0.0
    pos: int = 0

    def advance(self, n: int) -> None:
        before = self.pos
        self.pos += n
        if before < 100 * MB <= self.pos:
            self.at_100 = rss_mb()


class Generated(io.RawIOBase):
    """``size`` bytes of incompressible data, produced on demand from one 1 MiB block."""

    def __init__(self, size: int, marks: Marks) -> None:
        self.size = size
        self.marks = marks
        self.block = os.urandom(MiB)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self.size - self.pos, MiB)
        view[:n] = self.block[:n]
        self.pos += n
        self.marks.advance(n)
        if n == 0:
            self.marks.at_end = rss_mb()
        return n


@dataclass
class Result:
    name: str
    size: int
    seconds: float
    marks: Marks
    peak: float
    start_rss: float
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def mb_s(self) -> float:
        return self.size / MB / self.seconds


class PeakSampler:
    """Samples RSS every 5 ms in a thread and keeps the maximum."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def timed(name: str, size: int, action: Callable[[Marks], None]) -> Result:
    marks = Marks()
    start_rss = rss_mb()
    with PeakSampler() as sampler:
        t0 = time.perf_counter()
        action(marks)
        seconds = time.perf_counter() - t0
    if not marks.at_end:
        marks.at_end = rss_mb()
    return Result(name, size, seconds, marks, sampler.peak, start_rss)


def drain(stream: Any, marks: Marks) -> int:
    total = 0
    while chunk := stream.read(MiB):
        total += len(chunk)
        marks.advance(len(chunk))
    marks.at_end = rss_mb()
    return total


def put(storage: Storage, key: str, size: int) -> Callable[[Marks], None]:
    def action(marks: Marks) -> None:
        storage.put_stream(key, Generated(size, marks))  # type: ignore[arg-type]

    return action


def get(storage: Storage, key: str, size: int) -> Callable[[Marks], None]:
    def action(marks: Marks) -> None:
        with storage.open_read(key) as stream:
            assert drain(stream, marks) == size

    return action


def best_of(rounds: int, runs: list[tuple[str, int, Callable[[Marks], None]]]) -> list[Result]:
    """Run each operation ``rounds`` times, alternating the order; keep the fastest of each."""
    best: dict[str, Result] = {}
    for i in range(rounds):
        for name, size, action in runs if i % 2 == 0 else list(reversed(runs)):
            result = timed(name, size, action)
            if name not in best or result.seconds < best[name].seconds:
                best[name] = result
    return [best[name] for name, _, _ in runs]


def bench_local(size: int, folder: Path, rounds: int) -> list[Result]:
    storage = LocalStorage(folder / "root")
    baseline_path = folder / "root" / "bench" / "baseline"
    baseline_path.parent.mkdir(parents=True)

    def copy(marks: Marks) -> None:
        with open(baseline_path, "wb") as out:
            shutil.copyfileobj(Generated(size, marks), out, MiB)
            out.flush()
            os.fsync(out.fileno())

    def read(marks: Marks) -> None:
        with open(baseline_path, "rb") as src:
            drain(src, marks)

    writes = best_of(
        rounds,
        [
            ("local put_stream", size, put(storage, "bench/object", size)),
            ("baseline copyfileobj+fsync", size, copy),
        ],
    )
    reads = best_of(
        rounds,
        [
            ("local open_read", size, get(storage, "bench/object", size)),
            ("baseline open().read", size, read),
        ],
    )
    return [writes[0], reads[0], writes[1], reads[1]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_s3(size: int, baseline_size: int) -> list[Result]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        for _ in range(100):
            try:
                client.create_bucket(Bucket="bench")
                break
            except Exception:  # the server is still starting
                time.sleep(0.1)
        storage = S3Storage("bench", "root", endpoint_url=endpoint)
        results = [
            timed("s3 put_stream (multipart)", size, put(storage, "object", size)),
            timed("s3 open_read", size, get(storage, "object", size)),
        ]

        def put_object(marks: Marks) -> None:
            body = Generated(baseline_size, marks).read()  # a single PUT needs it all
            client.put_object(Bucket="bench", Key="baseline", Body=body)

        def get_object(marks: Marks) -> None:
            body = client.get_object(Bucket="bench", Key="baseline")["Body"].read()
            marks.advance(len(body))
            marks.at_end = rss_mb()

        results.append(timed("baseline put_object", baseline_size, put_object))
        results.append(timed("baseline get_object", baseline_size, get_object))
        return results
    finally:
        server.terminate()
        server.wait(timeout=10)


def report(results: list[Result], pairs: dict[str, str]) -> None:
    by_name = {r.name: r for r in results}
    print("| operation | size | MB/s | vs baseline | RSS at start | at 100 MB | at end | peak |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        base = by_name.get(pairs.get(r.name, ""))
        ratio = f"{r.mb_s / base.mb_s:.2f}x" if base else "-"
        at_100 = f"{r.marks.at_100:.0f} MiB" if r.marks.at_100 else "-"
        print(
            f"| {r.name} | {r.size // MB} MB | {r.mb_s:.0f} | {ratio} | {r.start_rss:.0f} MiB | "
            f"{at_100} | {r.marks.at_end:.0f} MiB | {r.peak:.0f} MiB |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--baseline-mb", type=int, default=100, help="single put_object size")
    parser.add_argument("--rounds", type=int, default=2, help="local runs; the best is kept")
    args = parser.parse_args()
    size = args.size_mb * MB
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, stream {args.size_mb} MB\n")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        local = bench_local(size, Path(tmp), args.rounds)
    s3 = bench_s3(size, args.baseline_mb * MB)
    report(
        local + s3,
        {
            "local put_stream": "baseline copyfileobj+fsync",
            "local open_read": "baseline open().read",
            "s3 put_stream (multipart)": "baseline put_object",
            "s3 open_read": "baseline get_object",
        },
    )


if __name__ == "__main__":
    main()
