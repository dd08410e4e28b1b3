"""Listing benchmark: one tenant with 1,000 backups on S3 (moto's server, over HTTP).

Run with ``uv run python bench/bench_listing.py [--backups 1000] [--repeat 5]``.

The folder is seeded cheaply through moto's in-process backend (small backup objects, each
with a real sealed manifest, plus some verification records and hold markers); everything
measured then goes over HTTP through the product's S3 backend. HTTP requests are counted
with botocore's event hooks (every request the client sends, retries included).

Cases:
- cold: no listing index yet (every manifest read once, the index written);
- warm: the index in place (the steady state), best and median of ``--repeat`` runs;
- lookup: one backup by name (``BackupFolder.lookup``, what ``describe_backup`` does);
- baseline: a bare paginated ``list_objects_v2`` of the same prefix with boto3.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

from daai_backup.format.keys import Keyring, MasterKey
from daai_backup.repository.folder import BackupFolder, folder_for_tenant
from daai_backup.repository.manifest import Manifest, NamespaceFacts, seal
from daai_backup.repository.names import BackupName
from daai_backup.repository.verification import VerificationRecord
from daai_backup.storage import S3Storage

BUCKET = "bench-listing"
TENANT = "acme"
KEY = MasterKey(bytes(range(32)))
T0 = datetime(2024, 1, 1, 1, tzinfo=UTC)


def seed(backups: int, records: int, holds: int) -> list[str]:
    """Write the folder straight into moto's store (not over HTTP: that is not measured)."""
    store = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    root = f"t/{TENANT}/db-backups/"
    files = []
    for n in range(backups):
        name = BackupName("15-day", T0 + timedelta(hours=n), f"{n:08x}", True)
        data = b"x" * 200
        manifest = Manifest(
            tenant=TENANT,
            file=name.filename,
            label=name.frequency,
            taken_at=name.taken_at,
            cluster_time=(int(name.taken_at.timestamp()), 1),
            actor="ops@example.com",
            note=f"note of backup {n}" if n % 3 == 0 else None,
            key_fingerprint=KEY.fingerprint,
            stored_bytes=len(data),
            plain_bytes=600,
            data_bytes=400,
            documents=12,
            consistency="snapshot",
            server_version="8.2.11",
            namespaces=tuple(
                NamespaceFacts(f"c{i}", "collection", 3, 100, ("_id_",), "0" * 64, i)
                for i in range(4)
            ),
        )
        store.put_object(BUCKET, root + name.filename, data)
        store.put_object(BUCKET, root + name.filename + ".manifest", seal(manifest, KEY))
        files.append(name.filename)
    for file in files[-records:]:
        record = VerificationRecord(file, T0, True, None, 200)
        store.put_object(BUCKET, root + record.object_name, record.body())
    for file in files[:holds]:
        store.put_object(BUCKET, f"{root}holds/{file}.hold", b"{}")
    return files


class Requests:
    def __init__(self, client: Any) -> None:
        self.seen: Counter[str] = Counter()
        client.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str, **_: Any) -> None:
        self.seen[event_name.rsplit(".", 1)[1]] += 1

    def take(self) -> dict[str, int]:
        seen = dict(self.seen)
        self.seen.clear()
        return seen


def timed(run: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def show(case: str, seconds: float, requests: dict[str, int], extra: str = "") -> None:
    total = sum(requests.values())
    parts = ", ".join(f"{op} {n}" for op, n in sorted(requests.items()))
    print(f"| {case} | {seconds * 1000:.0f} ms | {total} ({parts}) | {extra} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backups", type=int, default=1000)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--holds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=BUCKET
        )
        files = seed(args.backups, args.records, args.holds)
        folder = folder_for_tenant(
            TENANT, None, f"s3://{BUCKET}/t", s3_endpoint_url=endpoint, keyring=Keyring(KEY)
        )
        storage = folder.storage
        assert isinstance(storage, S3Storage)
        requests = Requests(storage.client)
        storage.ping()
        requests.take()

        print(
            f"{args.backups} backups with manifests, {args.records} verification records, "
            f"{args.holds} holds; moto over HTTP at {endpoint}\n"
        )
        print("| case | time | HTTP requests | notes |")
        print("|---|---:|---|---|")

        bare = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")

        def bare_list() -> int:
            pages = bare.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=f"t/{TENANT}/db-backups/"
            )
            return sum(len(p.get("Contents", [])) for p in pages)

        bare_list()  # warm the connection
        base_times = [timed(bare_list)[0] for _ in range(args.repeat)]
        objects = bare_list()

        seconds, cold = timed(folder.listing)
        cold_requests = requests.take()
        assert len(cold.entries) == args.backups
        assert cold.index_written
        index_bytes = storage.stat(f"{TENANT}/db-backups/index.enc").size
        requests.take()
        show(
            "cold (no index)",
            seconds,
            cold_requests,
            f"every manifest read once; index written: {index_bytes / 1000:.0f} kB",
        )

        warm_times = []
        for _ in range(args.repeat):
            seconds, warm = timed(folder.listing)
            warm_times.append(seconds)
            counted = requests.take()
        assert warm.entries == cold.entries
        assert sum(1 for e in warm.entries if e.note) == len(range(0, args.backups, 3))
        show(
            f"warm (index), best of {args.repeat}",
            min(warm_times),
            counted,
            f"median {statistics.median(warm_times) * 1000:.0f} ms",
        )
        seconds, _ = timed(lambda: folder.lookup(files[len(files) // 2]))
        show("lookup one backup by name", seconds, requests.take(), "describe_backup")
        keyless = BackupFolder(storage, TENANT, tenant_id=TENANT, keyring=Keyring(None))
        seconds, _ = timed(keyless.listing)
        show("without the key (names and sizes)", seconds, requests.take(), "")
        print(
            f"| baseline: bare boto3 list_objects_v2, best of {args.repeat} | "
            f"{min(base_times) * 1000:.0f} ms | {-(-objects // 1000)} (pages) | "
            f"{objects} objects; warm listing = "
            f"{min(warm_times) / min(base_times):.1f}x the bare listing |"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
