"""The capture's resume point: one document per cluster in the control database.

``<DAAI_BACKUP_CONTROL_DATABASE>.capture``, ``_id: "cluster"``::

    {_id: "cluster",
     resume_token: {_data: ...},          # the change stream position to resume after
     position: Timestamp(t, i),           # every event at or before it is stored
     saved_at: <date>,                    # when this was written (the capture's heartbeat)
     tenants: {"acme-hr": {"database": "acme_hr",
                           "next_start": Timestamp,   # start of the tenant's next segment
                           "lag_s": 0.4}}}            # commit -> stored, at the last flush

It is written only after every segment up to ``position`` is stored (the capture's one rule),
so a crash between storing segments and writing this re-reads those events: the overlapping
segments are deduplicated by readers. ``next_start`` keeps a tenant's coverage contiguous
across idle periods and restarts: its next segment starts there, so it covers the idle time
too. A tenant missing from ``tenants`` starts a new range (a gap before it).

Writes use ``w: majority`` so an acknowledged resume point survives a failover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from bson import Timestamp

if TYPE_CHECKING:
    from pymongo import MongoClient

    from daai_backup.settings import Settings

COLLECTION: Final = "capture"
DOCUMENT_ID: Final = "cluster"


@dataclass
class TenantPosition:
    database: str
    next_start: Timestamp
    lag_s: float = 0.0


@dataclass
class ResumePoint:
    resume_token: dict[str, Any] | None
    position: Timestamp
    saved_at: datetime
    tenants: dict[str, TenantPosition] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": DOCUMENT_ID,
            "resume_token": self.resume_token,
            "position": self.position,
            "saved_at": self.saved_at,
            "tenants": {
                tid: {"database": p.database, "next_start": p.next_start, "lag_s": p.lag_s}
                for tid, p in self.tenants.items()
            },
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ResumePoint:
        saved = doc["saved_at"]
        if saved.tzinfo is None:
            saved = saved.replace(tzinfo=UTC)
        return cls(
            resume_token=doc.get("resume_token"),
            position=doc["position"],
            saved_at=saved,
            tenants={
                tid: TenantPosition(str(p["database"]), p["next_start"], float(p.get("lag_s", 0.0)))
                for tid, p in (doc.get("tenants") or {}).items()
            },
        )


def _collection(client: MongoClient[Any], settings: Settings) -> Any:
    from pymongo import WriteConcern

    return client[settings.control_database].get_collection(
        COLLECTION, write_concern=WriteConcern(w="majority")
    )


def load(client: MongoClient[Any], settings: Settings) -> ResumePoint | None:
    """The saved resume point, or None before the first capture (or after :func:`clear`)."""
    doc = _collection(client, settings).find_one({"_id": DOCUMENT_ID})
    if doc is None:
        return None
    return ResumePoint.from_document(dict(doc))


def save(client: MongoClient[Any], settings: Settings, point: ResumePoint) -> None:
    """Replace the resume point (call only after every segment up to it is stored)."""
    _collection(client, settings).replace_one(
        {"_id": DOCUMENT_ID}, point.to_document(), upsert=True
    )


def clear(client: MongoClient[Any], settings: Settings) -> None:
    """Forget the resume point (the next capture starts at the present)."""
    _collection(client, settings).delete_one({"_id": DOCUMENT_ID})


STALE_AFTER_S: Final = 120.0
"""A resume point older than this (plus the lag target) means capture is not running."""


def capture_lags(
    client: MongoClient[Any], settings: Settings, tenant_ids: list[str], now: datetime
) -> dict[str, float | None]:
    """Each tenant's capture lag in seconds: committed writes not yet stored are at most
    this old. None: the tenant is not captured (no capture ran, suspended, not yet seen).

    While capture runs (its resume point saved within the target + 2 minutes), the lag of
    the tenant's last flush (0 when it had nothing to store); when it stopped, the age of the
    resume point's position: everything since may be missing.
    """
    point = load(client, settings)
    lags: dict[str, float | None] = dict.fromkeys(tenant_ids)
    if point is None:
        return lags
    stale = (now - point.saved_at).total_seconds() > (
        settings.capture_max_lag_seconds + STALE_AFTER_S
    )
    behind = max(0.0, now.timestamp() - point.position.time)
    for tid in tenant_ids:
        pos = point.tenants.get(tid)
        if pos is not None:
            lags[tid] = behind if stale else pos.lag_s
    return lags
