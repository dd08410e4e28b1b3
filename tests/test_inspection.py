"""diff and find against real backups on SecantusDB: exact counts, metadata, history, refusals."""

from __future__ import annotations

import base64
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bson
import pytest
from bson import Int64, ObjectId

from daai_backup.errors import (
    ArchiveCorrupt,
    InvalidName,
    ObjectNotFound,
    PermissionDenied,
    QueryError,
    WrongKey,
)
from daai_backup.inspection import (
    ArchiveSnapshot,
    diff_backups,
    diff_snapshots,
    find_versions,
    parse_where,
)
from daai_backup.inspection.find import matches
from daai_backup.inspection.raw_ids import id_key, show_id
from daai_backup.mongo.archive_format import (
    ArchiveHeader,
    ArchiveWriter,
    CollectionMetadata,
)
from daai_backup.mongo.crc64 import Crc64
from daai_backup.operations import EngineContext, backup_tenant
from daai_backup.settings import Settings
from daai_backup.tenants import TenantRegistry

KEY = base64.b64encode(os.urandom(32)).decode()
T0 = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)


def _ctx(mongo_uri: str, storage_url: str, databases: dict[str, str], key: str = KEY):
    settings = Settings(
        backup_encryption_key=key,
        mongodb_uri=mongo_uri,
        storage_url=storage_url,
        tenants_file=Path("unused.yaml"),
    )
    tenants = [
        {
            "id": tid,
            "workspace_name": f"{tid} workspace",
            "database": db,
            "permissions": {"ops": ["restore"], "maker": ["create"]},
        }
        for tid, db in databases.items()
    ]
    return EngineContext(settings, TenantRegistry.from_data({"tenants": tenants}))


def _backup(ctx: EngineContext, tenant_id: str, day: int) -> str:
    outcome = backup_tenant(ctx, ctx.tenant(tenant_id), "manual", now=T0 + timedelta(days=day))
    return outcome.entry.file


def _seed(db) -> None:
    db.invoices.insert_many(
        [
            {"_id": i, "number": f"INV-{i:04d}", "total": 100 + i, "status": "open"}
            for i in range(40)
        ]
    )
    db.invoices.create_index("number", unique=True)
    db.employees.insert_many([{"name": f"e{i}", "dept": {"name": "ops"}} for i in range(10)])
    db.create_collection("audit", validator={"$jsonSchema": {"required": ["at"]}})
    db.audit.insert_one({"at": 1})
    db.command(
        "create", "open_invoices", viewOn="invoices", pipeline=[{"$match": {"status": "open"}}]
    )
    db.create_collection("scratch")
    db.scratch.insert_many([{"x": i} for i in range(3)])


def test_diff_of_two_backups_counts_documents_indexes_options_views(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    db = mongo_client[mongo_db_name]
    _seed(db)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    first = _backup(ctx, "acme", 0)

    db.invoices.insert_many([{"_id": 100 + i, "number": f"INV-{100 + i}"} for i in range(3)])
    db.invoices.delete_many({"_id": {"$in": [0, 1]}})
    for i in (5, 6, 7, 8):
        db.invoices.update_one({"_id": i}, {"$set": {"status": "paid"}})
    db.invoices.update_one({"_id": 9}, {"$set": {"status": "open"}})  # same value: no change
    db.invoices.create_index("total")
    db.command("collMod", "audit", validator={"$jsonSchema": {"required": ["at", "who"]}})
    db.drop_collection("open_invoices")  # the view, re-created with another pipeline
    db.command("create", "open_invoices", viewOn="invoices", pipeline=[{"$match": {"total": 1}}])
    db.drop_collection("scratch")
    db.create_collection("notes")
    db.notes.insert_one({"text": "new"})
    second = _backup(ctx, "acme", 1)

    result = diff_backups(ctx, ctx.tenant("acme"), first, second, actor="ops", show=5)
    rows = {r["Collection"]: r for r in result.to_frame().to_dict("records")}
    assert rows["invoices"] | {"Kind": None} == {
        "Collection": "invoices",
        "Kind": None,
        "Status": "changed",
        "Docs A": 40,
        "Docs B": 41,
        "Added": 3,
        "Removed": 2,
        "Changed": 4,
        "Indexes": "+total_1",
        "Options": "",
    }
    by_name = {c.name: c for c in result.collections}
    assert sorted(by_name["invoices"].removed_ids) == ["0", "1"]
    assert sorted(by_name["invoices"].changed_ids) == ["5", "6", "7", "8"]
    assert rows["audit"]["Options"] == "~validator"
    assert rows["audit"]["Status"] == "changed"
    assert rows["open_invoices"]["Kind"] == "view"
    assert rows["open_invoices"]["Options"] == "~pipeline"
    assert rows["employees"]["Status"] == "same"
    assert (rows["scratch"]["Status"], rows["scratch"]["Removed"]) == ("gone", 3)
    assert (rows["notes"]["Status"], rows["notes"]["Added"]) == ("new", 1)
    assert result.totals()["added"] == 4
    assert "| invoices | collection | changed | 40 | 41 | 3 | 2 | 4 | +total_1 |" in (
        result.to_markdown()
    )

    same = diff_backups(ctx, ctx.tenant("acme"), second, second, actor="ops")
    assert same.identical


def test_diff_against_live_reads_the_database(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    db = mongo_client[mongo_db_name]
    _seed(db)
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    file = _backup(ctx, "acme", 0)
    db.employees.delete_one({"name": "e3"})
    db.invoices.update_one({"_id": 7}, {"$inc": {"total": 1}})
    db.invoices.drop_index("number_1")
    db.scratch.insert_one({"x": 99})

    result = diff_backups(ctx, ctx.tenant("acme"), file, "live", actor="ops", show=3)
    assert result.b == "live"
    got = {c.name: (c.added, c.removed, c.changed, c.indexes) for c in result.collections}
    assert got == {
        "audit": (0, 0, 0, []),
        "employees": (0, 1, 0, []),
        "invoices": (0, 0, 1, ["-number_1"]),
        "open_invoices": (0, 0, 0, []),
        "scratch": (1, 0, 0, []),
    }
    assert {c.name: c.changed_ids for c in result.collections}["invoices"] == ["7"]


def _archive(collections: dict[str, list[dict]], order: list[tuple[str, int, int]]) -> bytes:
    """An archive whose segments come in ``order``: (collection, first doc, end doc)."""
    out = io.BytesIO()
    writer = ArchiveWriter(out)
    writer.write_prelude(
        ArchiveHeader(server_version="8.0.0", tool_version="test"),
        [CollectionMetadata(db="d", collection=n) for n in collections],
    )
    crcs = {n: Crc64() for n in collections}
    seen = {n: 0 for n in collections}
    for name, start, end in order:
        raw = b"".join(bson.encode(d) for d in collections[name][start:end])
        writer.write_segment("d", name, raw)
        crcs[name].update(raw)
        seen[name] = end
        if end == len(collections[name]):
            writer.write_eof("d", name, crcs[name].value)
    return out.getvalue()


def test_diff_is_exact_when_archives_interleave_or_differ_in_order():
    a_docs = {
        "x": [{"_id": i, "v": i} for i in range(50)],
        "y": [{"_id": ObjectId(f"{i:024x}"), "v": 0} for i in range(30)],
    }
    b_docs = {
        "x": [{"_id": i, "v": i if i % 10 else -1} for i in range(5, 60)],
        "y": [{"_id": ObjectId(f"{i:024x}"), "v": 0} for i in range(31)],
    }
    a = _archive(a_docs, [("x", 0, 20), ("y", 0, 10), ("x", 20, 50), ("y", 10, 30)])
    b = _archive(b_docs, [("y", 0, 31), ("x", 0, 55)])  # the other order
    result = diff_snapshots(
        ArchiveSnapshot(io.BytesIO(a), "a"), ArchiveSnapshot(io.BytesIO(b), "b"), show=2
    )
    got = {c.name: (c.added, c.removed, c.changed) for c in result.collections}
    # x: 50..59 added, 0..4 removed, 10,20,30,40 changed (0 is removed)
    assert got == {"x": (10, 5, 4), "y": (1, 0, 0)}
    assert {c.name: c.added_ids for c in result.collections}["y"] == [f"{30:024x}"]
    # Out of order, both sides hold what they started and the other did not finish: when B
    # ends y, A holds x (50) and y so far (10), B holds y (31).
    assert result.peak_entries == 50 + 10 + 31


def test_diff_holds_one_collection_at_a_time_when_orders_agree():
    docs = {"a": [{"_id": i} for i in range(30)], "b": [{"_id": i} for i in range(50)]}
    order = [("a", 0, 30), ("b", 0, 25), ("b", 25, 50)]
    one, two = _archive(docs, order), _archive(docs, order)
    result = diff_snapshots(
        ArchiveSnapshot(io.BytesIO(one), "1"), ArchiveSnapshot(io.BytesIO(two), "2")
    )
    assert result.identical
    assert result.peak_entries == 50  # the largest collection, not 80 (all) nor 100 (both sides)


def test_raw_id_is_found_anywhere_and_shown_as_typed():
    for value, shown in [
        (ObjectId("65a1f0c2e4b0a1b2c3d4e5f6"), "65a1f0c2e4b0a1b2c3d4e5f6"),
        (42, "42"),
        (Int64(7), "7"),
        ("INV-1", "INV-1"),
    ]:
        first = bson.encode({"_id": value, "a": [1, {"b": "c"}]})
        later = bson.encode({"a": [1, {"b": "c"}], "s": "x", "r": bson.Regex("a"), "_id": value})
        assert id_key(first) == id_key(later)
        assert show_id(id_key(later)) == shown
    with pytest.raises(ArchiveCorrupt, match="no _id"):
        id_key(bson.encode({"a": 1}))


def test_where_values_follow_the_documented_rule():
    doc = {
        "_id": ObjectId("65a1f0c2e4b0a1b2c3d4e5f6"),
        "total": Int64(100),
        "code": "100",
        "lines": [{"sku": "a"}, {"sku": "b"}],
        "tags": ["x", "y"],
        "paid": True,
    }
    assert matches(doc, parse_where("total=100"))
    assert matches(doc, parse_where("total=100.0"))
    assert not matches(doc, parse_where('total="100"'))
    assert matches(doc, parse_where('code="100"'))
    assert not matches(doc, parse_where("code=100"))
    assert matches(doc, parse_where("_id=65a1f0c2e4b0a1b2c3d4e5f6"))
    assert not matches(doc, parse_where('_id="65a1f0c2e4b0a1b2c3d4e5f6"'))
    assert matches(doc, parse_where("lines.sku=b"))
    assert matches(doc, parse_where("lines.1.sku=b"))
    assert matches(doc, parse_where("tags=y"))
    assert matches(doc, parse_where("paid=true"))
    assert not matches(doc, parse_where("paid=1"))
    for bad in ("total", "=3", "a..b=1", "$where=1"):
        with pytest.raises(QueryError):
            parse_where(bad)


def test_find_follows_an_invoice_across_three_snapshots(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    db = mongo_client[mongo_db_name]
    db.invoices.insert_many(
        [{"_id": i, "number": f"INV-{i:04d}", "total": 10, "status": "open"} for i in range(60)]
    )
    db.other.insert_one({"number": "INV-0042"})
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    s1 = _backup(ctx, "acme", 0)
    db.invoices.update_one({"_id": 42}, {"$set": {"total": 120}, "$unset": {"status": ""}})
    s2 = _backup(ctx, "acme", 1)
    db.invoices.update_one({"_id": 42}, {"$set": {"number": "INV-0042-X", "paid_at": "2026-11-03"}})
    s3 = _backup(ctx, "acme", 2)

    seen: list[tuple[int, int, str]] = []
    result = find_versions(
        ctx,
        tenant,
        "invoices",
        ["number=INV-0042"],
        actor="ops",
        progress=lambda n, total, f: seen.append((n, total, f)),
    )
    assert seen == [(1, 3, s1), (2, 3, s2), (3, 3, s3)]
    rows = result.to_frame().to_dict("records")
    assert [(r["Snapshot"], r["_id"], r["Status"]) for r in rows] == [
        (s3, "42", "changed (no longer matches)"),
        (s2, "42", "changed"),
        (s1, "42", "new"),
    ]
    assert rows[0]["Changes"] == "~number: INV-0042 -> INV-0042-X; +paid_at: 2026-11-03"
    assert rows[1]["Changes"] == "~total: 10 -> 120; -status: open"
    assert result.holding() == [s2, s1]  # the newest that still has the old number: s2

    by_id = find_versions(
        ctx, tenant, "invoices", ["_id=42", "total=10"], actor="ops", files=[s1, s2]
    )
    assert [(v.file, v.status, v.matches) for v in by_id.versions] == [
        (s2, "changed", False),
        (s1, "new", True),
    ]
    since = find_versions(
        ctx, tenant, "invoices", ["_id=42"], actor="ops", since=T0 + timedelta(days=2)
    )
    assert [v.file for v in since.versions] == [s3]


def test_refusals_are_one_line_and_read_nothing_else(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url, request
):
    db = mongo_client[mongo_db_name]
    db.invoices.insert_many([{"number": f"INV-{i}"} for i in range(5)])
    mongo_client[f"{mongo_db_name}_b"].things.insert_one({"a": 1})
    request.addfinalizer(lambda: mongo_client.drop_database(f"{mongo_db_name}_b"))
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name, "beta": f"{mongo_db_name}_b"})
    acme = ctx.tenant("acme")
    mine = _backup(ctx, "acme", 0)
    theirs = _backup(ctx, "beta", 0)

    def refused(exc_type, match, call):
        with pytest.raises(exc_type, match=match) as info:
            call()
        assert "\n" not in str(info.value)

    refused(
        PermissionDenied,
        "an actor is needed",
        lambda: diff_backups(ctx, acme, mine, "live", actor=None),
    )
    refused(
        PermissionDenied,
        "'maker' may not read",
        lambda: find_versions(ctx, acme, "invoices", ["a=1"], actor="maker"),
    )
    refused(
        ObjectNotFound,
        "is not a backup of tenant 'acme'",
        lambda: diff_backups(ctx, acme, theirs, "live", actor="ops"),
    )
    refused(
        ObjectNotFound,
        "is not a backup",
        lambda: diff_backups(
            ctx, acme, mine, "manual_20260101T000000Z_00000000.gz.enc", actor="ops"
        ),
    )
    refused(
        InvalidName,
        "not a backup file name",
        lambda: diff_backups(ctx, acme, "../beta/x", "live", actor="ops"),
    )
    refused(
        QueryError,
        "not field=value",
        lambda: find_versions(ctx, acme, "invoices", ["number"], actor="ops"),
    )
    refused(
        QueryError,
        "no snapshot has a document with field 'numbr'",
        lambda: find_versions(ctx, acme, "invoices", ["numbr=INV-1"], actor="ops"),
    )
    refused(
        QueryError,
        "no collection 'invoicez'.*invoices",
        lambda: find_versions(ctx, acme, "invoicez", ["number=INV-1"], actor="ops"),
    )
    assert find_versions(ctx, acme, "invoices", ["number=INV-9"], actor="ops").documents == 0

    other_key = _ctx(
        mongo_uri,
        local_storage_url,
        {"acme": mongo_db_name},
        key=base64.b64encode(os.urandom(32)).decode(),
    )
    refused(
        WrongKey,
        mine,
        lambda: diff_backups(other_key, other_key.tenant("acme"), mine, "live", actor="ops"),
    )

    stored = Path(local_storage_url.removeprefix("file://")) / "acme" / "db-backups" / mine
    data = stored.read_bytes()
    stored.write_bytes(data[: len(data) // 2])
    refused(ArchiveCorrupt, mine, lambda: diff_backups(ctx, acme, mine, "live", actor="ops"))


def test_a_legacy_plaintext_backup_diffs_like_an_encrypted_one(
    mongo_client, mongo_uri, mongo_db_name, local_storage_url
):
    from daai_backup.format.dbk1 import open_plaintext
    from daai_backup.repository.names import BackupName

    mongo_client[mongo_db_name].items.insert_many([{"_id": i} for i in range(20)])
    ctx = _ctx(mongo_uri, local_storage_url, {"acme": mongo_db_name})
    tenant = ctx.tenant("acme")
    encrypted = _backup(ctx, "acme", 0)
    folder = ctx.folder(tenant)
    with folder.open(encrypted) as stored:
        plain = open_plaintext(stored, ctx.settings.keyring, "acme", name=encrypted).read()
    legacy = BackupName("manual", T0 - timedelta(days=1), "0123abcd", encrypted=False)
    folder.write(legacy, io.BytesIO(plain))
    mongo_client[mongo_db_name].items.delete_one({"_id": 3})

    result = diff_backups(ctx, tenant, legacy.filename, "live", actor="ops", show=1)
    assert [(c.name, c.removed, c.removed_ids) for c in result.collections] == [("items", 1, ["3"])]
    assert diff_backups(ctx, tenant, legacy.filename, encrypted, actor="ops").identical
