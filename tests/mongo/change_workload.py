"""A workload over several collections, its change events from a real change stream, and the
exact live state at chosen moments: what the replay tests restore to and compare against."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON
from bson.timestamp import Timestamp
from pymongo import ASCENDING, MongoClient
from pymongo.client_session import ClientSession
from pymongo.collection import Collection

from daai_backup.mongo import dump_database

RAW = CodecOptions(document_class=RawBSONDocument)
END_DB = "replay_end_marker"


def exact_state(client: MongoClient[Any], name: str) -> dict[str, Any]:
    """Every collection and view: type, options, index specs, and each document's exact bytes
    keyed by its ``_id`` (a restore need not keep the server's natural order)."""
    db = client.get_database(name)
    state: dict[str, Any] = {}
    for info in db.list_collections():
        coll = str(info["name"])
        if coll.startswith("system."):
            continue
        kind = info.get("type", "collection")
        entry: dict[str, Any] = {"type": kind, "options": dict(info.get("options", {}))}
        if kind != "view":
            entry["indexes"] = sorted(
                (SON((k, v) for k, v in i.items() if k != "ns") for i in db[coll].list_indexes()),
                key=lambda i: str(i["name"]),
            )
            raw = db.get_collection(coll, codec_options=RAW)
            docs = {
                RawBSONDocument(d.raw)["_id"].__repr__(): d.raw
                for d in raw.find({}, sort=[("_id", ASCENDING)])
            }
            entry["documents"] = docs
        state[coll] = entry
    return state


@dataclass
class Moment:
    label: str
    at: Timestamp
    state: dict[str, Any]


@dataclass
class Recorded:
    database: str
    archive: bytes
    snapshot: Timestamp
    events: list[Mapping[str, Any]]
    moments: list[Moment]


def _step_time(session: ClientSession) -> Timestamp:
    at = session.operation_time
    assert isinstance(at, Timestamp)
    return at


def record(
    client: MongoClient[Any],
    steps: list[tuple[str, Callable[[Any, ClientSession], None]]],
    setup: Callable[[Any], None],
) -> Recorded:
    """Run ``setup``, dump the snapshot, then each step; the state after each step and its
    cluster time. The change stream is opened before anything runs; its events are read to
    the end marker written last (in another database)."""
    name = f"r_{uuid.uuid4().hex[:10]}"
    db = client.get_database(name)
    stream = client.watch(
        [{"$match": {"ns.db": {"$in": [name, END_DB]}}}], show_expanded_events=True
    )
    setup(db)
    sink = io.BytesIO()
    dumped = dump_database(client, name, sink)
    assert dumped.cluster_time is not None
    snapshot = Timestamp(*dumped.cluster_time)
    moments = [Moment("snapshot", snapshot, exact_state(client, name))]
    with client.start_session() as session:
        for label, step in steps:
            step(db, session)
            moments.append(Moment(label, _step_time(session), exact_state(client, name)))
    marker = str(uuid.uuid4())
    client.get_database(END_DB).get_collection("end").insert_one({"_id": marker})
    events: list[Mapping[str, Any]] = []
    with stream:
        for event in stream:
            if event["ns"].get("db") == END_DB:
                if event.get("documentKey", {}).get("_id") == marker:
                    break
                continue
            events.append(event)
    return Recorded(name, sink.getvalue(), snapshot, events, moments)


def coll(db: Any, name: str) -> Collection[Any]:
    return db.get_collection(name)
