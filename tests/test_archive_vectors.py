"""The test vectors in docs/format.md and tests/vectors/dbk1.json hold for the code."""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from daai_backup.archive import EncryptingWriter, open_plaintext, read_header
from daai_backup.keys import Keyring, derive_tenant_key, parse_master_key

ROOT = Path(__file__).resolve().parents[1]
VECTORS_JSON = ROOT / "tests" / "vectors" / "dbk1.json"
FORMAT_MD = ROOT / "docs" / "format.md"


def _from_doc() -> list[dict[str, Any]]:
    text = FORMAT_MD.read_text()
    m = re.search(
        r"<!-- test-vectors:begin -->\s*```json\n(.*?)```\s*<!-- test-vectors:end -->", text, re.S
    )
    assert m, "docs/format.md lost its test-vectors block"
    return json.loads(m.group(1))  # type: ignore[no-any-return]


VECTORS: list[dict[str, Any]] = json.loads(VECTORS_JSON.read_text())


def test_doc_shows_exactly_the_vector_file() -> None:
    assert _from_doc() == VECTORS
    assert {v["name"] for v in VECTORS} == {"small", "empty", "three-segments"}


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
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
    assert header.tenant_id == v["tenant_id"]
    assert header.key_fingerprint == v["fingerprint"]
    assert header.created_at == datetime.fromisoformat(v["created_at"])
    assert open_plaintext(io.BytesIO(blob), ring, v["tenant_id"]).read().hex() == v["plaintext"]


def hkdf(ikm: bytes, salt: bytes | None, info: bytes, n: int) -> bytes:
    return HKDF(hashes.SHA256(), n, salt, info).derive(ikm)


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_vector_follows_the_spec_independently(v: dict[str, Any]) -> None:
    """Re-derive every value from docs/format.md's formulas with raw primitives."""
    master = base64.b64decode(v["master_key_b64"])
    assert hkdf(master, None, b"daai-backup/v1/fingerprint", 8).hex() == v["fingerprint"]
    tenant_key = hkdf(master, None, b"daai-backup/v1/tenant:" + v["tenant_id"].encode(), 32)
    assert tenant_key.hex() == v["tenant_key"]
    header = bytes.fromhex(v["header"])
    assert header[:4] == b"DBK1"
    assert header[4:6] == b"\x01\x01"
    assert int.from_bytes(header[6:8], "big") == len(header) == 68 + len(v["tenant_id"])
    assert int.from_bytes(header[8:12], "big") == v["segment_size"]
    assert header[20:28].hex() == v["fingerprint"]
    assert header[28:60].hex() == v["salt"]
    assert header[60:67].hex() == v["nonce_prefix"]
    assert header[67] == len(v["tenant_id"])
    assert header[68:].decode() == v["tenant_id"]
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
