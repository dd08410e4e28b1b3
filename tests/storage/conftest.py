"""Backends for the storage conformance suite: the same tests run on every one of them.

Each ``Backend`` pairs a ``Storage`` with raw access to what lies underneath it (files on
disk, S3 objects and multipart uploads, the in-memory store), so tests can check that a
failed write left nothing behind and that nothing outside the root is ever seen.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from daai_backup.format.keys import Keyring, MasterKey
from daai_backup.storage import LocalStorage, MemoryStorage, S3Storage, Storage
from daai_backup.storage.memory import _store, clear_memory_store

BACKENDS = ("local", "memory", "s3")

KEYRING = Keyring(MasterKey(bytes(range(32))))
"""A fixed test key, so folders read manifests and keep their listing index."""


@dataclass
class Backend:
    name: str
    storage: Storage
    # Everything stored under the backend's root, temporaries and side files included.
    raw_leftovers: Callable[[], list[str]]
    # Write many small objects quickly, bypassing the contract (for pagination tests).
    seed: Callable[[list[str]], None]
    # Write one object just outside the backend's root.
    put_outside: Callable[[str], None]
    # Incomplete multipart uploads (S3 only; empty elsewhere).
    pending_uploads: Callable[[], list[str]]
    # Leave what a write of ``key`` killed part way leaves (``size`` bytes of it, as a dead
    # process would: unlocked, older than any grace period); returns the bytes left (0 for
    # the in-memory backend, where a killed write leaves nothing).
    abandon: Callable[[str, int], int]


def abandon_write(storage: Storage, key: str, size: int) -> int:
    """Leave what a write of ``key`` killed part way leaves; return the bytes left.

    Local: a temporary file of ``size`` bytes, unlocked (its process is dead) and older than
    any grace period. S3: a started multipart upload with one part of ``size`` bytes. Memory:
    nothing (a killed write leaves nothing there), 0.
    """
    if isinstance(storage, LocalStorage):
        final = storage.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".tmp-{uuid.uuid4().hex}-{final.name}")
        tmp.write_bytes(b"t" * size)
        old = time.time() - 3600
        os.utime(tmp, (old, old))
        return size
    if isinstance(storage, S3Storage):
        full = storage.full_key(key)
        upload = storage.client.create_multipart_upload(Bucket=storage.bucket, Key=full)
        storage.client.upload_part(
            Bucket=storage.bucket,
            Key=full,
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=b"t" * size,
        )
        return size
    return 0


def _abandoner(storage: Storage) -> Callable[[str, int], int]:
    return lambda key, size: abandon_write(storage, key, size)


def _local(tmp_path: Path) -> Backend:
    root = tmp_path / "root"

    def leftovers() -> list[str]:
        if not root.exists():
            return []
        return sorted(
            str(Path(d, f).relative_to(root)) for d, _, files in os.walk(root) for f in files
        )

    def seed(keys: list[str]) -> None:
        for key in keys:
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")

    def put_outside(name: str) -> None:
        (tmp_path / name).write_bytes(b"outside")
        (tmp_path / "rootx").mkdir(exist_ok=True)
        (tmp_path / "rootx" / name).write_bytes(b"outside")

    storage = LocalStorage(root)
    return Backend("local", storage, leftovers, seed, put_outside, list, _abandoner(storage))


def _memory() -> Backend:
    name = f"conf-{uuid.uuid4().hex[:8]}"
    storage = MemoryStorage(name, "root")

    def leftovers() -> list[str]:
        return sorted(k for k in _store(name).objects if k.startswith("root/"))

    def seed(keys: list[str]) -> None:
        for key in keys:
            storage.put_stream(key, io.BytesIO(b"x"))

    def put_outside(key: str) -> None:
        MemoryStorage(name).put_stream(key, io.BytesIO(b"outside"))
        MemoryStorage(name, "rootx").put_stream(key, io.BytesIO(b"outside"))

    return Backend("memory", storage, leftovers, seed, put_outside, list, _abandoner(storage))


def _s3(endpoint: str, bucket: str, client: Any) -> Backend:
    storage = S3Storage(bucket, "root", endpoint_url=endpoint)

    def leftovers() -> list[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="root/")
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))

    def uploads() -> list[str]:
        response = client.list_multipart_uploads(Bucket=bucket)
        return [u["Key"] for u in response.get("Uploads", [])]

    def seed(keys: list[str]) -> None:
        # 1,000+ HTTP PUTs cost about 15 s on moto; write through the server's own
        # in-process backend instead (the listing under test still goes over HTTP).
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        moto_s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for key in keys:
            moto_s3.put_object(bucket, f"root/{key}", b"x")

    def put_outside(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=b"outside")
        client.put_object(Bucket=bucket, Key=f"rootx/{key}", Body=b"outside")

    return Backend("s3", storage, leftovers, seed, put_outside, uploads, _abandoner(storage))


@pytest.fixture(scope="session")
def _s3_client(s3_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def s3_bucket(_s3_client: Any) -> str:
    """A fresh bucket (overrides the root fixture to reuse one client: ~0.3 s saved per test)."""
    name = f"bkt-{uuid.uuid4().hex[:12]}"
    _s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        yield _local(tmp_path)
    elif request.param == "memory":
        b = _memory()
        yield b
        clear_memory_store(b.storage.url.removeprefix("memory://").split("/")[0])
    else:
        yield _s3(
            request.getfixturevalue("s3_endpoint"),
            request.getfixturevalue("s3_bucket"),
            request.getfixturevalue("_s3_client"),
        )


@pytest.fixture
def storage(backend: Backend) -> Storage:
    return backend.storage


@pytest.fixture(params=BACKENDS)
def default_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A shared storage URL (one folder, one in-memory store or one bucket) for tenants."""
    if request.param == "local":
        yield (tmp_path / "shared").as_uri()
    elif request.param == "memory":
        name = f"bf-{uuid.uuid4().hex[:8]}"
        yield f"memory://{name}"
        clear_memory_store(name)
    else:
        yield f"s3://{request.getfixturevalue('s3_bucket')}/tenants"


@pytest.fixture
def endpoint(request: pytest.FixtureRequest, default_url: str) -> str | None:
    return request.getfixturevalue("s3_endpoint") if default_url.startswith("s3") else None
