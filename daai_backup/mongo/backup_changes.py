"""The change events of one database over a backup's dump: what makes the backup one moment.

``mongodump --oplog`` makes a dump of a whole instance consistent by noting the oplog's
position before it reads, then dumping the oplog entries up to the end of the dump;
``mongorestore --oplogReplay`` loads the dump and applies those entries, and the result is
the instance at the end of the dump. A tenant's backup does the same for one database with
its change stream (the oplog itself holds every tenant's writes):

1. :func:`position` before the dump: the cluster's majority commit point. Every write a read
   of the dump can see was committed after it or is in the state it reads.
2. the dump (``dump.dump_database``), however long, whatever the server does with snapshots;
3. :func:`collect` after it: the database's change events with ``clusterTime`` after the
   position, up to the majority commit point read once the dump finished (``until``), from a
   database-level ``watch(start_at_operation_time=..., show_expanded_events=True)``, as raw
   BSON exactly as the server sent them. Never ``fullDocument: updateLookup`` (it returns a
   document as it is when looked up, not as it was at the event).

A restore stages the dump and replays the events up to ``until`` (``replay.replay_staged``
with ``idempotent=True``: a document read after some of the events already holds them, so an
insert becomes an upsert of the document as inserted and a delete may find nothing, exactly
the oplog's idempotent application), giving the database as it was at ``until``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from daai_backup.errors import DatabaseError, TransientDatabaseError

#: Change events held in memory before the backup refuses (a dump during which the tenant
#: wrote more than this is retried; raise it for write-heavy tenants).
MAX_EVENTS = 1_000_000
_NOT_REPLICA_SET = (40573, 40324, 20)


@dataclass(frozen=True)
class DumpChanges:
    """The events of one database with ``after < clusterTime <= until``, raw, in stream order."""

    after: Timestamp
    until: Timestamp
    events: list[bytes]


def position(client: MongoClient[Any]) -> Timestamp | None:
    """The cluster's majority commit point; None for a server without one (a standalone)."""
    try:
        hello = client.admin.command("hello")
    except PyMongoError as exc:
        raise TransientDatabaseError(f"asking the MongoDB server for its position: {exc}") from None
    ts = ((hello.get("lastWrite") or {}).get("majorityOpTime") or {}).get("ts")
    return ts if isinstance(ts, Timestamp) else None


def collect(
    client: MongoClient[Any],
    database: str,
    after: Timestamp,
    until: Timestamp,
    *,
    max_events: int = MAX_EVENTS,
) -> DumpChanges:
    """Read the events of ``database`` with ``after < clusterTime <= until``.

    ``until`` must be a majority-committed time (:func:`position` after the dump): the
    stream is read until an event after it, or until it is caught up (an empty batch: every
    majority-committed event, so every one up to ``until``, has been returned).
    """
    raw = client.get_database(database, codec_options=CodecOptions(document_class=RawBSONDocument))
    events: list[bytes] = []
    try:
        with raw.watch(
            start_at_operation_time=after, show_expanded_events=True, max_await_time_ms=200
        ) as stream:
            while True:
                doc = stream.try_next()
                if doc is None:
                    break
                at = doc["clusterTime"]
                if not isinstance(at, Timestamp):
                    raise DatabaseError("a change event without a cluster time: cannot replay")
                if at <= after:
                    continue  # start_at_operation_time is inclusive
                if at > until:
                    break
                events.append(bytes(doc.raw))
                if len(events) > max_events:
                    raise TransientDatabaseError(
                        f"database {database!r} changed more than {max_events} times during "
                        "its backup: the backup is retried"
                    )
    except OperationFailure as exc:
        if exc.code in _NOT_REPLICA_SET:
            raise DatabaseError(
                f"the server refuses change streams ({exc.code}): a consistent backup needs a "
                "replica set"
            ) from None
        raise TransientDatabaseError(
            f"reading the changes of {database!r} during its backup failed ({exc.code}): "
            f"{str(exc)[:200]}"
        ) from None
    except PyMongoError as exc:
        raise TransientDatabaseError(f"change stream of {database!r}: {exc}") from None
    return DumpChanges(after, until, events)
