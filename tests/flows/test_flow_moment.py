"""The restore flow's ``at``: a moment restored through the whole flow (plan, confirmation,
stage, replay, safety backup, swap), and refused without change capture."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from bson.timestamp import Timestamp
from flowkit import OWNER, FlowEnv, files_of, seed

from daai_backup import operations
from daai_backup.errors import ChangeCaptureMissing
from flows.restore import restore


class _Source:
    """Events read from a real change stream; covering everything from ``start``."""

    def __init__(self, events: list[Any], start: Timestamp, end: Timestamp) -> None:
        self.events, self.range = events, (start, end)

    def read_changes(
        self, folder: Any, keyring: Any, tenant_id: str, after: Any, until: Any
    ) -> Any:
        return iter([e for e in self.events if after < e["clusterTime"] <= until])

    def coverage(self, folder: Any) -> list[tuple[Timestamp, Timestamp]]:
        return [self.range]


def _next_second() -> None:
    time.sleep(1.02 - (time.time() % 1))


def test_restore_flow_to_a_moment(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(mongo_client, mongo_db_name, docs=5)
    tid = flow_env.add_tenant(mongo_db_name, workspace_name="Acme Books", timezone="UTC")
    people = mongo_client[mongo_db_name]["people"]
    stream = mongo_client[mongo_db_name].watch(show_expanded_events=True)
    ctx = flow_env.context()
    backup = operations.backup_tenant(ctx, ctx.tenant(tid), "manual").entry.file
    ctx.close()
    at = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
    refused = restore(  # the seam, before the capture is plugged in
        tenant=tid, at=at, actor=OWNER, confirm_workspace_name="Acme Books", return_state=True
    )
    error = refused.result(raise_on_failure=False)
    assert isinstance(error, ChangeCaptureMissing)
    assert "point-in-time needs change capture" in str(error)
    _next_second()
    people.delete_one({"_id": 0})
    people.update_one({"_id": 1}, {"$push": {"tags": "x"}})
    moment = datetime.now(UTC)
    _next_second()
    people.delete_many({})  # the bad bulk delete
    end = mongo_client[mongo_db_name].command("ping")["operationTime"]
    events = []
    while (event := stream.try_next()) is not None:
        events.append(event)
    source = _Source(events, Timestamp(int(moment.timestamp()) - 60, 0), end)
    monkeypatch.setattr(operations, "change_source", lambda ctx, tenant: source)

    result = restore(
        tenant=tid,
        at=f"{moment:%Y-%m-%d %H:%M:%S}",
        actor=OWNER,
        confirm_workspace_name="Acme Books",
    )
    assert result["file"] == backup
    assert result["replayed_events"] == 2
    assert sorted(d["_id"] for d in people.find()) == [1, 2, 3, 4]
    assert people.find_one({"_id": 1})["tags"] == ["x"]
    assert result["safety_backup"] in files_of(flow_env, tid)
