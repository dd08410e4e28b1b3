"""Helpers for the engine tests: capture a database's whole state for exact comparison."""

from __future__ import annotations

import io
from typing import Any

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from bson.son import SON
from pymongo import MongoClient

RAW = CodecOptions(document_class=RawBSONDocument)


def db_state(client: MongoClient[Any], name: str) -> dict[str, Any]:
    """Every collection/view: type, options, indexes (minus ``ns``) and raw documents in order."""
    db = client.get_database(name)
    state: dict[str, Any] = {}
    for info in sorted(db.list_collections(), key=lambda i: i["name"]):
        coll = info["name"]
        kind = info.get("type", "collection")
        entry: dict[str, Any] = {"type": kind, "options": info.get("options", {})}
        if kind != "view":
            entry["indexes"] = sorted(
                (SON((k, v) for k, v in i.items() if k != "ns") for i in db[coll].list_indexes()),
                key=lambda i: i["name"],
            )
            raw = db.get_collection(coll, codec_options=RAW)
            entry["documents"] = [d.raw for d in raw.find({}, sort=[("$natural", 1)])]
        state[coll] = entry
    return state


def dump_bytes(client: MongoClient[Any], name: str) -> bytes:
    from daai_backup.mongo import dump_database

    sink = io.BytesIO()
    dump_database(client, name, sink)
    return sink.getvalue()
