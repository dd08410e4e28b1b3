"""The tenant lease against a real server (SecantusDB): exclusion, re-entrancy, release,
renewal, a holder killed with SIGKILL, waiting, a lost lease and a network partition.

Every holder that must not share a context with another runs in its own thread with its own
``MongoClient`` (threads start with an empty context, as separate flow runs do). TTLs are
seconds here, not the default 30 s, through the ``ttl_seconds`` parameter.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from daai_backup.errors import LeaseLost, LeaseTimeout
from daai_backup.lease import (
    COLLECTION,
    INDEX_NAME,
    Lease,
    LeaseInfo,
    current_holder,
    current_holders,
    ensure_indexes,
    held_lease,
    lease_id,
    leases_collection,
    tenant_lease,
    waiting_message,
)
from daai_backup.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def control_db(mongo_client: Any) -> Iterator[str]:
    """A control database of this test's own."""
    name = f"ctl_{uuid.uuid4().hex[:10]}"
    yield name
    mongo_client.drop_database(name)


@pytest.fixture
def new_client(mongo_uri: str) -> Iterator[Callable[[], MongoClient[dict[str, Any]]]]:
    """Separate clients (connection pools) for separate holders; closed after the test."""
    made: list[MongoClient[dict[str, Any]]] = []

    def make() -> MongoClient[dict[str, Any]]:
        made.append(MongoClient(mongo_uri))
        return made[-1]

    yield make
    for client in made:
        client.close()


class InThread:
    """Run ``fn`` in a thread of its own (a fresh context); keep its result or error."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = fn()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 30) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def take_once(client: MongoClient[dict[str, Any]], db: str, operation: str, **kw: Any) -> None:
    """Take the ``acme`` lease and let it go at once."""
    with tenant_lease(client, db, "acme", operation, **kw):
        pass


def test_holders_in_separate_threads_and_clients_never_overlap(
    control_db: str, new_client: Callable[[], MongoClient[dict[str, Any]]]
) -> None:
    inside = 0
    most = 0
    done: list[int] = []
    guard = threading.Lock()

    def work(i: int) -> None:
        nonlocal inside, most
        with tenant_lease(new_client(), control_db, "acme", "backup", wait_seconds=20):
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.3)
            with guard:
                inside -= 1
            done.append(i)

    runs = [InThread(lambda i=i: work(i)) for i in range(4)]
    for run in runs:
        run.join()
    assert sorted(done) == [0, 1, 2, 3]
    assert most == 1


def test_lease_is_reentrant_in_one_context_and_not_in_another(
    control_db: str,
    mongo_client: Any,
    new_client: Callable[[], MongoClient[dict[str, Any]]],
) -> None:
    leases = leases_collection(mongo_client, control_db)
    with tenant_lease(mongo_client, control_db, "acme", "restore", detail="f.gz.enc") as outer:
        with tenant_lease(mongo_client, control_db, "acme", "backup") as inner:
            assert inner is outer
            assert leases.count_documents({}) == 1
        assert held_lease(control_db, "acme") is outer
        holder = current_holder(mongo_client, control_db, "acme")
        assert holder is not None
        assert holder.holder == outer.token  # the inner exit released nothing
        assert holder.operation == "restore"
        # A fresh context waits like anyone else, then gives up.
        other = InThread(lambda: take_once(new_client(), control_db, "backup", wait_seconds=0.3))
        with pytest.raises(LeaseTimeout):
            other.join()
        # another tenant is independent
        with tenant_lease(mongo_client, control_db, "globex", "backup", wait_seconds=0):
            assert leases.count_documents({}) == 2
            # All holders in one query (the fleet view); a tenant nobody holds is left out.
            holders = current_holders(mongo_client, control_db, ["acme", "globex", "initech"])
            assert {t: h.operation for t, h in holders.items()} == {
                "acme": "restore",
                "globex": "backup",
            }
    assert held_lease(control_db, "acme") is None
    assert leases.count_documents({}) == 0


def test_release_deletes_the_lease_even_when_the_block_fails(
    control_db: str, mongo_client: Any
) -> None:
    settings = Settings(control_database=control_db)

    def fail_inside() -> None:
        with tenant_lease(mongo_client, settings, "acme", "retention"):
            assert current_holder(mongo_client, settings, "acme") is not None
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert current_holder(mongo_client, settings, "acme") is None
    assert leases_collection(mongo_client, settings).count_documents({}) == 0
    with tenant_lease(mongo_client, settings, "acme", "backup", wait_seconds=0) as again:
        assert again.waited_seconds < 1


def test_renewal_keeps_the_lease_beyond_its_ttl(
    control_db: str,
    mongo_client: Any,
    new_client: Callable[[], MongoClient[dict[str, Any]]],
) -> None:
    with tenant_lease(mongo_client, control_db, "acme", "backup", ttl_seconds=1.5) as held:
        time.sleep(3.5)  # more than twice the TTL
        held.check()
        assert not held.lost
        other = InThread(lambda: take_once(new_client(), control_db, "restore", wait_seconds=0))
        with pytest.raises(LeaseTimeout):
            other.join()
        doc = leases_collection(mongo_client, control_db).find_one({"_id": lease_id("acme")})
        assert doc is not None
        assert doc["renewed_at"] > doc["acquired_at"]


CHILD = """
import sys, time
from pymongo import MongoClient
from daai_backup.lease import tenant_lease

uri, db, tenant = sys.argv[1:4]
with tenant_lease(MongoClient(uri), db, tenant, "backup", owner_run="child", ttl_seconds=3):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_holder_killed_with_sigkill_frees_the_lease_within_its_ttl(
    control_db: str, mongo_uri: str, mongo_client: Any
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mongo_uri, control_db, "acme"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        holder = current_holder(mongo_client, control_db, "acme")
        assert holder is not None
        assert (holder.pid, holder.run) == (child.pid, "child")
        time.sleep(1.2)  # it renews meanwhile (every second)
        os.kill(child.pid, signal.SIGKILL)
        killed = time.monotonic()
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    with tenant_lease(mongo_client, control_db, "acme", "restore", wait_seconds=10) as mine:
        freed_after = time.monotonic() - killed
        assert mine.waited_seconds > 0.5
    assert freed_after < 3 + 2.5  # TTL, plus one poll at most 2 s apart


def test_waiting_is_reported_through_on_wait(
    control_db: str,
    mongo_client: Any,
    new_client: Callable[[], MongoClient[dict[str, Any]]],
) -> None:
    calls: list[tuple[LeaseInfo, float]] = []

    def wait_for_it() -> float:
        with tenant_lease(
            new_client(),
            control_db,
            "acme",
            "backup",
            wait_seconds=20,
            on_wait=lambda holder, waited: calls.append((holder, waited)),
            report_every=0.5,
        ) as mine:
            return mine.waited_seconds

    with tenant_lease(
        mongo_client, control_db, "acme", "restore", detail="manual_x.gz.enc", owner_run="r-1"
    ) as held:
        waiter = InThread(wait_for_it)
        # Polls back off 0.1 s -> 2 s with +-25 % jitter, and a report comes at a poll at
        # least 0.5 s after the last one: the third report lands by about 1.9 s after the
        # waiter starts, which may itself start late on a loaded machine; 3 s leaves room.
        time.sleep(3.0)
        assert waiter.thread.is_alive()
    waited = waiter.join()
    assert waited >= 2.5
    assert 3 <= len(calls) <= 6  # at once, then at most every 0.5 s
    assert calls[0][1] < 0.5
    assert [w for _, w in calls] == sorted(w for _, w in calls)
    holder, so_far = calls[-1]
    assert (holder.holder, holder.operation, holder.detail) == (
        held.token,
        "restore",
        "manual_x.gz.enc",
    )
    assert (holder.host, holder.pid, holder.run) == (socket.gethostname(), os.getpid(), "r-1")
    started = holder.acquired_at.strftime("%H:%M")
    assert waiting_message(holder, so_far) == (
        f"waiting for the restore of acme (manual_x.gz.enc; started {started} UTC on host "
        f"{socket.gethostname()}, pid {os.getpid()}, run r-1) to finish: "
        f"{round(so_far)} s so far"
    )


def test_waiting_gives_up_with_a_message_naming_the_holder(
    control_db: str,
    mongo_client: Any,
    new_client: Callable[[], MongoClient[dict[str, Any]]],
) -> None:
    with tenant_lease(mongo_client, control_db, "acme", "restore", owner_run="restore-acme"):
        other = InThread(lambda: take_once(new_client(), control_db, "backup", wait_seconds=0.5))
        with pytest.raises(LeaseTimeout) as caught:
            other.join()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("gave up waiting for the lease of tenant 'acme' after ")
    assert "the restore of acme (started " in message
    assert f"on host {socket.gethostname()}, pid {os.getpid()}, run restore-acme)" in message
    assert message.endswith("still holds it; try again once it has finished")


def test_a_lease_taken_over_is_lost_and_its_release_spares_the_new_holder(
    control_db: str, mongo_client: Any
) -> None:
    leases = leases_collection(mongo_client, control_db)
    with tenant_lease(
        mongo_client, control_db, "acme", "backup", ttl_seconds=3, renew_every=0.3
    ) as held:
        held.check()
        # What a successor writes once it took over an expired lease.
        leases.update_one(
            {"_id": lease_id("acme")},
            {"$set": {"holder": "successor", "operation": "restore", "owner": {"host": "h2"}}},
        )
        deadline = time.monotonic() + 3
        while not held.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LeaseLost) as caught:
            held.check()
    message = str(caught.value)
    assert "\n" not in message
    assert (
        "the backup of tenant 'acme' lost its lease (taken over by the restore of acme" in message
    )
    assert message.endswith("run it again")
    doc = leases.find_one({"_id": lease_id("acme")})
    assert doc is not None
    assert doc["holder"] == "successor"


class Proxy:
    """A TCP forwarder that can drop every byte, as a network partition does."""

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.cut = threading.Event()
        self._sockets: list[socket.socket] = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self._server.accept()
            except OSError:
                return
            far = socket.create_connection(self._target)
            self._sockets += [near, far]
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    return
                if not self.cut.is_set():
                    dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


def test_a_partitioned_holder_marks_its_lease_lost_before_anyone_can_take_it(
    control_db: str, mongo_uri: str, mongo_client: Any
) -> None:
    port = int(mongo_uri.rstrip("/").rsplit(":", 1)[1])
    proxy = Proxy(port)
    far: MongoClient[dict[str, Any]] = MongoClient(
        f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true"
    )
    try:
        with tenant_lease(far, control_db, "acme", "restore", ttl_seconds=3) as held:
            time.sleep(0.5)
            proxy.cut.set()
            cut = time.monotonic()
            while not held.lost:
                time.sleep(0.02)
            lost_after = time.monotonic() - cut
            # Lost by the holder's own reckoning while the server still says it holds it.
            holder = current_holder(mongo_client, control_db, "acme")
            assert holder is not None
            assert holder.holder == held.token
            with pytest.raises(LeaseLost, match="not renewed for 3 s"):
                held.check()
            with tenant_lease(mongo_client, control_db, "acme", "backup", wait_seconds=5) as next_:
                taken_after = time.monotonic() - cut
                proxy.cut.clear()
        assert lost_after < taken_after
        assert lost_after <= 3
        assert next_.waited_seconds > 0
    finally:
        far.close()
        proxy.close()
    assert leases_collection(mongo_client, control_db).count_documents({}) == 0


def test_an_expired_document_is_nobody_s_and_is_taken_over(
    control_db: str, mongo_client: Any
) -> None:
    leases = leases_collection(mongo_client, control_db)
    leases.insert_one(
        {"_id": lease_id("acme"), "holder": "gone", "expires_at": datetime(2000, 1, 1, tzinfo=UTC)}
    )
    assert current_holder(mongo_client, control_db, "acme") is None
    with tenant_lease(mongo_client, control_db, "acme", "backup", wait_seconds=0) as held:
        holder = current_holder(mongo_client, control_db, "acme")
        assert holder is not None
        assert holder.holder == held.token
    assert leases.count_documents({}) == 0


def test_the_cleanup_index_is_created_once_and_idempotently(
    control_db: str, mongo_client: Any, new_client: Callable[[], MongoClient[dict[str, Any]]]
) -> None:
    with tenant_lease(mongo_client, control_db, "acme", "backup"):
        pass
    ensure_indexes(new_client(), control_db)  # another client: creates it again, harmlessly
    indexes = {i["name"]: i for i in mongo_client[control_db][COLLECTION].list_indexes()}
    assert indexes[INDEX_NAME]["expireAfterSeconds"] == 24 * 3600


def test_a_renewal_interval_not_shorter_than_the_ttl_is_refused(
    control_db: str, mongo_client: Any
) -> None:
    with pytest.raises(ValueError, match="must be shorter than its TTL"):
        Lease(
            leases_collection(mongo_client, control_db),
            "acme",
            "backup",
            ttl_seconds=5,
            renew_every=5,
        )
