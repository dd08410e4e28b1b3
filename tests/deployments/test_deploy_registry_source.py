"""The hourly sync reads the suite's tenants collection (a real SecantusDB and Prefect server).

The sync flow does ``sync_deployments(load_context().registry.values(), ...)``; here the
context is loaded from settings pointing at a MongoDB collection, and one change made in the
suite's database (a frequency bump, a cancellation, a tenant leaving) reaches the
deployments at the next sync.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import get_client
from pydantic import SecretStr

from daai_backup.operations import load_context
from daai_backup.settings import Settings
from deployments.sync import SyncReport, sync_deployments

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _sync(settings: Settings, flows: dict[str, Any]) -> SyncReport:
    ctx = load_context(settings)  # what flows/sync.py does at every hourly run
    try:
        return sync_deployments(ctx.registry.values(), settings=ctx.settings, now=NOW, flows=flows)
    finally:
        ctx.close()


def test_changes_in_the_suite_collection_are_picked_up_by_the_next_sync(
    clean_server: str,
    settings: Settings,
    stand_in_flows: dict[str, Any],
    mongo_client: Any,
    mongo_uri: str,
    mongo_db_name: str,
) -> None:
    tenants = mongo_client[mongo_db_name]["accounts"]
    tenants.insert_many(
        [
            {"slug": slug, "workspace_name": slug.title(), "plan": {"backups": "15-day"}}
            for slug in ("acme-hr", "globex-crm", "initech-inv")
        ]
    )
    source = settings.model_copy(
        update={
            "tenants_uri": SecretStr(mongo_uri),
            "tenants_database": mongo_db_name,
            "tenants_collection": "accounts",
            "tenants_fields": {"id": "slug", "frequency": "plan.backups"},
        }
    )
    first = _sync(source, stand_in_flows)
    assert {"backup/backup-acme-hr", "backup/backup-initech-inv"} <= set(first.created)

    tenants.update_one({"slug": "acme-hr"}, {"$set": {"plan.backups": "7-day"}})
    tenants.update_one({"slug": "globex-crm"}, {"$set": {"subscription": "suspended"}})
    tenants.delete_one({"slug": "initech-inv"})
    report = _sync(source, stand_in_flows)
    assert report.updated == ["backup/backup-acme-hr"]
    assert report.paused == ["backup/backup-globex-crm"]
    assert report.removed == ["backup/backup-initech-inv"]
    with get_client(sync_client=True) as client:
        acme = client.read_deployment_by_name("backup/backup-acme-hr")
    assert [s.parameters["label"] for s in acme.schedules] == ["7-day"]
    assert not _sync(source, stand_in_flows).changed
