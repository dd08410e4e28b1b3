"""gzip streams for backups: what ``mongodump --archive --gzip`` writes and ``mongorestore`` reads.

The writer produces one standard gzip member (RFC 1952), readable by ``gunzip``, Python's
``gzip`` and Go's ``compress/gzip`` (mongorestore). It compresses with ISA-L (``isal.igzip``)
at level :data:`LEVEL`, chosen by measurement (``docs/decisions.md``, "Compression library and
level"). The reader accepts any gzip stream and turns every decoder failure into one
:class:`~daai_backup.errors.ArchiveCorrupt` with a one-line message.
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import TYPE_CHECKING, BinaryIO, Final, cast

from isal import igzip, isal_zlib

from daai_backup.errors import ArchiveCorrupt

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["LEVEL", "open_gzip_reader", "open_gzip_writer"]

LEVEL: Final = 2
"""ISA-L compression level (0-3)."""

_CORRUPT: Final = "the backup's gzip data is damaged or incomplete ({}): use another backup"

# Decoder failures: BadGzipFile, EOFError for a stream that stops early, and the zlib/ISA-L
# decompressor errors for bad deflate data. Other OSErrors come from ``source`` and pass.
_DECODE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    EOFError,
    gzip.BadGzipFile,
    igzip.BadGzipFile,
    zlib.error,
    cast("type[BaseException]", isal_zlib.error),
)


def open_gzip_writer(sink: BinaryIO) -> BinaryIO:
    """A writable stream gzipping into ``sink``; ``close()`` writes the trailer, keeps ``sink``."""
    gz = igzip.IGzipFile(  # type: ignore[no-untyped-call]
        fileobj=sink, mode="wb", compresslevel=LEVEL, mtime=0
    )
    return cast(BinaryIO, gz)


class _GzipReader(io.RawIOBase):
    """Decompressed bytes of ``source``; decoder errors become ArchiveCorrupt."""

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self._gz = igzip.IGzipFile(fileobj=source, mode="rb")  # type: ignore[no-untyped-call]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer) -> int:
        try:
            return self._gz.readinto(buffer)
        except _DECODE_ERRORS as exc:
            raise ArchiveCorrupt(_CORRUPT.format(_reason(exc))) from exc

    def close(self) -> None:
        # Closes the decoder only; ``source`` belongs to the caller.
        self._gz.close()
        super().close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "it ends before the end of the gzip stream"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.rstrip(".")


def open_gzip_reader(source: BinaryIO) -> BinaryIO:
    """A readable stream of the decompressed bytes of the gzip stream in ``source``.

    Raises ArchiveCorrupt on read for a corrupt, truncated or non-gzip stream (including a
    CRC or length mismatch at the end). Does not close ``source``.
    """
    return io.BufferedReader(_GzipReader(source), buffer_size=128 * 1024)
