"""Timeline and history against SecantusDB with the real change capture: a bulk delete is a
marked burst whose moment before restores the data just before it; a document changed
several times shows each version; the chart is a PNG of the stated size; bad input."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from PIL import Image

from daai_backup.capture.runner import run_capture
from daai_backup.errors import ChangesNotCovered, PermissionDenied, QueryError
from daai_backup.format.keys import generate_master_key
from daai_backup.inspection.chart import SIZE, timeline_png
from daai_backup.inspection.history import apply_update, document_history
from daai_backup.inspection.timeline import moment_text, tenant_timeline
from daai_backup.moments import parse_moment
from daai_backup.operations import EngineContext, backup_tenant, load_context, restore_to_moment
from daai_backup.settings import Settings

KEY = generate_master_key()
TZ = "Asia/Kolkata"


def _next_second() -> None:
    time.sleep(1.02 - (time.time() % 1))


@pytest.fixture
def acme(
    mongo_uri: str, mongo_client: Any, mongo_db_name: str, tmp_path: Path
) -> Iterator[tuple[EngineContext, Settings]]:
    control = f"ctl_{uuid.uuid4().hex[:8]}"
    tenants_file = tmp_path / "tenants.yaml"
    tenant = {
        "id": "acme",
        "workspace_name": "Acme",
        "database": mongo_db_name,
        "timezone": TZ,
        "permissions": {"ops": ["create", "restore"], "viewer": []},
    }
    tenants_file.write_text(yaml.safe_dump({"tenants": [tenant]}))
    (tmp_path / "storage").mkdir()
    settings = Settings(
        backup_encryption_key=KEY,
        mongodb_uri=mongo_uri,
        storage_url=(tmp_path / "storage").as_uri(),
        tenants_file=tenants_file,
        control_database=control,
    )
    ctx = load_context(settings)
    yield ctx, settings
    ctx.close()
    mongo_client.drop_database(control)


def test_a_bulk_delete_is_a_burst_whose_moment_before_restores_it(
    acme: tuple[EngineContext, Settings], mongo_client: Any, mongo_db_name: str
) -> None:
    ctx, settings = acme
    tenant = ctx.tenant("acme")
    items = mongo_client[mongo_db_name]["items"]
    items.insert_many([{"_id": i, "n": i} for i in range(250)])
    run_capture(settings, once=True)  # capture starts here
    backup_tenant(ctx, tenant, "manual", actor="ops")
    _next_second()
    items.update_one({"_id": 1}, {"$set": {"n": 100}})
    items.update_one({"_id": 2}, {"$set": {"n": 200}})
    _next_second()
    items.delete_many({})  # the mass change
    run_capture(settings, once=True)

    timeline = tenant_timeline(ctx, tenant, actor="ops")

    assert timeline.totals() == {
        "inserts": 0,
        "updates": 2,
        "replaces": 0,
        "deletes": 250,
        "ddl": 0,
    }
    assert [(b.what, b.collection, b.counts) for b in timeline.bursts] == [
        ("bulk delete", "items", {"deletes": 250})
    ]
    burst = timeline.bursts[0]
    assert burst.before == burst.first - timedelta(seconds=1)
    assert burst.first.tzinfo is not None
    assert burst.first.utcoffset() == timedelta(hours=5, minutes=30)  # the tenant's zone
    assert burst.at == f"{burst.before:%Y-%m-%d %H:%M:%S}"
    table = timeline.table()
    assert int(table["deletes"].sum()) == 250
    assert set(table["Collection"]) == {"items"}

    png = timeline_png(timeline)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == SIZE

    restore_to_moment(ctx, tenant, burst.at)  # the moment before, as --at reads it
    assert items.count_documents({}) == 250
    assert items.find_one({"_id": 1}) == {"_id": 1, "n": 100}
    assert items.find_one({"_id": 2}) == {"_id": 2, "n": 200}


def test_history_lists_every_version_of_a_document(
    acme: tuple[EngineContext, Settings], mongo_client: Any, mongo_db_name: str
) -> None:
    ctx, settings = acme
    tenant = ctx.tenant("acme")
    invoices = mongo_client[mongo_db_name]["invoices"]
    invoices.insert_many(
        [{"_id": i, "number": f"INV-{i:04d}", "total": 100, "draft": True} for i in range(50)]
    )
    run_capture(settings, once=True)
    backup = backup_tenant(ctx, tenant, "manual", actor="ops").entry.file
    _next_second()
    invoices.update_one({"_id": 42}, {"$set": {"total": 120}})
    invoices.update_one({"_id": 7}, {"$set": {"total": 1}})  # another invoice: not shown
    _next_second()
    invoices.update_one({"_id": 42}, {"$unset": {"draft": ""}, "$set": {"paid": True}})
    _next_second()
    invoices.replace_one({"_id": 42}, {"number": "INV-0042", "total": 0})
    _next_second()
    invoices.delete_one({"_id": 42})
    run_capture(settings, once=True)

    result = document_history(ctx, tenant, "invoices", ["number=INV-0042"], actor="ops")

    assert result.base_file == backup
    assert [(v.id, v.what) for v in result.versions] == [
        ("42", "in snapshot"),
        ("42", "updated"),
        ("42", "updated"),
        ("42", "replaced"),
        ("42", "deleted"),
    ]
    assert result.versions[1].changes == ["~total: 100 -> 120"]
    assert sorted(result.versions[2].changes) == ["+paid: true", "-draft: true"]
    assert result.versions[2].document == {
        "_id": 42,
        "number": "INV-0042",
        "total": 120,
        "paid": True,
    }
    assert sorted(result.versions[3].changes) == ["-paid: true", "~total: 120 -> 0"]
    times = [v.at for v in result.versions[1:]]
    assert times == sorted(times)
    assert len(set(times)) == 4  # one change per second
    for version in result.versions[1:]:
        assert version.before == version.at - timedelta(seconds=1)
        assert parse_moment(version.moment_before, TZ) == version.before


def test_refusals_say_what_is_covered(
    acme: tuple[EngineContext, Settings], mongo_client: Any, mongo_db_name: str
) -> None:
    ctx, settings = acme
    tenant = ctx.tenant("acme")
    with pytest.raises(ChangesNotCovered, match="has no captured changes"):
        tenant_timeline(ctx, tenant, actor="ops")
    with pytest.raises(ChangesNotCovered, match="has no captured changes"):
        document_history(ctx, tenant, "invoices", ["number=x"], actor="ops")
    mongo_client[mongo_db_name]["invoices"].insert_one({"_id": 1, "number": "INV-1"})
    run_capture(settings, once=True)
    backup_tenant(ctx, tenant, "manual", actor="ops")
    _next_second()
    mongo_client[mongo_db_name]["invoices"].insert_one({"_id": 2, "number": "INV-2"})
    _next_second()
    run_capture(settings, once=True)

    with pytest.raises(PermissionDenied):
        tenant_timeline(ctx, tenant, actor="viewer")
    with pytest.raises(PermissionDenied):
        document_history(ctx, tenant, "invoices", ["number=INV-1"], actor="viewer")
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    with pytest.raises(ChangesNotCovered, match=r"do not reach .* \(covered: .* IST\)"):
        tenant_timeline(ctx, tenant, actor="ops", since=long_ago, until=long_ago)
    with pytest.raises(ChangesNotCovered, match="recoverable: any second from"):
        document_history(ctx, tenant, "invoices", ["number=INV-1"], actor="ops", since=long_ago)
    with pytest.raises(QueryError, match="no document of 'invoices' matches number=INV-9"):
        document_history(ctx, tenant, "invoices", ["number=INV-9"], actor="ops")
    # A document inserted after the snapshot is followed from its insert.
    found = document_history(ctx, tenant, "invoices", ["number=INV-2"], actor="ops")
    assert [v.what for v in found.versions] == ["inserted"]


def test_apply_update_redoes_the_delta() -> None:
    doc = {"_id": 1, "a": {"b": 1, "c": [1, 2, 3, 4]}, "x.y": 5, "gone": 1}
    description = {
        "updatedFields": {"a.b": 2, "a.c.1": 9, "x.y": 6, "new": {"k": 1}},
        "removedFields": ["gone"],
        "truncatedArrays": [{"field": "a.c", "newSize": 2}],
        "disambiguatedPaths": {"x.y": ["x.y"]},
    }
    assert apply_update(doc, description) == {
        "_id": 1,
        "a": {"b": 2, "c": [1, 9]},
        "x.y": 6,
        "new": {"k": 1},
    }
    assert doc["gone"] == 1  # the input is left alone


def test_moment_text_reads_back_through_a_dst_repeat() -> None:
    berlin = "Europe/Berlin"
    for epoch in (1792890000 - 1, 1792890000 + 3599):  # 02:59:59 CEST, then CET
        moment = datetime.fromtimestamp(epoch, UTC).astimezone(ZoneInfo(berlin))
        assert parse_moment(moment_text(moment), berlin).timestamp() == epoch
