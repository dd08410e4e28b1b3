"""What every task shares: the one retry layer, the data-safe options and the locks.

Retries live here and only here (the engine and the storage backends do not retry whole
operations): a task is retried, with exponential backoff and jitter, only when the error is
*transient* (a :class:`~daai_backup.errors.DaaiBackupError` with ``transient = True``, or a
pymongo/botocore network error that leaked past the engine's translation). Bad input and
permanent conditions (wrong key, quota, permission) fail at once.

Locks are Prefect global concurrency limits taken with ``strict=True`` (a missing limit is an
error, never "unlimited"):

- ``tenant:<id>``, limit 1: backup, restore and retention of one tenant never overlap.
  :func:`tenant_lock` is re-entrant within one flow-run context, so a restore that holds the
  lock can run its safety backup as a subflow without deadlocking on itself.
- ``backups-cluster:default``, limit ``settings.max_concurrent_backups``: concurrent backups
  against the database cluster.

Limits are created on demand (idempotent) so a fresh Prefect server needs no setup step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any, Final

from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists
from prefect.tasks import exponential_backoff

from daai_backup.errors import DaaiBackupError
from daai_backup.settings import Settings

CLUSTER_LIMIT: Final = "backups-cluster:default"
"""One cluster per deployment of the service today; the name leaves room for more."""

LOCK_WAIT_SECONDS: Final = 6 * 3600.0
"""How long an operation waits for its tenant's lock before it fails (a long restore)."""

LEASE_SECONDS: Final = 300.0
"""A crashed holder's slot frees itself after this long; a live holder renews it.

A failed renewal does not abort the holder (``raise_on_lease_renewal_failure=False``): with
``strict=True`` Prefect would otherwise kill a 12-hour backup, or a restore in its swap, on a
brief API outage. The lease only lapses if the API stays unreachable for the whole lease, and
then no other run can take the lock either until it is back."""

RETRIES: Final = 3
BACKOFF_SECONDS: Final = 2.0

#: Options for every task that touches tenant data or keys: retried only when transient,
#: nothing cached and no result persisted (a result could hold data; inputs hold a key ring).
DATA_TASK: Final[dict[str, Any]] = {
    "retries": RETRIES,
    "retry_delay_seconds": exponential_backoff(backoff_factor=BACKOFF_SECONDS),
    "retry_jitter_factor": 0.5,
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "log_prints": False,
}


def is_transient_error(exc: BaseException) -> bool:
    """True for errors where the same call may succeed a moment later."""
    if isinstance(exc, DaaiBackupError):
        return exc.transient
    try:  # leaked driver errors: the engine should translate these, but be safe
        from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout

        if isinstance(exc, (AutoReconnect, ConnectionFailure, NetworkTimeout)):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        from botocore.exceptions import (
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        if isinstance(
            exc,
            (ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError),
        ):
            return True
    except ImportError:  # pragma: no cover
        pass
    return False


def retry_if_transient(task: object, task_run: object, state: Any) -> bool:
    """``retry_condition_fn``: retry a failed task run only for a transient error."""
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return is_transient_error(data)
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:
        return False
    return isinstance(exc, BaseException) and is_transient_error(exc)


def ensure_limit(name: str, limit: int) -> None:
    """Create the global concurrency limit ``name`` with ``limit`` slots, or set its limit."""
    # upsert reads then creates: another run may create it in between, which is fine
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, limit)


def ensure_limits(settings: Settings, tenant_ids: list[str] | tuple[str, ...] = ()) -> None:
    """Create the cluster limit and the given tenants' locks (a deployment's setup step)."""
    ensure_limit(CLUSTER_LIMIT, settings.max_concurrent_backups)
    for tenant_id in tenant_ids:
        ensure_limit(tenant_lock_name(tenant_id), 1)


def tenant_lock_name(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


_held_tenant_locks: ContextVar[frozenset[str]] = ContextVar(
    "daai_backup_held_tenant_locks", default=frozenset()
)


def holds_tenant_lock(tenant_id: str) -> bool:
    """True when this flow run (or a parent flow run in this process) holds the lock."""
    return tenant_id in _held_tenant_locks.get()


@contextmanager
def tenant_lock(
    tenant_id: str, *, wait_seconds: float | None = LOCK_WAIT_SECONDS
) -> Iterator[None]:
    """Hold the tenant's one-operation-at-a-time lock; a no-op if this context holds it."""
    if holds_tenant_lock(tenant_id):
        yield
        return
    name = tenant_lock_name(tenant_id)
    ensure_limit(name, 1)
    with concurrency(
        name,
        occupy=1,
        strict=True,
        timeout_seconds=wait_seconds,
        lease_duration=LEASE_SECONDS,
        raise_on_lease_renewal_failure=False,
    ):
        token = _held_tenant_locks.set(_held_tenant_locks.get() | {tenant_id})
        try:
            yield
        finally:
            _held_tenant_locks.reset(token)


@contextmanager
def cluster_slot(
    settings: Settings, *, wait_seconds: float | None = LOCK_WAIT_SECONDS
) -> Iterator[None]:
    """Hold one of the cluster's backup slots."""
    ensure_limit(CLUSTER_LIMIT, settings.max_concurrent_backups)
    with concurrency(
        CLUSTER_LIMIT,
        occupy=1,
        strict=True,
        timeout_seconds=wait_seconds,
        lease_duration=LEASE_SECONDS,
        raise_on_lease_renewal_failure=False,
    ):
        yield


# --- progress ------------------------------------------------------------------------------

ProgressListener = Callable[[int, int], None]
"""``listener(done_bytes, expected_bytes)``; ``expected_bytes`` is 0 when unknown."""

_listeners: list[ProgressListener] = []
_listeners_lock = threading.Lock()


@contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Receive the byte counts of backups and restores run in this process (a CLI's bar).

    Process-wide rather than per context: tasks may run in worker threads. A listener that
    raises is ignored; it must never break the operation it watches.
    """
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


def report_progress(done: int, expected: int) -> None:
    """Tell every registered listener how far the running operation is."""
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(done, expected)
        except Exception:  # noqa: S112 - a display problem must not fail a backup
            continue
