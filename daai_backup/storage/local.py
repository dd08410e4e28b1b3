"""A folder on a local or mounted file system as storage (``file:///abs/path``).

Keys map to files under the root folder. Writes go to a temporary file in the destination
folder and are renamed into place once complete and synced (see :meth:`put_stream`).
Temporary files (``.tmp-<uuid>-<name>``) and metadata side files (``.meta-<name>.json``)
start with ``.``, which keys may not, so they can neither collide with an object nor be
listed as one.

Leftovers of killed writes. A write holds an exclusive ``flock`` on each of its temporary
files from just after creating it until the file is renamed into place or removed; the
kernel drops the lock when the process exits, however it exits. So a temporary file that
can be locked belongs to a dead write, and :meth:`LocalStorage.remove_incomplete` removes
only those (and none younger than :data:`TEMP_GRACE_SECONDS`, which covers the instant
between creating a file and locking it). A metadata side file whose object does not exist
is an orphan (a write killed between publishing the two, or a delete killed between
removing them) unless a live write of that object is in progress. ``flock`` works on local
file systems; on NFS Linux maps it to a lock the server keeps for the client.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO

from daai_backup.errors import ObjectNotFound, StorageError, TransientStorageError
from daai_backup.storage.base import (
    CHUNK_SIZE,
    ObjectInfo,
    Storage,
    validate_key,
    validate_metadata,
    validate_prefix,
)

_TMP_PREFIX = ".tmp-"
_META_PREFIX = ".meta-"
_TMP_NAME = re.compile(r"^\.tmp-[0-9a-f]{32}-(.+)$")
_META_NAME = re.compile(r"^\.meta-(.+)\.json$")

#: A temporary file younger than this is never removed, even unlocked: a write creates its
#: temporary file and locks it in two steps.
TEMP_GRACE_SECONDS = 10.0


def _owner(name: str) -> str:
    """The object name a file in a folder is for: itself, or what a reserved file serves."""
    while match := _TMP_NAME.match(name) or _META_NAME.match(name):
        name = match.group(1)
    return name


def _translate(exc: OSError, what: str) -> StorageError:
    """Turn an OSError into the error hierarchy with a message a person can act on."""
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return ObjectNotFound(f"{what}: no such object")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"{what}: the disk is full; free space on it or use other storage")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(
            f"{what}: permission denied ({exc.strerror}); let the backup user write the folder"
        )
    if exc.errno in (errno.EIO, errno.ETIMEDOUT, errno.EAGAIN, errno.ESTALE):
        return TransientStorageError(f"{what}: {exc.strerror}; try again")
    return StorageError(f"{what}: {exc.strerror or exc}")


class _SourceFailed(Exception):
    """Carries an error raised by the caller's source stream past the OSError translation."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _fsync_dir(path: Path) -> None:
    """fsync a folder so that a rename or unlink inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage(Storage):
    """Objects as files under ``root`` (an absolute path; created on first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root)
        if not path.is_absolute():
            raise StorageError(f"local storage root {str(root)!r} must be an absolute path")
        self._root = path

    @property
    def root(self) -> Path:
        return self._root

    @property
    def url(self) -> str:
        return self._root.as_uri()

    def _path(self, key: str) -> Path:
        """The file of ``key``; refuses a path that goes through a symbolic link.

        Links below the root are never followed: a tenant's folder (or its ``db-backups``)
        made a link into another tenant's folder would otherwise let one tenant list, read
        and delete the other's backups, whatever the configured roots say. (The root itself
        may be a link: it is resolved once, when the storage URL is.)
        """
        path = self._root
        for part in validate_key(key).split("/"):
            path = path / part
            if path.is_symlink():
                raise _link_refused(path, self.url)
        return path

    def _meta_path(self, path: Path) -> Path:
        return path.with_name(_META_PREFIX + path.name + ".json")

    def _info(self, key: str, path: Path, with_metadata: bool) -> ObjectInfo:
        st = path.stat()
        metadata: Mapping[str, str] = {}
        if with_metadata:
            try:
                metadata = json.loads(self._meta_path(path).read_text("utf-8"))
            except FileNotFoundError:
                metadata = {}
        return ObjectInfo(
            key=key,
            size=st.st_size,
            modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
            metadata=MappingProxyType(dict(metadata)),
        )

    def _write_temp(self, final: Path, source: BinaryIO, locks: contextlib.ExitStack) -> Path:
        """Write ``source`` to a temporary file next to ``final``, synced; return its path.

        The file stays open and locked until ``locks`` closes, so a sweep can tell this live
        write from a killed one (see the module docstring).
        """
        # A temporary name in the *same* folder: rename is atomic only within one file
        # system, and the leading '.' keeps list() from reporting it.
        tmp = final.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}-{final.name}")
        try:
            # 'x' mode: never reuse or follow an existing file at the temporary name.
            # Closed by the caller's ``locks``, after the rename: the lock must outlive it.
            out = locks.enter_context(open(tmp, "xb"))  # noqa: SIM115
            # Held until the write is over; the kernel releases it if this process dies.
            fcntl.flock(out.fileno(), fcntl.LOCK_EX)
            # Copy in bounded chunks so memory stays flat for any size.
            while True:
                try:
                    chunk = source.read(CHUNK_SIZE)
                except Exception as exc:
                    raise _SourceFailed(exc) from exc
                if not chunk:
                    break
                out.write(chunk)
            # Push Python's buffer to the kernel, then the kernel's to the disk, so the
            # rename that publishes the file can never expose data still in flight.
            out.flush()
            os.fsync(out.fileno())
        except BaseException:
            # Any failure (including the source's own error) leaves nothing behind.
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return tmp

    def put_stream(
        self, key: str, source: BinaryIO, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        final = self._path(key)
        meta = validate_metadata(metadata)
        meta_path = self._meta_path(final)
        temps: list[Path] = []
        try:
            # The temporaries stay locked until both are renamed or removed: a side file
            # published before its object is then never taken for an orphan.
            with contextlib.ExitStack() as locks:
                try:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    # Both files are complete and synced before either is published.
                    data_tmp = self._write_temp(final, source, locks)
                    temps.append(data_tmp)
                    if meta:
                        meta_bytes = io.BytesIO(json.dumps(meta).encode())
                        meta_tmp = self._write_temp(meta_path, meta_bytes, locks)
                        temps.append(meta_tmp)
                        os.replace(meta_tmp, meta_path)
                    else:
                        meta_path.unlink(missing_ok=True)  # a stale side file of an older object
                    # Atomic replace: readers see the old object or the complete new one.
                    os.replace(data_tmp, final)
                    temps.clear()
                    # Persist the renames: folder entries live in the folder's own data.
                    _fsync_dir(final.parent)
                finally:
                    for tmp in temps:
                        with contextlib.suppress(OSError):
                            tmp.unlink()
            return self._info(key, final, with_metadata=True)
        except _SourceFailed as failed:
            # The caller's own error, unchanged (its own cause kept).
            raise failed.error from failed.error.__cause__
        except OSError as exc:
            raise _translate(exc, f"cannot write {key!r} in {self.url}") from exc

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")  # the caller closes it
        except IsADirectoryError as exc:
            raise ObjectNotFound(f"cannot read {key!r} in {self.url}: no such object") from exc
        except OSError as exc:
            raise _translate(exc, f"cannot read {key!r} in {self.url}") from exc

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            if not path.is_file():
                raise FileNotFoundError(errno.ENOENT, "not a file", str(path))
            return self._info(key, path, with_metadata=True)
        except OSError as exc:
            raise _translate(exc, f"cannot stat {key!r} in {self.url}") from exc

    def _files(self, prefix: str) -> Iterator[tuple[str, Path]]:
        """``(folder key, path)`` of every file (reserved ones too) where ``prefix`` leads.

        Walks only the deepest folder the prefix names; callers filter by the string prefix.
        Raises OSError for a folder it cannot read: an incomplete walk must fail (retention
        and quota decide from it).
        """
        validate_prefix(prefix)
        folder_key, _, _ = prefix.rpartition("/")
        start = self._path(folder_key) if folder_key else self._root
        if not start.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(start, onerror=_reraise):
            # Never descend into reserved (dot) folders: no key can name one.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            # Nothing this backend wrote is a link, and a link could lead into another
            # tenant's folder: refuse the listing (skipping it would make it incomplete).
            for name in (*dirnames, *filenames):
                if (Path(dirpath) / name).is_symlink():
                    raise _link_refused(Path(dirpath) / name, self.url)
            rel = Path(dirpath).relative_to(self._root).as_posix()
            for name in sorted(filenames):
                yield ("" if rel == "." else rel + "/"), Path(dirpath) / name

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        try:
            for folder, path in self._files(prefix):
                key = folder + path.name
                if path.name.startswith(".") or not key.startswith(prefix):
                    continue
                try:
                    yield self._info(key, path, with_metadata=False)
                except FileNotFoundError:
                    continue  # deleted while we were listing
        except OSError as exc:
            raise _translate(exc, f"cannot list {prefix!r} in {self.url}") from exc

    def space_used(self, prefix: str = "") -> int:
        total = 0
        try:
            for folder, path in self._files(prefix):
                if not (folder + _owner(path.name)).startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    total += path.stat().st_size
        except OSError as exc:
            raise _translate(exc, f"cannot measure {prefix!r} in {self.url}") from exc
        return total

    def remove_incomplete(self, prefix: str = "") -> int:
        now = time.time()
        freed = 0
        try:
            found = [
                path
                for folder, path in self._files(prefix)
                if path.name.startswith(".") and (folder + _owner(path.name)).startswith(prefix)
            ]
            # Temporaries first: a side file is an orphan only if no live write remains.
            for path in found:
                if _TMP_NAME.match(path.name):
                    freed += _remove_if_dead(path, now)
            for path in found:
                if _META_NAME.match(path.name) and not _TMP_NAME.match(path.name):
                    freed += self._remove_orphan_meta(path, now)
        except OSError as exc:
            what = f"cannot remove leftovers under {prefix!r} in {self.url}"
            raise _translate(exc, what) from exc
        return freed

    def _remove_orphan_meta(self, meta: Path, now: float) -> int:
        """Remove a side file whose object does not exist and is not being written."""
        name = _owner(meta.name)
        obj = meta.with_name(name)
        try:
            st = meta.lstat()
        except FileNotFoundError:
            return 0
        if obj.exists() or now - st.st_mtime < TEMP_GRACE_SECONDS:
            return 0
        for sibling in meta.parent.iterdir():
            match = _TMP_NAME.match(sibling.name)
            if match and match.group(1) == name:
                return 0  # that write is alive: a dead one's temporary was removed above
        # Checked again last: a write that just finished has published its object by now.
        if obj.exists():
            return 0
        meta.unlink(missing_ok=True)
        return st.st_size

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            # The object first, its metadata after: a visible object keeps its metadata.
            path.unlink(missing_ok=True)
            self._meta_path(path).unlink(missing_ok=True)
        except (IsADirectoryError, NotADirectoryError):
            return  # a folder, or a path below a file: no such object
        except OSError as exc:
            raise _translate(exc, f"cannot delete {key!r} in {self.url}") from exc

    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        metadata = self.stat(src_key).metadata
        with self.open_read(src_key) as src:
            return self.put_stream(dst_key, src, metadata)

    def move(self, src_key: str, dst_key: str) -> ObjectInfo:
        """Rename ``src_key`` onto ``dst_key`` (one atomic rename, no copy of the data)."""
        src, dst = self._path(src_key), self._path(dst_key)
        try:
            if not src.is_file():
                raise FileNotFoundError(errno.ENOENT, "not a file", str(src))
            dst.parent.mkdir(parents=True, exist_ok=True)
            src_meta, dst_meta = self._meta_path(src), self._meta_path(dst)
            # The metadata first: the object published last keeps metadata beside it.
            if src_meta.exists():
                os.replace(src_meta, dst_meta)
            else:
                dst_meta.unlink(missing_ok=True)
            os.replace(src, dst)
            _fsync_dir(dst.parent)
            if src.parent != dst.parent:
                _fsync_dir(src.parent)
            return self._info(dst_key, dst, with_metadata=True)
        except OSError as exc:
            raise _translate(exc, f"cannot move {src_key!r} to {dst_key!r} in {self.url}") from exc

    def ping(self) -> None:
        # The root may not exist yet (it is created on first write): then the nearest
        # existing folder above it must let us create it.
        probe = self._root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise StorageError(f"storage folder {self._root} is not a folder: fix the storage URL")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise StorageError(
                f"storage folder {probe} is not writable by this user: fix its permissions"
            )
        usage = shutil.disk_usage(probe)
        if usage.free == 0:
            raise StorageError(f"the disk holding {self._root} is full: free space on it")


def _remove_if_dead(tmp: Path, now: float) -> int:
    """Remove a temporary file no live write holds (see the module docstring); its size, or 0."""
    try:
        st = tmp.lstat()
    except FileNotFoundError:
        return 0
    if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < TEMP_GRACE_SECONDS:
        return 0
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return 0  # renamed into place or removed by its write meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # a live write holds it
        # The name may have been reused since it was opened; remove only the file locked.
        try:
            if not os.path.samestat(os.fstat(fd), tmp.lstat()):
                return 0
        except FileNotFoundError:
            return 0
        size = os.fstat(fd).st_size
        tmp.unlink(missing_ok=True)
        return size
    finally:
        os.close(fd)


def _link_refused(path: Path, url: str) -> StorageError:
    return StorageError(
        f"{path} is a symbolic link inside the storage {url}: daai-backup never follows links "
        "there (they could reach another tenant's backups); replace it with a real folder"
    )


def _reraise(exc: OSError) -> None:
    """``os.walk``'s onerror: a folder removed while listing is gone; anything else fails."""
    if isinstance(exc, FileNotFoundError):
        return
    raise exc
