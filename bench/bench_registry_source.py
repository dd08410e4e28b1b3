"""Reading the tenant registry at fleet scale: the YAML file against the suite's collection.

    uv run python bench/bench_registry_source.py [--tenants 10000] [--repeat 5]

Every flow run reads the whole registry when it starts (``load_registry``), so this is a
per-run cost. The same N tenants (mapped and nested fields, a value mapping, permissions as a
list of members, plus data of the suite's own the source must not read) are written to a
YAML file and to a collection on SecantusDB (in this process, a fresh storage folder), then
each source is read ``--repeat`` times, alternating. Baselines in the same run: the bare
``find`` of the same documents with the same projection (what the server costs), and
``Tenant`` validation of already-read entries (what pydantic costs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daai_backup.settings import Settings
from daai_backup.tenant_sources import MongoTenantSource, load_registry
from daai_backup.tenants import Tenant

FIELDS = {
    "id": "slug",
    "workspace_name": "name",
    "subscription": "billing.status",
    "frequency": "backup.frequency",
    "storage_quota_mb": "backup.quota_mb",
    "permissions": "members",
}
VALUES = {"subscription": {"trialing": "active", "past_due": "active", "canceled": "suspended"}}
FREQUENCIES = ["monthly", "15-day", "7-day", "3-day", "24-hour"]


def _document(n: int) -> dict[str, Any]:
    return {
        "slug": f"tenant-{n:05d}",
        "name": f"Tenant {n}",
        "billing": {"status": ["active", "trialing", "past_due", "canceled"][n % 4], "seats": 12},
        "backup": {"frequency": FREQUENCIES[n % 5], "quota_mb": 2048},
        "members": [
            {"user": f"owner{n}@example.com", "permissions": ["create", "restore"]},
            {"user": f"ops{n}@example.com", "permissions": ["create"]},
        ],
        "settings": {"locale": "en-IN", "modules": ["hr", "invoicing", "crm"], "theme": "x" * 200},
    }


def _yaml_entry(n: int) -> dict[str, Any]:
    doc = _document(n)
    return {
        "id": doc["slug"],
        "workspace_name": doc["name"],
        "subscription": "suspended" if n % 4 == 3 else "active",
        "frequency": doc["backup"]["frequency"],
        "storage_quota_mb": 2048,
        "permissions": {m["user"]: m["permissions"] for m in doc["members"]},
    }


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from secantus import SecantusDBServer

    with tempfile.TemporaryDirectory() as tmp, SecantusDBServer(storage_path=tmp) as server:
        uri = str(server.uri)
        client: MongoClient[dict[str, Any]] = MongoClient(uri)
        coll = client["suite"]["tenants"]
        start = time.perf_counter()
        for first in range(0, args.tenants, 1000):
            coll.insert_many([_document(n) for n in range(first, min(first + 1000, args.tenants))])
        coll.create_index("slug", unique=True)
        print(f"inserted {args.tenants} documents in {time.perf_counter() - start:.1f} s")
        yaml_path = Path(tmp) / "tenants.yaml"
        yaml_path.write_text(
            yaml.safe_dump({"tenants": [_yaml_entry(n) for n in range(args.tenants)]})
        )
        base = {"storage_url": "file:///srv/backups", "_env_file": None}
        from_file = Settings(tenants_file=yaml_path, **base)  # type: ignore[arg-type]
        from_mongo = Settings(
            tenants_uri=uri,  # type: ignore[arg-type]
            tenants_database="suite",
            tenants_fields=FIELDS,
            tenants_values=VALUES,
            **base,  # type: ignore[arg-type]
        )
        source = MongoTenantSource.from_settings(from_mongo)
        assert len(load_registry(from_mongo)) == args.tenants
        assert len(load_registry(from_file)) == args.tenants
        entries = [source.tenant_data(d) for d in source.documents()]
        timings: dict[str, list[float]] = {
            "bare find (same projection)": [],
            "Tenant validation only": [],
            "load_registry: MongoDB collection": [],
            "load_registry: YAML file": [],
            "YAML parse only": [],
            "find_one of one tenant by id (indexed)": [],
            "find of every tenant's id, database, storage_url only": [],
        }
        narrow = {"slug": 1, "database": 1, "storage_url": 1, "_id": 0}
        for _ in range(args.repeat):
            timings["bare find (same projection)"].append(_time(source.documents))
            timings["Tenant validation only"].append(
                _time(lambda: [Tenant.model_validate(e) for e in entries])
            )
            timings["load_registry: MongoDB collection"].append(
                _time(lambda: load_registry(from_mongo))
            )
            timings["load_registry: YAML file"].append(_time(lambda: load_registry(from_file)))
            timings["YAML parse only"].append(
                _time(lambda: yaml.load(yaml_path.read_text(), Loader=yaml.SafeLoader))
            )
            timings["find_one of one tenant by id (indexed)"].append(
                _time(lambda: coll.find_one({"slug": "tenant-04321"}))
            )
            timings["find of every tenant's id, database, storage_url only"].append(
                _time(lambda: list(coll.find({}, narrow)))
            )
        client.close()
    print(f"\n{args.tenants} tenants, {args.repeat} rounds (s): median, min, max")
    for name, values in timings.items():
        print(
            f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |"
        )


if __name__ == "__main__":
    main()
