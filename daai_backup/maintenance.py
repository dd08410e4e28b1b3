"""A restore as a maintenance window: the flag the suite reads, its handshake, lost writes.

**The flag.** While a restore may touch a tenant's live database, one document per tenant
lives in ``<control database>.maintenance`` (``DAAI_BACKUP_CONTROL_DATABASE``, next to the
leases of :mod:`daai_backup.lease`)::

    {_id: "tenant:<id>", tenant: <id>, operation: "restore", detail: <file or moment>,
     actor, run, since, expected_end, lease: <holder token of the restore's lease>}

It is written under the tenant's lease and names that lease's holder token. A record is
*live* only while a lease with that token is live (by the server's clock, as the lease
decides): a restore killed with ``kill -9`` stops renewing, its lease expires within the
lease TTL (30 s), and from then on every reader ignores its record
(:func:`current_records`). The record itself is deleted when the window ends normally
(:func:`end`), and a stale one by the tenant's next operation when it takes the lease
(:func:`clear_stale`, called by ``tasks.common.tenant_lock``); nothing depends on that
cleanup to be right.

**The handshake** (:func:`request_handshake`): when ``DAAI_BACKUP_MAINTENANCE_WEBHOOK_URL`` is
set, one ``POST`` of :func:`handshake_body` (JSON), with ``Authorization: Bearer <token>`` when
``DAAI_BACKUP_MAINTENANCE_WEBHOOK_TOKEN`` is set; the suite confirms by answering 2xx with a
JSON body ``{"maintenance": true}`` within ``DAAI_BACKUP_MAINTENANCE_WEBHOOK_TIMEOUT_SECONDS``
(so it puts the workspace in maintenance before it answers). Anything else (no answer in
time, refused connection, another status or body) raises
:class:`~daai_backup.errors.MaintenanceNotConfirmed`, with the reason in one line. The token
is never logged, never part of an error message and never a flow parameter.

**Lost writes** (:func:`count_writes_since`): the writes the safety backup does not hold are
those the live database took after the safety backup's snapshot (its manifest's
``cluster_time``) and before the swap. They are counted from a change stream on the tenant's
database opened at that cluster time, right before the swap: exact and immediate, where the
continuous change capture flushes its segments up to a minute late. The restore's own
staging collections are not counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import pymongo

from daai_backup.errors import MaintenanceNotConfirmed
from daai_backup.lease import ATTEMPT_TIMEOUT_SECONDS, lease_id, leases_collection
from daai_backup.mongo.namespaces import RESERVED_PREFIX
from daai_backup.mongo.translate import translated

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from pymongo import MongoClient
    from pymongo.collection import Collection

    from daai_backup.settings import Settings

COLLECTION: Final = "maintenance"
CONFIRMED: Final = {"maintenance": True}
"""The JSON body of a 2xx answer that confirms the handshake."""
WRITE_EVENTS: Final = ("insert", "update", "replace", "delete")
"""Change stream operations counted as a user's write."""


@dataclass(frozen=True)
class MaintenanceRecord:
    """A tenant's maintenance window as recorded: what, since when, by whom, until when."""

    tenant_id: str
    operation: str
    detail: str | None
    actor: str | None
    run: str | None
    since: datetime
    expected_end: datetime | None
    lease: str

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> MaintenanceRecord:
        return cls(
            tenant_id=str(doc["tenant"]),
            operation=str(doc.get("operation") or "restore"),
            detail=doc.get("detail"),
            actor=doc.get("actor"),
            run=doc.get("run"),
            since=_utc(doc["since"]),
            expected_end=_utc(doc["expected_end"]) if doc.get("expected_end") else None,
            lease=str(doc.get("lease", "")),
        )

    def describe(self, now: datetime | None = None) -> str:
        """``restore of <file> by <actor> since 12:01 UTC, expected end 12:09 UTC``."""
        text = f"{self.operation} of {self.detail}" if self.detail else self.operation
        if self.actor:
            text += f" by {self.actor}"
        text += f", since {self.since:%H:%M:%S} UTC"
        if self.expected_end is not None:
            late = now is not None and now > self.expected_end
            text += f", {'expected end passed at' if late else 'expected end'} "
            text += f"{self.expected_end:%H:%M:%S} UTC"
        return text

    def to_json(self) -> dict[str, Any]:
        """The record as the CLI's ``--json`` and the fleet's JSON show it (no lease token)."""
        return {
            "operation": self.operation,
            "detail": self.detail,
            "actor": self.actor,
            "run": self.run,
            "since": self.since.isoformat(timespec="seconds"),
            "expected_end": (
                None if self.expected_end is None else self.expected_end.isoformat("T", "seconds")
            ),
        }


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"not a date: {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _database(settings_or_db_name: Settings | str) -> str:
    if isinstance(settings_or_db_name, str):
        return settings_or_db_name
    return settings_or_db_name.control_database


def maintenance_collection(
    client: MongoClient[Any], settings_or_db_name: Settings | str
) -> Collection[Any]:
    """``<control database>.maintenance``."""
    from pymongo import WriteConcern

    return client[_database(settings_or_db_name)].get_collection(
        COLLECTION, write_concern=WriteConcern("majority")
    )


def begin(
    client: MongoClient[Any],
    settings_or_db_name: Settings | str,
    tenant_id: str,
    *,
    lease_token: str,
    operation: str,
    detail: str | None,
    actor: str | None,
    run: str | None,
    expected_end: datetime | None,
    now: datetime | None = None,
) -> MaintenanceRecord:
    """Record that the tenant is in maintenance, tied to the lease holding ``lease_token``."""
    doc = {
        "tenant": tenant_id,
        "operation": operation,
        "detail": detail,
        "actor": actor,
        "run": run,
        "since": now or datetime.now(UTC),
        "expected_end": expected_end,
        "lease": lease_token,
    }
    with translated(f"recording the maintenance window of tenant {tenant_id!r}"):
        maintenance_collection(client, settings_or_db_name).replace_one(
            {"_id": lease_id(tenant_id)}, doc, upsert=True
        )
    return MaintenanceRecord.from_document(doc)


def end(
    client: MongoClient[Any], settings_or_db_name: Settings | str, tenant_id: str, lease_token: str
) -> bool:
    """Remove the tenant's record if it is this lease's (never a successor's); whether it was."""
    with (
        translated(f"ending the maintenance window of tenant {tenant_id!r}"),
        pymongo.timeout(ATTEMPT_TIMEOUT_SECONDS),
    ):
        result = maintenance_collection(client, settings_or_db_name).delete_one(
            {"_id": lease_id(tenant_id), "lease": lease_token}
        )
    return result.deleted_count == 1


def clear_stale(
    client: MongoClient[Any], settings_or_db_name: Settings | str, tenant_id: str, lease_token: str
) -> bool:
    """Remove a record another holder left (call holding the tenant's lease: its holder is
    gone, so its window is over); whether there was one."""
    with translated(f"clearing the maintenance record of tenant {tenant_id!r}"):
        result = maintenance_collection(client, settings_or_db_name).delete_one(
            {"_id": lease_id(tenant_id), "lease": {"$ne": lease_token}}
        )
    return result.deleted_count == 1


def current_records(
    client: MongoClient[Any], settings_or_db_name: Settings | str, tenant_ids: Iterable[str]
) -> dict[str, MaintenanceRecord]:
    """The tenants in maintenance now: records whose restore still holds the tenant's lease.

    A record whose lease expired or passed to another holder (a killed restore) is stale
    and left out. Two queries (records, then their leases), each by ``_id``.
    """
    ids = [lease_id(t) for t in tenant_ids]
    if not ids:
        return {}
    with translated("reading the tenants' maintenance records"):
        docs = list(maintenance_collection(client, settings_or_db_name).find({"_id": {"$in": ids}}))
        if not docs:
            return {}
        live = {
            (str(d["_id"]), str(d.get("holder")))
            for d in leases_collection(client, settings_or_db_name).find(
                {
                    "_id": {"$in": [d["_id"] for d in docs]},
                    # As the lease decides: server time, compared as milliseconds.
                    "$expr": {"$gt": [{"$toLong": "$expires_at"}, {"$toLong": "$$NOW"}]},
                },
                {"holder": 1},
            )
        }
    records = (
        MaintenanceRecord.from_document(d) for d in docs if (str(d["_id"]), d.get("lease")) in live
    )
    return {r.tenant_id: r for r in records}


def swap_started(client: MongoClient[Any], database: str) -> bool:
    """Whether a swap of ``database`` stopped mid-way (its journal says so): the live
    database changed, and the next restore finishes it."""
    from daai_backup.mongo.journal import pending_swap

    with translated(f"reading the swap journal of {database!r}"):
        return pending_swap(client[database]) is not None


# --- the handshake ---------------------------------------------------------------------------


def handshake_body(
    *,
    tenant_id: str,
    workspace: str,
    operation: str,
    detail: str | None,
    actor: str | None,
    run: str | None,
    expected_end: datetime | None,
) -> dict[str, Any]:
    """What the webhook receives: which workspace goes into maintenance, why, until when."""
    return {
        "type": "daai-backup.maintenance-request",
        "tenant": tenant_id,
        "workspace": workspace,
        "operation": operation,
        "detail": detail,
        "actor": actor,
        "run": run,
        "expected_end": None if expected_end is None else expected_end.isoformat("T", "seconds"),
        "confirm_with": CONFIRMED,
    }


def request_handshake(
    url: str, token: str | None, timeout_seconds: float, body: Mapping[str, Any]
) -> None:
    """POST ``body`` to the suite's webhook; return once it confirmed maintenance.

    Raises ``MaintenanceNotConfirmed`` (one line, never the token) for anything but a 2xx
    answer of ``{"maintenance": true}`` within ``timeout_seconds``.
    """
    import httpx

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    tenant = body.get("tenant")
    where = _safe_url(url)
    prefix = f"the suite did not confirm the maintenance of {tenant!r} ({where})"
    suffix = "nothing changed; put the workspace in maintenance (or fix the webhook) and retry"
    try:
        response = httpx.post(
            url,
            content=json.dumps(dict(body)).encode(),
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
        )
    except httpx.TimeoutException:
        raise MaintenanceNotConfirmed(
            f"{prefix}: no answer within {timeout_seconds:g} s; {suffix}"
        ) from None
    except httpx.HTTPError as exc:
        raise MaintenanceNotConfirmed(
            f"{prefix}: {type(exc).__name__} connecting; {suffix}"
        ) from None
    if not response.is_success:
        raise MaintenanceNotConfirmed(
            f"{prefix}: it answered HTTP {response.status_code}; {suffix}"
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if answer != CONFIRMED and not (isinstance(answer, dict) and answer.get("maintenance") is True):
        raise MaintenanceNotConfirmed(
            f'{prefix}: its answer was not {{"maintenance": true}}; {suffix}'
        )


def _safe_url(url: str) -> str:
    """The webhook's scheme, host and path, without credentials or a query (for messages)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# --- lost writes -----------------------------------------------------------------------------


def count_writes_since(
    client: MongoClient[Any], database: str, cluster_time: tuple[int, int]
) -> int:
    """The writes to ``database`` after ``cluster_time`` up to now (inserts, updates,
    replaces and deletes of the users' collections, not the restore's staging ones).

    Reads a change stream opened at the time right after ``cluster_time`` until it has
    nothing more to give (each batch waits at most 0.2 s for more).
    """
    from bson.timestamp import Timestamp

    t, i = cluster_time
    pipeline: list[dict[str, Any]] = [
        {"$match": {"operationType": {"$in": list(WRITE_EVENTS)}}},
        {"$project": {"ns": 1, "operationType": 1}},
    ]
    count = 0
    with (
        translated(f"counting the writes to {database!r} since the safety backup"),
        client[database].watch(
            pipeline, start_at_operation_time=Timestamp(t, i + 1), max_await_time_ms=200
        ) as stream,
    ):
        while True:
            change = stream.try_next()
            if change is None:
                return count
            collection = str((change.get("ns") or {}).get("coll") or "")
            if not collection.startswith(RESERVED_PREFIX):
                count += 1


__all__ = [
    "COLLECTION",
    "CONFIRMED",
    "MaintenanceRecord",
    "begin",
    "clear_stale",
    "count_writes_since",
    "current_records",
    "end",
    "handshake_body",
    "maintenance_collection",
    "request_handshake",
    "swap_started",
]
