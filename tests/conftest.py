"""Shared fixtures: the real servers the tests talk to.

- ``mongo_uri``: one SecantusDB server (MongoDB wire protocol over WiredTiger) for the whole
  session; each test takes its own database through ``mongo_db`` so tests never share data.
- ``s3_endpoint``: one moto server (S3 API over real HTTP, SigV4) for the whole session;
  ``s3_bucket`` gives each test a fresh bucket.

No test mocks pymongo or boto3.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never read a developer's .env or a dev Prefect server.
for _var in ("BACKUP_ENCRYPTION_KEY", "BACKUP_ENCRYPTION_PREVIOUS_KEYS", "PREFECT_API_URL"):
    os.environ.pop(_var, None)
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from secantus import SecantusDBServer

    storage = tmp_path_factory.mktemp("secantus")
    with SecantusDBServer(storage_path=str(storage)) as server:
        yield str(server.uri)


@pytest.fixture(scope="session")
def mongo_client(mongo_uri: str) -> Iterator[object]:
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(mongo_uri)
    yield client
    client.close()


@pytest.fixture
def mongo_db_name(mongo_client: object) -> Iterator[str]:
    """A database name unique to this test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    mongo_client.drop_database(name)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket on the moto server."""
    import boto3

    name = f"bkt-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def local_storage_url(tmp_path: Path) -> str:
    root = tmp_path / "storage"
    root.mkdir()
    return root.as_uri()
