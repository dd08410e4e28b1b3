"""The shared fixtures start real servers that answer."""

from __future__ import annotations

import boto3


def test_mongo_server_answers_hello(mongo_client: object, mongo_db_name: str) -> None:
    db = mongo_client[mongo_db_name]  # type: ignore[index]
    db.c.insert_one({"x": 1})
    assert db.c.count_documents({}) == 1


def test_moto_server_speaks_s3_over_http(s3_endpoint: str, s3_bucket: str) -> None:
    assert s3_endpoint.startswith("http://127.0.0.1:")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.put_object(Bucket=s3_bucket, Key="a", Body=b"hello")
    assert s3.get_object(Bucket=s3_bucket, Key="a")["Body"].read() == b"hello"
