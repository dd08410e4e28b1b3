"""Writes killed with SIGKILL, for real: what they leave is counted, then swept, never live."""

from __future__ import annotations

import fcntl
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from daai_backup.storage import LocalStorage, S3Storage, put_bytes, read_bytes

MiB = 1024 * 1024

# A child process that writes an endless stream: after ``stall`` bytes it stops reading (it
# is still alive, mid-write) and says so on stdout. The parent then kills it with SIGKILL.
CHILD = """
import io, sys, time
from daai_backup.storage import LocalStorage, S3Storage

class Stalling(io.RawIOBase):
    def __init__(self, stall):
        self.sent, self.stall = 0, stall
    def readable(self):
        return True
    def readinto(self, buffer):
        if self.sent >= self.stall:
            print("stalled", flush=True)
            time.sleep(3600)
        n = min(len(buffer), self.stall - self.sent)
        buffer[:n] = b"x" * n
        self.sent += n
        return n

kind, where, key, stall = sys.argv[1:5]
if kind == "local":
    storage = LocalStorage(where)
else:
    bucket, endpoint = where.split(" ")
    storage = S3Storage(bucket, "root", endpoint_url=endpoint)
storage.put_stream(key, Stalling(int(stall)))
"""


@pytest.fixture
def child() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:  # only the processes this test started
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _start_writer(
    started: list[subprocess.Popen[str]], kind: str, where: str, key: str, stall: int
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, where, key, str(stall)],
        stdout=subprocess.PIPE,
        text=True,
    )
    started.append(process)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "stalled", "the writer died before stalling"
    return process


def _kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL


def _age(path: Path) -> None:
    """Make a file look older than any grace period."""
    old = time.time() - 3600
    os.utime(path, (old, old))


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(".tmp-*"))


def test_local_temp_of_a_killed_write_is_swept_but_never_a_live_one(
    tmp_path: Path, child: list[subprocess.Popen[str]]
) -> None:
    storage = LocalStorage(tmp_path)
    put_bytes(storage, "acme/db-backups/old", b"complete")
    writer = _start_writer(child, "local", str(tmp_path), "acme/db-backups/new", 24 * MiB)
    [temp] = _temps(tmp_path / "acme" / "db-backups")
    assert temp.stat().st_size == 24 * MiB  # every byte read so far is on disk

    assert [i.key for i in storage.list("acme/")] == ["acme/db-backups/old"]
    assert storage.space_used("acme/") == 8 + 24 * MiB  # the quota sees what is on disk

    # Alive: neither a young nor an old temporary of a live write is touched.
    assert storage.remove_incomplete("acme/") == 0
    _age(temp)
    assert storage.remove_incomplete("acme/") == 0
    assert temp.exists()

    _kill(writer)
    assert temp.exists()  # nobody cleans up after a SIGKILL ...
    assert storage.remove_incomplete("acme/") == 24 * MiB  # ... until the sweep
    assert not temp.exists()
    assert storage.space_used("acme/") == 8
    assert read_bytes(storage, "acme/db-backups/old") == b"complete"


def test_local_young_unlocked_temp_is_left_for_a_later_sweep(tmp_path: Path) -> None:
    """A write creates its temporary file, then locks it: a fresh one may be that write's."""
    storage = LocalStorage(tmp_path)
    temp = tmp_path / "t" / f".tmp-{uuid.uuid4().hex}-obj"
    temp.parent.mkdir()
    temp.write_bytes(b"123")
    assert storage.space_used("t/") == 3
    assert storage.remove_incomplete("t/") == 0
    _age(temp)
    assert storage.remove_incomplete("t/") == 3
    assert storage.space_used("") == 0


def test_local_temp_locked_by_a_thread_is_kept(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    temp = tmp_path / "t" / f".tmp-{uuid.uuid4().hex}-obj"
    temp.parent.mkdir()
    temp.write_bytes(b"123")
    _age(temp)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with open(temp, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            locked.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert locked.wait(10)
        assert storage.remove_incomplete("") == 0
        assert temp.exists()
    finally:
        release.set()
        thread.join()
    assert storage.remove_incomplete("") == 3


def test_local_orphan_metadata_side_files_are_swept(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    put_bytes(storage, "t/kept", b"1", {"note": "mine"})
    put_bytes(storage, "t/orphan", b"1", {"note": "lost"})
    (tmp_path / "t" / "orphan").unlink()  # a delete killed between object and side file
    orphan = tmp_path / "t" / ".meta-orphan.json"
    size = orphan.stat().st_size
    assert storage.space_used("t/orphan") == size
    assert storage.remove_incomplete("t/") == 0  # too young yet
    _age(orphan)
    _age(tmp_path / "t" / ".meta-kept.json")
    assert storage.remove_incomplete("t/") == size
    assert not orphan.exists()
    assert dict(storage.stat("t/kept").metadata) == {"note": "mine"}


def test_local_side_file_of_a_write_in_progress_is_kept(tmp_path: Path) -> None:
    """put_stream publishes the side file, then the object: in between, its temp is locked."""
    storage = LocalStorage(tmp_path)
    folder = tmp_path / "t"
    folder.mkdir()
    meta = folder / ".meta-obj.json"
    meta.write_text('{"note": "n"}')
    temp = folder / f".tmp-{uuid.uuid4().hex}-obj"
    temp.write_bytes(b"data")
    _age(meta)
    _age(temp)
    with open(temp, "rb") as live:
        fcntl.flock(live.fileno(), fcntl.LOCK_EX)
        assert storage.remove_incomplete("") == 0
        assert meta.exists()
        assert temp.exists()
    assert storage.remove_incomplete("") == 4 + len('{"note": "n"}')


def test_local_put_stream_holds_a_lock_on_its_temp_while_writing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    seen: list[bool] = []

    class Probe(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            self.calls += 1
            if self.calls > 1:
                return 0
            [temp] = _temps(tmp_path)
            with open(temp, "rb") as other:
                try:
                    fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    seen.append(False)
                except BlockingIOError:
                    seen.append(True)
            buffer[:1] = b"x"
            return 1

    storage.put_stream("obj", Probe())  # type: ignore[arg-type]
    assert seen == [True]
    assert _temps(tmp_path) == []


def test_s3_upload_of_a_killed_write_is_counted_then_aborted(
    s3_endpoint: str, s3_bucket: str, child: list[subprocess.Popen[str]]
) -> None:
    storage = S3Storage(s3_bucket, "root", endpoint_url=s3_endpoint)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    put_bytes(storage, "acme/db-backups/old", b"complete")
    writer = _start_writer(
        child, "s3", f"{s3_bucket} {s3_endpoint}", "acme/db-backups/new", 20 * MiB
    )
    # Two 8 MiB parts are full; wait until the server has both.
    deadline = time.monotonic() + 30
    while True:
        uploads = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
        if uploads:
            parts = client.list_parts(
                Bucket=s3_bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]
            ).get("Parts", [])
            if len(parts) == 2:
                break
        assert time.monotonic() < deadline, "the upload never got its parts"
        time.sleep(0.1)
    _kill(writer)

    assert [u["Key"] for u in uploads] == ["root/acme/db-backups/new"]
    assert [i.key for i in storage.list("")] == ["acme/db-backups/old"]
    assert storage.space_used("acme/") == 8 + 16 * MiB
    assert storage.space_used("other/") == 0
    assert storage.remove_incomplete("other/") == 0

    assert storage.remove_incomplete("acme/") == 16 * MiB
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert storage.space_used("acme/") == 8
    assert read_bytes(storage, "acme/db-backups/old") == b"complete"
