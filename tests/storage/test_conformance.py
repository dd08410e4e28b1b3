"""The storage contract, run unchanged against every backend (local, memory, S3 on moto)."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Backend

from daai_backup.errors import InvalidName, ObjectNotFound
from daai_backup.storage import Storage, put_bytes, read_bytes, total_size

MiB = 1024 * 1024


class Pattern(io.RawIOBase):
    """``size`` bytes of a repeating pattern, produced lazily; raises at ``fail_at`` if set."""

    def __init__(self, size: int, fail_at: int | None = None) -> None:
        self.size = size
        self.fail_at = fail_at
        self.pos = 0
        self.block = bytes(range(256)) * 4096  # 1 MiB

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.fail_at is not None and self.pos >= self.fail_at:
            raise RuntimeError("source failed mid-way")
        n = min(len(buffer), self.size - self.pos, len(self.block))
        if self.fail_at is not None:
            n = min(n, self.fail_at - self.pos) or n
        start = self.pos % len(self.block)
        chunk = (self.block + self.block)[start : start + n]
        buffer[:n] = chunk
        self.pos += n
        return n

    def digest(self) -> str:
        h = hashlib.sha256()
        src = Pattern(self.size)
        while chunk := src.read(MiB):
            h.update(chunk)
        return h.hexdigest()


def test_put_then_read_back_stat_and_list(storage: Storage) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    info = storage.put_stream("a/b/obj.bin", io.BytesIO(b"hello world"), {"kind": "test"})
    assert info.key == "a/b/obj.bin"
    assert info.size == 11
    assert info.metadata == {"kind": "test"}
    assert info.modified.tzinfo is not None
    assert info.modified >= before

    with storage.open_read("a/b/obj.bin") as stream:
        assert stream.read() == b"hello world"

    stat = storage.stat("a/b/obj.bin")
    assert (stat.key, stat.size, dict(stat.metadata)) == ("a/b/obj.bin", 11, {"kind": "test"})

    listed = list(storage.list("a/"))
    assert [(i.key, i.size) for i in listed] == [("a/b/obj.bin", 11)]
    assert listed[0].metadata == {}  # listings never carry metadata (S3 cannot)


def test_large_stream_round_trips_in_chunks(storage: Storage) -> None:
    source = Pattern(20 * MiB + 123)  # above the S3 part size: a real multipart upload
    info = storage.put_stream("big.bin", source)
    assert info.size == 20 * MiB + 123
    h = hashlib.sha256()
    with storage.open_read("big.bin") as stream:
        while chunk := stream.read(MiB):
            assert len(chunk) <= MiB
            h.update(chunk)
    assert h.hexdigest() == Pattern(20 * MiB + 123).digest()


def test_empty_object(storage: Storage) -> None:
    assert storage.put_stream("empty", io.BytesIO(b"")).size == 0
    assert read_bytes(storage, "empty") == b""
    assert [i.key for i in storage.list("")] == ["empty"]


def test_overwrite_replaces_whole_object_and_metadata(storage: Storage) -> None:
    put_bytes(storage, "k", b"first version, longer", {"v": "1"})
    put_bytes(storage, "k", b"second")
    assert read_bytes(storage, "k") == b"second"
    assert dict(storage.stat("k").metadata) == {}
    assert [i.key for i in storage.list("")] == ["k"]


def test_failed_put_leaves_nothing(backend: Backend) -> None:
    storage = backend.storage
    with pytest.raises(RuntimeError, match="mid-way"):  # the source's own error, unchanged
        storage.put_stream("x/partial.bin", Pattern(40 * MiB, fail_at=18 * MiB))
    assert list(storage.list("")) == []
    with pytest.raises(ObjectNotFound):
        storage.stat("x/partial.bin")
    assert backend.raw_leftovers() == []  # not even a temporary file or object
    assert backend.pending_uploads() == []  # S3: the multipart upload was aborted


def test_failed_overwrite_keeps_the_old_object(backend: Backend) -> None:
    storage = backend.storage
    put_bytes(storage, "keep.bin", b"old and complete")
    with pytest.raises(RuntimeError):
        storage.put_stream("keep.bin", Pattern(20 * MiB, fail_at=10 * MiB))
    assert read_bytes(storage, "keep.bin") == b"old and complete"
    assert backend.raw_leftovers() in (["keep.bin"], ["root/keep.bin"])
    assert backend.pending_uploads() == []


def test_list_is_recursive_prefix_filtered_and_paginated(backend: Backend) -> None:
    storage = backend.storage
    keys = [f"many/{i:05d}" for i in range(1050)]  # past S3's 1,000 keys per page
    backend.seed(keys)
    put_bytes(storage, "many-not/x", b"1")
    put_bytes(storage, "other/deep/er/x", b"1")
    assert sorted(i.key for i in storage.list("many/")) == keys
    assert sorted(i.key for i in storage.list("many")) == sorted([*keys, "many-not/x"])
    assert [i.key for i in storage.list("other/de")] == ["other/deep/er/x"]
    assert list(storage.list("nothing/")) == []
    assert total_size(storage, "many/") == 1050


def test_nothing_outside_the_root_is_seen(backend: Backend) -> None:
    backend.put_outside("secret")
    put_bytes(backend.storage, "mine", b"1")
    assert [i.key for i in backend.storage.list("")] == ["mine"]
    with pytest.raises(ObjectNotFound):
        backend.storage.stat("secret")


def test_delete_is_idempotent(storage: Storage) -> None:
    put_bytes(storage, "d/one", b"1", {"a": "b"})
    storage.delete("d/one")
    storage.delete("d/one")
    storage.delete("never/existed")
    assert list(storage.list("")) == []
    with pytest.raises(ObjectNotFound):
        storage.open_read("d/one")


def test_copy_copies_data_and_metadata(storage: Storage) -> None:
    put_bytes(storage, "src", b"payload", {"note": "n"})
    info = storage.copy("src", "dir/dst")
    assert info.key == "dir/dst"
    assert info.size == 7
    assert read_bytes(storage, "dir/dst") == b"payload"
    assert dict(storage.stat("dir/dst").metadata) == {"note": "n"}
    assert read_bytes(storage, "src") == b"payload"
    with pytest.raises(ObjectNotFound):
        storage.copy("missing", "dst2")
    assert sorted(i.key for i in storage.list("")) == ["dir/dst", "src"]


def test_move_replaces_the_target_whole_and_removes_the_source(storage: Storage) -> None:
    put_bytes(storage, "t/db-backups/x.gz.enc", b"old", {"frequency": "manual"})
    put_bytes(storage, "t/db-rekey/db-backups/x.gz.enc", b"new bytes", {"frequency": "daily"})
    info = storage.move("t/db-rekey/db-backups/x.gz.enc", "t/db-backups/x.gz.enc")
    assert info.size == 9
    assert read_bytes(storage, "t/db-backups/x.gz.enc") == b"new bytes"
    assert storage.stat("t/db-backups/x.gz.enc").metadata == {"frequency": "daily"}
    assert [o.key for o in storage.list("t/")] == ["t/db-backups/x.gz.enc"]
    with pytest.raises(ObjectNotFound):
        storage.move("t/db-rekey/db-backups/x.gz.enc", "t/db-backups/x.gz.enc")


def test_missing_objects_raise_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        storage.open_read("nope")
    with pytest.raises(ObjectNotFound):
        storage.stat("nope")
    put_bytes(storage, "dir/x", b"1")
    with pytest.raises(ObjectNotFound):
        storage.stat("dir")  # a "folder" is not an object
    with pytest.raises(ObjectNotFound):
        storage.stat("dir/x/below-an-object")
    with pytest.raises(ObjectNotFound):
        storage.open_read("dir/x/below-an-object")
    storage.delete("dir/x/below-an-object")


BAD_KEYS = [
    "",
    "../x",
    "a/../../b",
    "/etc/passwd",
    "a//b",
    "a/",
    "a\\b",
    "a/\x00b",
    "line\nbreak",
    ".hidden",
    "a/.tmp-x",
    "a/./b",
]


def test_bad_keys_are_refused(backend: Backend) -> None:
    storage = backend.storage
    put_bytes(storage, "ok", b"1")
    for key in BAD_KEYS:
        with pytest.raises(InvalidName):
            storage.put_stream(key, io.BytesIO(b"x"))
        with pytest.raises(InvalidName):
            storage.open_read(key)
        with pytest.raises(InvalidName):
            storage.stat(key)
        with pytest.raises(InvalidName):
            storage.delete(key)
        with pytest.raises(InvalidName):
            storage.copy(key, "ok2")
        with pytest.raises(InvalidName):
            storage.copy("ok", key)
        if key and not key.endswith("/"):  # "a/" is a fine listing prefix
            with pytest.raises(InvalidName):
                list(storage.list(key))
    assert backend.raw_leftovers() in (["ok"], ["root/ok"])


def test_bad_metadata_is_refused(storage: Storage) -> None:
    with pytest.raises(InvalidName):
        put_bytes(storage, "m", b"x", {"Upper": "v"})
    with pytest.raises(InvalidName):
        put_bytes(storage, "m", b"x", {"k": "non-ascii é"})
    assert list(storage.list("")) == []


def test_space_used_counts_complete_objects_under_the_prefix(storage: Storage) -> None:
    put_bytes(storage, "a/one", b"12345")
    put_bytes(storage, "a/two/deep", b"123")
    put_bytes(storage, "ab", b"1234567")
    assert storage.space_used("a/") == 8 == total_size(storage, "a/")
    assert storage.space_used("a") == 15
    assert storage.space_used("") == 15
    assert storage.space_used("nothing/") == 0
    with pytest.raises(InvalidName):
        storage.space_used("../x")


def test_space_used_counts_metadata_a_backend_keeps_beside_the_object(storage: Storage) -> None:
    put_bytes(storage, "m/obj", b"12345", {"note": "n"})
    # Local keeps metadata in a side file, which takes space; S3 and memory keep it in the
    # object itself. Either way, at least the object's bytes count, and nothing else does.
    assert storage.space_used("m/") >= 5
    assert storage.space_used("other/") == 0


def test_remove_incomplete_on_a_clean_store_changes_nothing(backend: Backend) -> None:
    storage = backend.storage
    put_bytes(storage, "c/one", b"1", {"k": "v"})
    put_bytes(storage, "c/two", b"22")
    used = storage.space_used("")
    before = backend.raw_leftovers()
    assert storage.remove_incomplete("") == 0
    assert storage.remove_incomplete("c/") == 0
    assert backend.raw_leftovers() == before
    assert storage.space_used("") == used
    assert dict(storage.stat("c/one").metadata) == {"k": "v"}


def test_leftovers_of_a_killed_write_are_counted_then_removed(backend: Backend) -> None:
    storage = backend.storage
    put_bytes(storage, "t/db/done", b"complete")
    used = storage.space_used("t/")
    left = backend.abandon("t/db/killed", 6 * MiB)
    other = backend.abandon("u/db/killed", 1000)  # outside the prefix swept below

    assert [i.key for i in storage.list("")] == ["t/db/done"]  # never listed
    assert storage.space_used("t/") == used + left  # but it takes space
    assert storage.space_used("t/db/kil") == left  # counted under the key it was for
    assert storage.space_used("u/") == other

    assert storage.remove_incomplete("t/") == left
    assert storage.space_used("t/") == used
    assert read_bytes(storage, "t/db/done") == b"complete"
    assert storage.space_used("u/") == other  # another prefix is left alone
    assert storage.remove_incomplete("t/") == 0  # idempotent

    assert storage.remove_incomplete("") == other
    assert backend.pending_uploads() == []
    assert backend.raw_leftovers() in (["t/db/done"], ["root/t/db/done"])


def test_ping_succeeds(storage: Storage) -> None:
    storage.ping()
