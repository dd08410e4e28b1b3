"""Sync's writes go out several at a time, every one is sent, and an error still surfaces."""

from __future__ import annotations

import threading
import time

import pytest

from deployments.sync import _run_bounded

LIMIT = 8


def test_writes_overlap_up_to_the_bound_and_all_run() -> None:
    lock = threading.Lock()
    running = peak = 0
    done: list[int] = []

    def write(i: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)  # a round trip to the server
        with lock:
            running -= 1
            done.append(i)

    _run_bounded([lambda i=i: write(i) for i in range(40)], LIMIT)
    assert sorted(done) == list(range(40))
    assert 1 < peak <= LIMIT

    done.clear()
    peak = 0
    _run_bounded([lambda i=i: write(i) for i in range(5)], 1)  # the SQLite default
    assert done == list(range(5))
    assert peak == 1


def test_an_error_is_raised_after_the_other_writes_finish() -> None:
    done: list[int] = []

    def fail() -> None:
        raise RuntimeError("server said no")

    writes = [lambda i=i: done.append(i) for i in range(10)]
    with pytest.raises(RuntimeError, match="server said no"):
        _run_bounded([fail, *writes], LIMIT)
    assert sorted(done) == list(range(10))
