"""DBK1 test vectors, and DBK1 written from docs/format.md alone (no daai_backup.format.dbk1).

Run ``uv run python tests/dbk1_vectors.py`` after a deliberate change to the format: it
rewrites ``tests/vectors/dbk1.json`` and the test-vector block of ``docs/format.md``. The
tests check that the file, the document and :func:`build_vectors` agree, so neither is ever
edited by hand.

- Version 2 vectors come from the real writer, made deterministic by its test-only
  ``_salt``/``_nonce_prefix`` seams.
- Version 1 vectors come from :func:`seal_v1`: the product no longer writes version 1 (it
  still reads it), so this module keeps an independent version 1 writer built from raw
  primitives and the version 1 layout in docs/format.md. It reproduces the vectors published
  with version 1 byte for byte, and the tests use it to make version 1 files.

:func:`header_v1` and :func:`header_v2` build headers field by field from the documented
offsets, for the vectors' independent checks and for well-formed header edits in tamper tests.
"""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ROOT = Path(__file__).resolve().parents[1]
VECTORS_JSON = ROOT / "tests" / "vectors" / "dbk1.json"
FORMAT_MD = ROOT / "docs" / "format.md"
DOC_BLOCK = re.compile(
    r"(<!-- test-vectors:begin -->\s*```json\n)(.*?)(```\s*<!-- test-vectors:end -->)", re.S
)

MASTER_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # bytes 00..1f
TENANT = "acme-corp"
CREATED_AT = "2026-01-01T00:00:00Z"
SALT = bytes(range(0x20, 0x40))
NONCE_PREFIX = bytes(range(0xA0, 0xA7))
MIB = 1024 * 1024
TAG = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# name, version, segment_size, plaintext, and for version 2: content type and file name
_CASES: list[tuple[str, int, int, bytes, int | None, str | None]] = [
    ("small", 1, MIB, b"Hello, DBK1!", None, None),
    ("empty", 1, MIB, b"", None, None),
    ("three-segments", 1, 16, bytes(range(40)), None, None),
    ("v2-small", 2, MIB, b"Hello, DBK1!", 1, "manual_20260101T000000Z_0badcafe.gz.enc"),
    ("v2-empty", 2, MIB, b"", 1, "manual_20260101T000000Z_0badcafe.gz.enc"),
    ("v2-three-segments", 2, 16, bytes(range(40)), 1, "15-day_20260101T000000Z_3f9a1c2b.gz.enc"),
]


def hkdf(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


def fingerprint(master: bytes) -> bytes:
    return hkdf(master, None, b"daai-backup/v1/fingerprint", 8)


def tenant_key(master: bytes, tenant_id: str) -> bytes:
    return hkdf(master, None, b"daai-backup/v1/tenant:" + tenant_id.encode("ascii"), 32)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def header_v1(
    *,
    segment_size: int,
    created_ms: int,
    fingerprint: bytes,
    salt: bytes,
    nonce_prefix: bytes,
    tenant_id: str,
    version: int = 1,
) -> bytes:
    """The version 1 header, offset by offset as docs/format.md draws it."""
    tenant = tenant_id.encode("ascii")
    return (
        b"DBK1"  # 0: magic
        + bytes((version, 1))  # 4: version, 5: algorithm
        + (68 + len(tenant)).to_bytes(2, "big")  # 6: header_length
        + segment_size.to_bytes(4, "big")  # 8
        + created_ms.to_bytes(8, "big", signed=True)  # 12
        + fingerprint  # 20
        + salt  # 28
        + nonce_prefix  # 60
        + bytes((len(tenant),))  # 67: tenant_length
        + tenant  # 68
    )


def header_v2(
    *,
    segment_size: int,
    created_ms: int,
    fingerprint: bytes,
    salt: bytes,
    nonce_prefix: bytes,
    content_type: int,
    tenant_id: str,
    name: str,
    version: int = 2,
) -> bytes:
    """The version 2 header, offset by offset as docs/format.md draws it."""
    tenant = tenant_id.encode("ascii")
    object_name = name.encode("ascii")
    return (
        b"DBK1"  # 0: magic
        + bytes((version, 1))  # 4: version, 5: algorithm
        + (70 + len(tenant) + len(object_name)).to_bytes(2, "big")  # 6: header_length
        + segment_size.to_bytes(4, "big")  # 8
        + created_ms.to_bytes(8, "big", signed=True)  # 12
        + fingerprint  # 20
        + salt  # 28
        + nonce_prefix  # 60
        + bytes((content_type, len(tenant)))  # 67: content_type, 68: tenant_length
        + tenant  # 69
        + bytes((len(object_name),))  # 69 + tenant_length: name_length
        + object_name  # 70 + tenant_length
    )


def parse_v2(blob: bytes) -> dict[str, Any]:
    """The fields of a version 2 header (keyword arguments of :func:`header_v2`)."""
    t = blob[68]
    n = blob[69 + t]
    return {
        "segment_size": int.from_bytes(blob[8:12], "big"),
        "created_ms": int.from_bytes(blob[12:20], "big", signed=True),
        "fingerprint": blob[20:28],
        "salt": blob[28:60],
        "nonce_prefix": blob[60:67],
        "content_type": blob[67],
        "tenant_id": blob[69 : 69 + t].decode("ascii"),
        "name": blob[70 + t : 70 + t + n].decode("ascii"),
    }


def seal_segments(key: bytes, nonce_prefix: bytes, segment_size: int, plaintext: bytes) -> bytes:
    """``segment_0 || ... || segment_n`` under ``key`` (the segment key)."""
    aead = AESGCM(key)
    pieces = [plaintext[i : i + segment_size] for i in range(0, len(plaintext), segment_size)]
    pieces = pieces or [b""]
    out = b""
    for i, piece in enumerate(pieces):
        last = b"\x01" if i == len(pieces) - 1 else b"\x00"
        out += aead.encrypt(nonce_prefix + i.to_bytes(4, "big") + last, piece, None)
    return out


def seal_v1(
    plaintext: bytes,
    master: bytes,
    tenant_id: str,
    created_at: datetime,
    *,
    salt: bytes = SALT,
    nonce_prefix: bytes = NONCE_PREFIX,
    segment_size: int = MIB,
) -> bytes:
    """A whole DBK1 version 1 file, as this product wrote them before version 2."""
    header = header_v1(
        segment_size=segment_size,
        created_ms=_ms(created_at),
        fingerprint=fingerprint(master),
        salt=salt,
        nonce_prefix=nonce_prefix,
        tenant_id=tenant_id,
    )
    key = hkdf(tenant_key(master, tenant_id), salt, header, 32)
    return header + seal_segments(key, nonce_prefix, segment_size, plaintext)


def _seal_v2(
    plaintext: bytes, created_at: datetime, segment_size: int, content_type: int, name: str
) -> bytes:
    from daai_backup.format.dbk1 import ContentType, EncryptingWriter
    from daai_backup.format.keys import parse_master_key

    sink = io.BytesIO()
    with EncryptingWriter(
        sink,
        parse_master_key(MASTER_B64),
        TENANT,
        created_at,
        name=name,
        content_type=ContentType(content_type),
        _salt=SALT,
        _nonce_prefix=NONCE_PREFIX,
        _segment_size=segment_size,
    ) as writer:
        writer.write(plaintext)
    return sink.getvalue()


def build_vectors() -> list[dict[str, Any]]:
    """Every vector, in the order of the file and the document."""
    master = base64.b64decode(MASTER_B64)
    created_at = datetime.fromisoformat(CREATED_AT)
    vectors = []
    for name, version, segment_size, plaintext, content_type, file_name in _CASES:
        if version == 1:
            blob = seal_v1(plaintext, master, TENANT, created_at, segment_size=segment_size)
        else:
            assert content_type is not None
            assert file_name is not None
            blob = _seal_v2(plaintext, created_at, segment_size, content_type, file_name)
        header = blob[: int.from_bytes(blob[6:8], "big")]
        t_key = tenant_key(master, TENANT)
        vector: dict[str, Any] = {
            "name": name,
            "version": version,
            "master_key_b64": MASTER_B64,
            "tenant_id": TENANT,
            "created_at": CREATED_AT,
        }
        if version == 2:
            vector |= {"content_type": content_type, "file_name": file_name}
        vector |= {
            "segment_size": segment_size,
            "salt": SALT.hex(),
            "nonce_prefix": NONCE_PREFIX.hex(),
            "plaintext": plaintext.hex(),
            "fingerprint": fingerprint(master).hex(),
            "tenant_key": t_key.hex(),
            "header": header.hex(),
            "segment_key": hkdf(t_key, SALT, header, 32).hex(),
            "ciphertext": blob.hex(),
        }
        vectors.append(vector)
    return vectors


def render(vectors: list[dict[str, Any]]) -> str:
    """The JSON text of the vector file (and of the document's block)."""
    return json.dumps(vectors, indent=2) + "\n"


def main() -> None:
    text = render(build_vectors())
    VECTORS_JSON.write_text(text)
    doc = FORMAT_MD.read_text()
    new_doc, n = DOC_BLOCK.subn(lambda m: m.group(1) + text + m.group(3), doc)
    if n != 1:
        raise SystemExit("docs/format.md has no test-vectors block to fill")
    FORMAT_MD.write_text(new_doc)
    print(f"wrote {VECTORS_JSON.relative_to(ROOT)} and the block in {FORMAT_MD.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
