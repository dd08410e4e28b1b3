"""Restore to a moment through the engine calls: the moment's text in the tenant's zone, the
newest snapshot before it (its manifest's cluster time), the captured changes replayed from a
real change stream, refusals naming the recoverable ranges; and the pure moment rules."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from bson.timestamp import Timestamp
from mongo.change_workload import exact_state
from test_operations import _ctx

from daai_backup import moments
from daai_backup.errors import MomentInvalid, MomentNotCovered
from daai_backup.moments import Snapshot, choose, merged, parse_moment, ranges_text, recoverable
from daai_backup.operations import (
    backup_tenant,
    plan_moment,
    recoverable_ranges,
    restore_to_moment,
)


class ListSource:
    """A change source over events read from a real change stream, with a given coverage."""

    def __init__(
        self, events: list[Mapping[str, Any]], coverage: list[tuple[Timestamp, Timestamp]]
    ):
        self.events = events
        self.ranges = coverage
        self.asked: list[tuple[str, Timestamp, Timestamp]] = []

    def read_changes(
        self, folder: Any, keyring: Any, tenant_id: str, after: Timestamp, until: Timestamp
    ) -> Iterator[dict[str, Any]]:
        self.asked.append((tenant_id, after, until))
        return iter([dict(e) for e in self.events if after < e["clusterTime"] <= until])

    def coverage(self, folder: Any) -> list[tuple[Timestamp, Timestamp]]:
        return list(self.ranges)


def _next_second() -> None:
    time.sleep(1.02 - (time.time() % 1))


def test_restore_to_a_moment_in_the_tenants_zone(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    db = mongo_client[mongo_db_name]
    db.items.insert_many([{"_id": i, "n": i} for i in range(5)])
    stream = db.watch(show_expanded_events=True)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name}, timezone="Asia/Kolkata")
    tenant = ctx.tenant("acme")
    backup = backup_tenant(ctx, tenant, "manual", actor="ops")
    _next_second()
    db.items.update_one({"_id": 1}, {"$set": {"n": 100, "tags": ["a"]}})
    db.items.delete_one({"_id": 2})
    db.create_collection("later")
    db.later.insert_one({"_id": "x"})
    second_a = int(time.time())
    wanted = exact_state(mongo_client, mongo_db_name)
    _next_second()
    db.items.insert_one({"_id": 99})
    db.drop_collection("later")
    end = db.command("ping")["operationTime"]
    events = []
    while (event := stream.try_next()) is not None:
        events.append(event)
    stream.close()
    source = ListSource(events, [(Timestamp(second_a - 60, 0), end)])

    text = datetime.fromtimestamp(second_a, UTC).astimezone(moments.zone("Asia/Kolkata"))
    plan = plan_moment(ctx, tenant, f"{text:%Y-%m-%d %H:%M:%S}", source)
    assert plan.file == backup.entry.file
    assert plan.until == Timestamp(second_a, 2**32 - 1)

    outcome = restore_to_moment(ctx, tenant, f"{text:%Y-%m-%d %H:%M:%S}", source)
    assert exact_state(mongo_client, mongo_db_name) == wanted
    assert outcome.file == backup.entry.file
    assert source.asked[-1][0] == "acme"

    ranges = recoverable_ranges(ctx, tenant, source)
    assert len(ranges) == 1
    assert ranges[0][1] == end

    # Refused, naming what can be restored: before the snapshot, after the last change.
    for second in (second_a - 30, end.time + 60):
        at = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        with pytest.raises(MomentNotCovered, match=r"recoverable: any second from .* IST"):
            plan_moment(ctx, tenant, at, source)
    # Inside a gap of the capture.
    gap = ListSource(events, [(Timestamp(second_a - 60, 0), Timestamp(second_a - 1, 0))])
    with pytest.raises(MomentNotCovered, match="cannot be restored to"):
        plan_moment(ctx, tenant, f"{text:%Y-%m-%d %H:%M:%S}", gap)


def test_moment_text_zone_offset_and_refusals() -> None:
    local = parse_moment("2026-11-28 14:31:59", "Asia/Kolkata")
    assert local == datetime(2026, 11, 28, 9, 1, 59, tzinfo=UTC)
    assert parse_moment("2026-11-28 14:31:59 UTC", "Asia/Kolkata") == datetime(
        2026, 11, 28, 14, 31, 59, tzinfo=UTC
    )
    assert parse_moment("2026-11-28T14:31:59+01:00", "Asia/Kolkata") == datetime(
        2026, 11, 28, 13, 31, 59, tzinfo=UTC
    )
    assert parse_moment("2026-11-28 14:31:59 Europe/Berlin", "UTC").utcoffset() is not None
    with pytest.raises(MomentInvalid):
        parse_moment("yesterday", "UTC")
    with pytest.raises(MomentInvalid, match="whole second"):
        parse_moment("2026-11-28 14:31:59.5", "UTC")


def test_snapshot_choice_and_recoverable_ranges() -> None:
    def ts(t: int) -> Timestamp:
        return Timestamp(t, 1)

    snaps = [Snapshot("a", ts(100)), Snapshot("b", ts(200)), Snapshot("c", ts(400))]
    coverage = [(ts(50), ts(250)), (ts(250), ts(300)), (ts(390), ts(500))]
    assert merged(coverage) == [(ts(50), ts(300)), (ts(390), ts(500))]
    assert choose(snaps, coverage, Timestamp(150, 2**32 - 1)).file == "a"
    assert choose(snaps, coverage, Timestamp(299, 2**32 - 1)).file == "b"
    assert choose(snaps, coverage, Timestamp(450, 0)).file == "c"
    assert recoverable(snaps, coverage) == [(ts(100), ts(300)), (ts(400), ts(500))]
    assert ranges_text(recoverable(snaps, coverage), "UTC") == (
        "recoverable: any second from 1970-01-01 00:01:40 UTC to 1970-01-01 00:04:59 UTC; "
        "any second from 1970-01-01 00:06:40 UTC to 1970-01-01 00:08:19 UTC"
    )
    for refused in (Timestamp(99, 0), Timestamp(350, 0), Timestamp(501, 0)):
        with pytest.raises(MomentNotCovered, match="any second from"):
            choose(snaps, coverage, refused)


def test_a_moment_that_names_two_instants_or_none_is_refused() -> None:
    """02:30 on the night Berlin's clocks go back happens twice: a restore to the wrong one
    is a full restore an hour off, so the text must say which (with an offset)."""
    with pytest.raises(MomentInvalid, match=r"happens twice .*\+02:00 or .*\+01:00"):
        parse_moment("2026-10-25 02:30:00", "Europe/Berlin")
    assert parse_moment("2026-10-25 02:30:00+01:00", "Europe/Berlin") == datetime(
        2026, 10, 25, 1, 30, tzinfo=UTC
    )
    with pytest.raises(MomentInvalid, match="does not exist in Europe/Berlin"):
        parse_moment("2026-03-29 02:30:00", "Europe/Berlin")
    for text in ("1960-01-01 00:00:00", "9999-12-31 23:59:59"):
        with pytest.raises(MomentInvalid, match="outside the times a backup can reach"):
            parse_moment(text, "UTC")
