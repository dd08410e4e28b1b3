"""What every task shares: the one retry layer, the data-safe options and the locks.

Retries live here and only here (the engine and the storage backends do not retry whole
operations): a task is retried, with exponential backoff and jitter, only when the error is
*transient* (a :class:`~daai_backup.errors.DaaiBackupError` with ``transient = True``, or a
pymongo/botocore network error that leaked past the engine's translation). Bad input and
permanent conditions (wrong key, quota, permission) fail at once.

Locks:

- the tenant's lease (:func:`tenant_lock`, over :mod:`daai_backup.lease`): backup, restore
  and retention of one tenant never overlap. It lives in a control database of the tenants'
  own MongoDB cluster, so it holds whatever Prefect server (or CLI with its private temporary
  server) started the run; a killed run's lease frees itself within 30 s. Re-entrant within
  one flow-run context, so a restore that holds it can run its safety backup as a subflow.
- ``backups-cluster:default``, a Prefect global concurrency limit of
  ``settings.max_concurrent_backups`` slots, taken with ``strict=True`` (a missing limit is an
  error, never "unlimited") and created on demand (idempotent): concurrent backups against the
  database cluster. This is throttling, not exclusion: a run from another Prefect server
  escapes it, which costs load, never correctness.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, Final

from prefect import get_run_logger
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists
from prefect.tasks import exponential_backoff

from daai_backup import lease, maintenance
from daai_backup.errors import DaaiBackupError
from daai_backup.settings import Settings

if TYPE_CHECKING:
    from daai_backup.operations import EngineContext

CLUSTER_LIMIT: Final = "backups-cluster:default"
"""One cluster per deployment of the service today; the name leaves room for more."""

LOCK_WAIT_SECONDS: Final = lease.DEFAULT_WAIT_SECONDS
"""How long an operation waits for its tenant's lease, or a cluster slot, before it fails."""

SLOT_LEASE_SECONDS: Final = 60.0
"""A killed run's cluster slot frees itself after this long (Prefect's minimum); a live
holder renews it.

A failed renewal does not abort the holder (``raise_on_lease_renewal_failure=False``): with
``strict=True`` Prefect would otherwise kill a 12-hour backup on a brief API outage. The slot
is throttling only (the tenant lease is what excludes), so a slot that lapses during an outage
costs at most one backup too many against the cluster."""

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


def ensure_limits(settings: Settings) -> None:
    """Create the cluster's backup limit (a deployment's setup step; flows do it on demand)."""
    ensure_limit(CLUSTER_LIMIT, settings.max_concurrent_backups)


def current_run_label() -> str | None:
    """``<flow run name>, id <flow run id>`` of the flow run in this context, else None."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return None if run is None else f"{run.name}, id {run.id}"


@contextmanager
def tenant_lock(
    ctx: EngineContext,
    tenant_id: str,
    operation: str,
    *,
    detail: str | None = None,
    wait_seconds: float = LOCK_WAIT_SECONDS,
) -> Iterator[lease.Lease]:
    """Hold the tenant's lease (one operation per tenant); a no-op if this context holds it.

    While another operation holds it, the flow run's log says who, every 10 s. Call
    ``lock.check()`` before a step that must not run once another operation may have started.
    """
    logger = get_run_logger()

    def on_wait(holder: lease.LeaseInfo, waited: float) -> None:
        logger.info("tenant %s: %s", tenant_id, lease.waiting_message(holder, waited))
        report_wait(holder, waited)

    with lease.tenant_lease(
        ctx.mongo_client,
        ctx.settings,
        tenant_id,
        operation,
        detail=detail,
        owner_run=current_run_label(),
        wait_seconds=wait_seconds,
        on_wait=on_wait,
    ) as held:
        try:  # a maintenance flag a killed restore left is stale now: this holder is next
            if maintenance.clear_stale(ctx.mongo_client, ctx.settings, tenant_id, held.token):
                logger.info("tenant %s: removed a stale maintenance record", tenant_id)
        except DaaiBackupError as exc:  # readers ignore a stale record anyway
            logger.warning("tenant %s: stale maintenance record not removed: %s", tenant_id, exc)
        if held.waited_seconds >= 1:
            logger.info(
                "tenant %s: took the lease after waiting %s",
                tenant_id,
                lease.format_duration(held.waited_seconds),
            )
        yield held


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
        lease_duration=SLOT_LEASE_SECONDS,
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


WaitListener = Callable[["lease.LeaseInfo", float], None]
"""``listener(holder, waited_seconds)``: an operation of this process waits for ``holder``."""

_wait_listeners: list[WaitListener] = []


@contextmanager
def wait_listener(listener: WaitListener) -> Iterator[None]:
    """Be told when an operation run in this process waits for a tenant's lease held by
    another one (at once, then every 10 s): a CLI's "waiting for the restore of acme to
    finish (12 s)". Process-wide like :func:`progress_listener`; a listener that raises is
    ignored."""
    with _listeners_lock:
        _wait_listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _wait_listeners.remove(listener)


def report_wait(holder: lease.LeaseInfo, waited: float) -> None:
    """Tell every registered wait listener who is waited for and how long so far."""
    with _listeners_lock:
        listeners = list(_wait_listeners)
    for listener in listeners:
        try:
            listener(holder, waited)
        except Exception:  # noqa: S112 - a display problem must not fail a backup
            continue
