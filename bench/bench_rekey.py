"""Benchmark: rekey (re-encrypt + verify + atomic move) vs a plain decrypt+encrypt copy.

Run: ``uv run python bench/bench_rekey.py`` (``--help`` for options).

Writes ``--files`` encrypted backups of ``--mb`` MB of archive (mongodump framing around
BSON documents, CRCs included) each, under an old key, into a local tenant folder (streamed:
nothing whole in memory). Then, in the same run and on the same files:

- baseline: for each file, decrypt with the old key and encrypt with the new one into a new
  file (what a hand-written rotation script would do: no check, no atomic replace);
- rekey: :func:`daai_backup.rekey.rekey_folder`, which also reads every new file back whole
  (every tag, the plaintext hash, the archive's CRCs) before moving it into place.

Prints MB/s of stored (encrypted) bytes for both, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import bson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daai_backup.format.compression import open_gzip_writer
from daai_backup.format.dbk1 import ContentType, EncryptingWriter, open_plaintext
from daai_backup.format.keys import Keyring, parse_master_key
from daai_backup.mongo.archive_format import ArchiveHeader, ArchiveWriter, CollectionMetadata
from daai_backup.mongo.crc64 import Crc64
from daai_backup.rekey import rekey_folder
from daai_backup.repository.folder import BackupFolder
from daai_backup.repository.names import new_backup_name
from daai_backup.storage.local import LocalStorage

OLD = parse_master_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
NEW = parse_master_key("HxEdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=")
TENANT = "bench"
MB = 1_000_000


def _batch(rng: random.Random) -> bytes:
    words = ["invoice", "payroll", "employee", "order", "paid", "open", "Mumbai", "Berlin"]
    docs = []
    for i in range(2000):
        docs.append(
            bson.encode(
                {
                    "_id": i,
                    "name": " ".join(rng.choice(words) for _ in range(6)),
                    "amount": rng.random() * 1000,
                    "tags": [rng.choice(words) for _ in range(3)],
                    "blob": rng.randbytes(64),
                }
            )
        )
    return b"".join(docs)


def _write_backup(root: Path, when: datetime, mb: int, batch: bytes) -> str:
    name = new_backup_name("manual", when)
    path = root / TENANT / "db-backups" / name.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "wb") as sink,
        EncryptingWriter(
            sink,
            OLD,
            TENANT,
            created_at=name.taken_at,
            name=name.filename,
            content_type=ContentType.BACKUP_ARCHIVE,
        ) as encrypted,
    ):
        gz = open_gzip_writer(cast(Any, encrypted))
        writer = ArchiveWriter(gz)
        writer.write_prelude(
            ArchiveHeader(server_version="8.0.0", tool_version="bench"),
            [CollectionMetadata(db="bench", collection="items")],
        )
        crc = Crc64()
        written = 0
        while written < mb * MB:
            writer.write_segment("bench", "items", batch)
            crc.update(batch)
            written += len(batch)
        writer.write_eof("bench", "items", crc.value)
        gz.close()
    return name.filename


def _baseline(root: Path, out: Path, files: list[str]) -> int:
    ring = Keyring(OLD)
    total = 0
    out.mkdir(parents=True, exist_ok=True)
    for name in files:
        with open(root / TENANT / "db-backups" / name, "rb") as src, open(out / name, "wb") as dst:
            plain = open_plaintext(src, ring, TENANT, name=name, encrypted=True)
            with EncryptingWriter(
                dst, NEW, TENANT, name=name, content_type=ContentType.BACKUP_ARCHIVE
            ) as enc:
                while chunk := plain.read(1 << 20):
                    enc.write(chunk)
        total += (out / name).stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--mb", type=int, default=64, help="archive MB per file (before gzip)")
    args = parser.parse_args()
    rng = random.Random(7)
    batch = _batch(rng)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "storage"
        start = datetime(2026, 1, 1, tzinfo=UTC)
        files = [
            _write_backup(root, start + timedelta(days=i), args.mb, batch)
            for i in range(args.files)
        ]
        stored = sum((root / TENANT / "db-backups" / f).stat().st_size for f in files)

        t0 = time.perf_counter()
        _baseline(root, Path(tmp) / "baseline", files)
        base_s = time.perf_counter() - t0

        folder = BackupFolder(
            LocalStorage(root), TENANT, tenant_id=TENANT, keyring=Keyring(NEW, [OLD])
        )
        t0 = time.perf_counter()
        outcome = rekey_folder(folder, Keyring(NEW, [OLD]), TENANT)
        rekey_s = time.perf_counter() - t0
        assert outcome.rewritten.get("backup") == args.files, outcome
        assert outcome.remaining == {}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.files} files, {args.mb} MB archive each, {stored / MB:.1f} MB stored in all")
    print(f"baseline decrypt+encrypt copy: {base_s:.2f} s, {stored / MB / base_s:.1f} MB/s")
    print(
        f"rekey (re-encrypt, read back + CRCs, move): {rekey_s:.2f} s, "
        f"{stored / MB / rekey_s:.1f} MB/s ({rekey_s / base_s:.2f}x the baseline's time)"
    )
    print(f"peak RSS of the whole run: {peak:.0f} MB")


if __name__ == "__main__":
    main()
