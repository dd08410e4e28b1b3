"""The bounded pipe between a pushing producer and a pulling consumer."""

from __future__ import annotations

import hashlib
import threading
from typing import BinaryIO

import pytest

from daai_backup.streams import CountingReader, produce_into_pipe


def _produce(total: int, piece: int = 70_001):
    def produce(sink: BinaryIO) -> str:
        digest = hashlib.sha256()
        sent = 0
        while sent < total:
            block = bytes([sent % 251]) * min(piece, total - sent)
            sink.write(block)
            digest.update(block)
            sent += len(block)
        return digest.hexdigest()

    return produce


@pytest.mark.parametrize("total", [0, 1, (1 << 20) - 1, 1 << 20, 5 * (1 << 20) + 17])
def test_consumer_gets_every_byte_in_order(total: int) -> None:
    reader, handle = produce_into_pipe(_produce(total))
    digest = hashlib.sha256()
    while chunk := reader.read(65_536):
        digest.update(chunk)
    assert handle.result() == digest.hexdigest()


def test_producer_error_reaches_the_consumer_and_the_handle() -> None:
    def produce(sink: BinaryIO) -> None:
        sink.write(b"x" * (3 << 20))
        raise RuntimeError("dump failed")

    reader, handle = produce_into_pipe(produce)
    with pytest.raises(RuntimeError, match="dump failed"):
        reader.read()
    with pytest.raises(RuntimeError, match="dump failed"):
        handle.result()


def test_producer_is_released_when_the_consumer_stops() -> None:
    wrote_after_close = threading.Event()

    def produce(sink: BinaryIO) -> None:
        for _ in range(1000):  # far more than the pipe holds
            sink.write(b"y" * (1 << 20))
        wrote_after_close.set()

    reader, handle = produce_into_pipe(produce, max_chunks=2)
    reader.read(10)
    reader.close()
    with pytest.raises(BrokenPipeError):
        handle.result()
    assert not wrote_after_close.is_set()


def test_memory_in_flight_is_bounded() -> None:
    """The producer cannot run ahead by more than max_chunks chunks."""
    produced = 0
    gate = threading.Event()

    def produce(sink: BinaryIO) -> None:
        nonlocal produced
        for _ in range(64):
            sink.write(b"z" * (1 << 20))
            produced += 1 << 20
        gate.set()

    reader, handle = produce_into_pipe(produce, max_chunks=4)
    assert not gate.wait(0.5)
    # queue (4) + the chunk blocked in put + the writer's buffer + the reader's buffer
    assert produced <= 8 << 20
    while reader.read(1 << 20):
        pass
    handle.result()
    assert produced == 64 << 20


def test_counting_reader_counts_and_enforces_a_limit() -> None:
    import io

    seen: list[int] = []
    counted = CountingReader(io.BytesIO(b"a" * 1000), on_progress=seen.append)
    assert counted.read() == b"a" * 1000
    assert counted.count == 1000
    assert seen[-1] == 1000

    limited = CountingReader(
        io.BytesIO(b"b" * 1000), limit=500, on_limit=lambda n: OverflowError(f"{n} > 500")
    )
    with pytest.raises(OverflowError):
        limited.read()
