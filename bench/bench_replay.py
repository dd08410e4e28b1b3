"""Restore to a moment: snapshot load against replay rate, and replay against bare pymongo.

Runs an in-process SecantusDB, loads a snapshot (``--docs`` documents in three collections),
dumps it, then writes ``--events`` changes (inserts, ``$set``/``$unset``/``$push`` updates,
replaces, deletes, in runs per collection) while a change stream records them. Then, in the
same run:

- restore to the last moment: ``stage_restore`` (snapshot load), ``replay_staged`` (events/s),
  ``swap_staged``;
- bare pymongo: the same snapshot inserted into another database before the workload, the
  same events applied one call each (``insert_one``/``update_one``/``replace_one``/
  ``delete_one``), events/s.

Both end states are compared (documents per collection). Usage:
``uv run python bench/bench_replay.py [--docs 5000] [--events 6000]``.
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from typing import Any

from pymongo import MongoClient
from secantus import SecantusDBServer

from daai_backup.mongo import dump_database, stage_restore, swap_staged
from daai_backup.mongo.replay import replay_staged

COLLECTIONS = ("people", "orders", "events")


def _workload(db: Any, events: int, first_id: int, rng: random.Random) -> None:
    next_id = first_id
    done = 0
    while done < events:
        coll = db[rng.choice(COLLECTIONS)]
        for _ in range(min(rng.randint(5, 40), events - done)):
            roll = rng.random()
            key = rng.randrange(next_id)
            if roll < 0.35:
                coll.insert_one({"_id": next_id, "n": next_id, "tags": ["a"], "sub": {"x": 1}})
                next_id += 1
            elif roll < 0.75:
                coll.update_one(
                    {"_id": key},
                    {"$set": {"n": rng.random(), "sub.y": key}, "$push": {"tags": "b"}},
                )
            elif roll < 0.85:
                coll.update_one({"_id": key}, {"$unset": {"sub.x": ""}})
            elif roll < 0.93:
                coll.replace_one({"_id": key}, {"n": -1, "replaced": True})
            else:
                coll.delete_one({"_id": key})
            done += 1


def _bare_apply(db: Any, events: list[dict[str, Any]]) -> None:
    """The same events with one plain pymongo call each (no checks, no batching)."""
    for e in events:
        coll = db[e["ns"]["coll"]]
        kind = e["operationType"]
        if kind == "insert":
            coll.insert_one(e["fullDocument"])
        elif kind == "update":
            d = e["updateDescription"]
            change: dict[str, Any] = {}
            if d.get("updatedFields"):
                change["$set"] = d["updatedFields"]
            if d.get("removedFields"):
                change["$unset"] = dict.fromkeys(d["removedFields"], "")
            if change:
                coll.update_one(e["documentKey"], change)
        elif kind == "replace":
            coll.replace_one(e["documentKey"], e["fullDocument"])
        elif kind == "delete":
            coll.delete_one(e["documentKey"])


def _counts(db: Any) -> dict[str, int]:
    return {c: db[c].count_documents({}) for c in COLLECTIONS}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--events", type=int, default=6000)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp, SecantusDBServer(storage_path=tmp) as server:
        client: MongoClient[dict[str, Any]] = MongoClient(server.uri)
        db = client["bench_live"]
        for name in COLLECTIONS:
            for target in ("bench_live", "bench_bare"):  # bare: the same snapshot, loaded plainly
                client[target][name].insert_many(
                    [{"_id": i, "n": i, "tags": [], "sub": {"x": 0}} for i in range(args.docs // 3)]
                )
        stream = db.watch(show_expanded_events=True)
        sink = io.BytesIO()
        dumped = dump_database(client, "bench_live", sink)
        assert dumped.cluster_time is not None
        after = dumped.cluster_time
        t0 = time.monotonic()
        _workload(db, args.events, args.docs // 3, rng)
        write_s = time.monotonic() - t0
        until = db.command("ping")["operationTime"]
        events = []
        while (event := stream.try_next()) is not None:
            events.append(event)
        stream.close()
        live = _counts(db)
        archive = sink.getvalue()

        from bson.timestamp import Timestamp

        t0 = time.monotonic()
        staged = stage_restore(client, "bench_live", io.BytesIO(archive))
        load_s = time.monotonic() - t0
        t0 = time.monotonic()
        result = replay_staged(
            client, "bench_live", staged.run, events, after=Timestamp(*after), until=until
        )
        replay_s = time.monotonic() - t0
        t0 = time.monotonic()
        swap_staged(client, "bench_live", staged.run)
        swap_s = time.monotonic() - t0
        assert _counts(client["bench_live"]) == live

        t0 = time.monotonic()
        _bare_apply(client["bench_bare"], events)
        bare_s = time.monotonic() - t0
        assert _counts(client["bench_bare"]) == live

    n = len(events)
    print(f"snapshot: {args.docs} documents; {n} change events (written at {n / write_s:.0f}/s)")
    print("| step | seconds | events/s |\n|---|---:|---:|")
    print(f"| snapshot load (stage_restore) | {load_s:.2f} | |")
    print(f"| replay_staged ({result.applied} applied) | {replay_s:.2f} | {n / replay_s:.0f} |")
    print(f"| swap | {swap_s:.2f} | |")
    print(f"| restore to the moment, total | {load_s + replay_s + swap_s:.2f} | |")
    print(f"| bare pymongo, one call per event | {bare_s:.2f} | {n / bare_s:.0f} |")
    print(f"replay vs bare pymongo: {bare_s / replay_s:.2f}x")


if __name__ == "__main__":
    main()
