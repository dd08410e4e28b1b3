"""Stream plumbing: a bounded pipe between a push-style producer and a pull-style consumer.

A backup is produced by pushing bytes (the archive writer writes into gzip, which writes
into the encrypting writer), while storage uploads pull bytes from a readable file object
(boto3's managed transfer reads its source). :func:`produce_into_pipe` runs the producer in a
thread and hands the consumer a readable end; at most ``max_chunks`` chunks of
``chunk_size`` bytes sit between them, so memory stays flat whatever the size.

Failure rules:
- a producer exception is re-raised from the consumer's next ``read`` (so the upload fails
  and storage discards the partial object), and then from :meth:`ProducerHandle.result`;
- a consumer that stops reading (closes its end) makes the producer's next ``write`` raise
  :class:`BrokenPipeError`, so the producer thread never blocks forever.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable
from typing import BinaryIO, Generic, TypeVar, cast

T = TypeVar("T")

_EOF = object()
_POLL_SECONDS = 0.2


class _PipeState:
    def __init__(self, max_chunks: int) -> None:
        self.queue: queue.Queue[object] = queue.Queue(maxsize=max_chunks)
        self.reader_closed = threading.Event()


class PipeWriter(io.RawIOBase):
    """The producer's end: buffers writes into chunks and blocks while the pipe is full."""

    def __init__(self, state: _PipeState, chunk_size: int) -> None:
        self._state = state
        self._chunk_size = chunk_size
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a closed pipe")
        self._buffer += data
        if len(self._buffer) >= self._chunk_size:
            self._put(bytes(self._buffer))
            self._buffer.clear()
        return len(data)

    def _put(self, item: object) -> None:
        while True:
            if self._state.reader_closed.is_set():
                raise BrokenPipeError("the consumer stopped reading")
            try:
                self._state.queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        if not self.closed:
            try:
                if self._buffer:
                    self._put(bytes(self._buffer))
                    self._buffer.clear()
                self._put(_EOF)
            finally:
                super().close()

    def fail(self, exc: BaseException) -> None:
        """Hand ``exc`` to the consumer instead of an end of stream."""
        if not self.closed:
            self._buffer.clear()
            try:
                self._put(exc)
            except BrokenPipeError:
                pass
            finally:
                super().close()


class PipeReader(io.RawIOBase):
    """The consumer's end: a readable binary file object."""

    def __init__(self, state: _PipeState) -> None:
        self._state = state
        self._pending = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        while not self._pending and not self._eof:
            item = self._state.queue.get()
            if item is _EOF:
                self._eof = True
            elif isinstance(item, BaseException):
                self._eof = True
                raise item
            else:
                self._pending = memoryview(cast(bytes, item))
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._state.reader_closed.set()
        super().close()


class ProducerHandle(Generic[T]):
    """The producer thread; :meth:`result` joins it and returns or re-raises."""

    def __init__(self, thread: threading.Thread, box: dict[str, object]) -> None:
        self._thread = thread
        self._box = box

    def result(self) -> T:
        self._thread.join()
        if "error" in self._box:
            raise cast(BaseException, self._box["error"])
        return cast(T, self._box["value"])


def produce_into_pipe(
    produce: Callable[[BinaryIO], T],
    *,
    chunk_size: int = 1 << 20,
    max_chunks: int = 8,
    name: str = "daai-producer",
) -> tuple[BinaryIO, ProducerHandle[T]]:
    """Run ``produce(writer)`` in a thread; return the readable end and a handle to it.

    The writer is closed (end of stream) when ``produce`` returns, or failed with its
    exception when it raises.
    """
    state = _PipeState(max_chunks)
    writer = PipeWriter(state, chunk_size)
    reader = PipeReader(state)
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = produce(cast(BinaryIO, writer))
            writer.close()
        except BaseException as exc:
            box["error"] = exc
            writer.fail(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    buffered = io.BufferedReader(reader, buffer_size=chunk_size)
    return cast(BinaryIO, buffered), ProducerHandle(thread, box)


class CountingReader(io.RawIOBase):
    """Counts bytes read through it and calls ``on_progress(total)``; can cap the total.

    ``limit`` makes a read past that many bytes raise ``on_limit()``'s exception: the
    backup's hard stop when the real size outgrows the quota estimate. ``on_end()`` runs
    when the source reports its end, before the consumer sees it: a storage upload reads to
    the end before it commits, so an exception raised there stops the commit (the backup's
    last check that its tenant lease is still held).
    """

    def __init__(
        self,
        source: BinaryIO,
        *,
        on_progress: Callable[[int], None] | None = None,
        limit: int | None = None,
        on_limit: Callable[[int], BaseException] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self._on_progress = on_progress
        self._limit = limit
        self._on_limit = on_limit
        self._on_end = on_end
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        n = len(data)
        memoryview(buffer).cast("B")[:n] = data
        self.count += n
        if self._limit is not None and self.count > self._limit and self._on_limit is not None:
            raise self._on_limit(self.count)
        if self._on_progress is not None and n:
            self._on_progress(self.count)
        if not n and len(buffer) and self._on_end is not None:
            self._on_end()
        return n
