"""Flows read the tenant registry from the suite's MongoDB collection at every run.

A tenant suspended (or a permission revoked) in the suite's database between two runs is
refused by the next run, with the same refusals the YAML file gives.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flowkit import OWNER, FlowEnv, files_of, seed

from flows.backup import backup


@pytest.fixture
def suite_tenants(flow_env: FlowEnv, mongo_client: Any, mongo_uri: str) -> Iterator[Any]:
    """The suite's own tenants collection, pointed at by the worker's environment."""
    suite_db = f"suite_{uuid.uuid4().hex[:10]}"
    mp = flow_env.monkeypatch
    mp.setenv("DAAI_BACKUP_TENANTS_URI", mongo_uri)
    mp.setenv("DAAI_BACKUP_TENANTS_DATABASE", suite_db)
    mp.setenv(
        "DAAI_BACKUP_TENANTS_FIELDS",
        json.dumps({"id": "slug", "subscription": "billing.status", "permissions": "members"}),
    )
    mp.setenv(
        "DAAI_BACKUP_TENANTS_VALUES",
        json.dumps({"subscription": {"past_due": "active", "canceled": "suspended"}}),
    )
    yield mongo_client[suite_db]["tenants"]
    mongo_client.drop_database(suite_db)


def test_a_tenant_suspended_between_two_runs_is_refused_at_the_next(
    flow_env: FlowEnv, suite_tenants: Any, mongo_client: Any, mongo_db_name: str
) -> None:
    seed(mongo_client, mongo_db_name, docs=5)
    tid = f"t-{uuid.uuid4().hex[:10]}"
    suite_tenants.insert_one(
        {
            "slug": tid,
            "workspace_name": "Acme",
            "database": mongo_db_name,
            "billing": {"status": "past_due"},
            "members": [{"user": OWNER, "permissions": ["create", "restore"]}],
        }
    )
    first = backup(tenant=tid, label="7-day", actor="scheduler")
    assert isinstance(first, dict)
    assert files_of(flow_env, tid) == [first["file"]]

    # 00:59: the suite revokes the owner's permission, then cancels the subscription.
    suite_tenants.update_one({"slug": tid}, {"$set": {"members": []}})
    denied = backup(tenant=tid, actor=OWNER, return_state=True)
    assert denied.is_failed()
    assert f"{OWNER!r} may not take a backup" in (denied.message or "")

    suite_tenants.update_one({"slug": tid}, {"$set": {"billing.status": "canceled"}})
    # 01:00: the scheduled run reads the registry again and skips the suspended tenant.
    state = backup(tenant=tid, label="7-day", actor="scheduler", return_state=True)
    assert state.is_completed()
    assert state.name == "Skipped"
    assert "suspended" in (state.message or "")
    assert files_of(flow_env, tid) == [first["file"]]
