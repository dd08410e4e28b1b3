"""The test vectors in docs/format.md and tests/vectors/dbk1.json hold for the code."""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dbk1_vectors import (
    DOC_BLOCK,
    FORMAT_MD,
    VECTORS_JSON,
    build_vectors,
    header_v1,
    header_v2,
    hkdf,
    render,
    seal_v1,
)

from daai_backup.errors import NameMismatch
from daai_backup.format.dbk1 import (
    ContentType,
    EncryptingWriter,
    check_name_binding,
    open_plaintext,
    read_header,
)
from daai_backup.format.keys import Keyring, derive_tenant_key, parse_master_key


def _from_doc() -> list[dict[str, Any]]:
    m = DOC_BLOCK.search(FORMAT_MD.read_text())
    assert m, "docs/format.md lost its test-vectors block"
    return json.loads(m.group(2))  # type: ignore[no-any-return]


VECTORS: list[dict[str, Any]] = json.loads(VECTORS_JSON.read_text())
V2 = [v for v in VECTORS if v["version"] == 2]


def test_doc_shows_exactly_the_vector_file() -> None:
    assert _from_doc() == VECTORS
    assert [v["name"] for v in VECTORS] == [
        "small",
        "empty",
        "three-segments",
        "v2-small",
        "v2-empty",
        "v2-three-segments",
    ]


def test_generator_makes_exactly_the_vector_file() -> None:
    """`uv run python tests/dbk1_vectors.py` would change nothing."""
    assert render(build_vectors()) == VECTORS_JSON.read_text()


def test_version_1_vectors_are_the_published_ones() -> None:
    """The version 1 vectors were fixed when version 1 was published; they never change."""
    small = next(v for v in VECTORS if v["name"] == "small")
    assert small["ciphertext"].endswith("6926e8ee9c8075d97c37fb2f562688ef2355f865fc992fd2693e90dd")
    assert small["header"].startswith("44424b310101004d")


@pytest.mark.parametrize("v", V2, ids=lambda v: v["name"])
def test_writer_reproduces_vector(v: dict[str, Any]) -> None:
    key = parse_master_key(v["master_key_b64"])
    assert key.fingerprint == v["fingerprint"]
    assert derive_tenant_key(key, v["tenant_id"]).hex() == v["tenant_key"]
    sink = io.BytesIO()
    with EncryptingWriter(
        sink,
        key,
        v["tenant_id"],
        datetime.fromisoformat(v["created_at"]),
        name=v["file_name"],
        content_type=ContentType(v["content_type"]),
        _salt=bytes.fromhex(v["salt"]),
        _nonce_prefix=bytes.fromhex(v["nonce_prefix"]),
        _segment_size=v["segment_size"],
    ) as w:
        w.write(bytes.fromhex(v["plaintext"]))
    assert sink.getvalue().hex() == v["ciphertext"]
    assert v["ciphertext"].startswith(v["header"])


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_reader_opens_vector(v: dict[str, Any]) -> None:
    ring = Keyring.from_strings(v["master_key_b64"], [])
    blob = bytes.fromhex(v["ciphertext"])
    header = read_header(io.BytesIO(blob))
    assert header is not None
    assert header.version == v["version"]
    assert header.tenant_id == v["tenant_id"]
    assert header.key_fingerprint == v["fingerprint"]
    assert header.created_at == datetime.fromisoformat(v["created_at"])
    assert header.content_type == v.get("content_type", ContentType.BACKUP_ARCHIVE)
    assert header.name == v.get("file_name")
    # Found under the name it was written with (version 1: any name with its time).
    found = v.get("file_name", "7-day_20260101T000000Z_00000000.gz.enc")
    plain = open_plaintext(io.BytesIO(blob), ring, v["tenant_id"], name=found).read()
    assert plain.hex() == v["plaintext"]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_vector_found_under_another_name_is_refused(v: dict[str, Any]) -> None:
    ring = Keyring.from_strings(v["master_key_b64"], [])
    blob = bytes.fromhex(v["ciphertext"])
    renamed = "15-day_20991231T000000Z_aaaaaa17.gz.enc"
    header = read_header(io.BytesIO(blob))
    assert header is not None
    with pytest.raises(NameMismatch):
        check_name_binding(header, renamed)
    with pytest.raises(NameMismatch, match="renamed or copied"):
        open_plaintext(io.BytesIO(blob), ring, v["tenant_id"], name=renamed)


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_vector_follows_the_spec_independently(v: dict[str, Any]) -> None:
    """Re-derive every value from docs/format.md's formulas with raw primitives."""
    master = base64.b64decode(v["master_key_b64"])
    assert hkdf(master, None, b"daai-backup/v1/fingerprint", 8).hex() == v["fingerprint"]
    tenant_key = hkdf(master, None, b"daai-backup/v1/tenant:" + v["tenant_id"].encode(), 32)
    assert tenant_key.hex() == v["tenant_key"]
    header = bytes.fromhex(v["header"])
    tenant = v["tenant_id"].encode()
    assert header[:4] == b"DBK1"
    assert header[4] == v["version"]
    assert header[5] == 1
    assert int.from_bytes(header[8:12], "big") == v["segment_size"]
    created_ms = int.from_bytes(header[12:20], "big", signed=True)
    assert created_ms == datetime.fromisoformat(v["created_at"]).timestamp() * 1000
    assert header[20:28].hex() == v["fingerprint"]
    assert header[28:60].hex() == v["salt"]
    assert header[60:67].hex() == v["nonce_prefix"]
    fields = {
        "segment_size": v["segment_size"],
        "created_ms": created_ms,
        "fingerprint": bytes.fromhex(v["fingerprint"]),
        "salt": bytes.fromhex(v["salt"]),
        "nonce_prefix": bytes.fromhex(v["nonce_prefix"]),
        "tenant_id": v["tenant_id"],
    }
    if v["version"] == 1:
        assert int.from_bytes(header[6:8], "big") == len(header) == 68 + len(tenant)
        assert header[67] == len(tenant)
        assert header[68:] == tenant
        assert header == header_v1(**fields)
    else:
        name = v["file_name"].encode()
        assert int.from_bytes(header[6:8], "big") == len(header) == 70 + len(tenant) + len(name)
        assert header[67] == v["content_type"]
        assert header[68] == len(tenant)
        assert header[69 : 69 + len(tenant)] == tenant
        assert header[69 + len(tenant)] == len(name)
        assert header[70 + len(tenant) :] == name
        assert header == header_v2(**fields, content_type=v["content_type"], name=v["file_name"])
    seg_key = hkdf(tenant_key, bytes.fromhex(v["salt"]), header, 32)
    assert seg_key.hex() == v["segment_key"]
    body = bytes.fromhex(v["ciphertext"])[len(header) :]
    size = v["segment_size"] + 16
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    aead = AESGCM(seg_key)
    plain = b""
    for i, chunk in enumerate(chunks):
        last = b"\x01" if i == len(chunks) - 1 else b"\x00"
        nonce = bytes.fromhex(v["nonce_prefix"]) + i.to_bytes(4, "big") + last
        plain += aead.decrypt(nonce, chunk, None)
    assert plain.hex() == v["plaintext"]


@pytest.mark.parametrize("v", [v for v in VECTORS if v["version"] == 1], ids=lambda v: v["name"])
def test_independent_version_1_writer_reproduces_vector(v: dict[str, Any]) -> None:
    """seal_v1 (used by other tests to make version 1 files) is exactly version 1."""
    blob = seal_v1(
        bytes.fromhex(v["plaintext"]),
        base64.b64decode(v["master_key_b64"]),
        v["tenant_id"],
        datetime.fromisoformat(v["created_at"]),
        salt=bytes.fromhex(v["salt"]),
        nonce_prefix=bytes.fromhex(v["nonce_prefix"]),
        segment_size=v["segment_size"],
    )
    assert blob.hex() == v["ciphertext"]
