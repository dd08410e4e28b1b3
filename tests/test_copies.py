"""Restore into a copy (issue 11): the copy is the backup exactly, live is untouched, names
are refused, copies expire, a failed load leaves nothing that passes for a copy."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mongo.mongo_state import db_state

from daai_backup.errors import ArchiveCorrupt, CopyRefused, InvalidName, PermissionDenied
from daai_backup.mongo.copies import MARKER
from daai_backup.mongo.swap import _SimulatedCrash
from daai_backup.operations import (
    EngineContext,
    backup_tenant,
    drop_copy,
    drop_expired_copies,
    list_copies,
    restore_copy,
)
from daai_backup.settings import Settings
from daai_backup.tenants import TenantRegistry

KEY = base64.b64encode(os.urandom(32)).decode()
OPS = "ops@example.com"


def _ctx(mongo_uri: str, storage_url: str, databases: dict[str, str], **settings: Any) -> Any:
    tenants = [
        {
            "id": tid,
            "workspace_name": f"{tid} workspace",
            "database": db,
            "permissions": {OPS: ["create", "restore"], "viewer@example.com": ["create"]},
        }
        for tid, db in databases.items()
    ]
    return EngineContext(
        Settings(
            backup_encryption_key=KEY,
            mongodb_uri=mongo_uri,
            storage_url=storage_url,
            tenants_file=Path("unused.yaml"),
            **settings,
        ),
        TenantRegistry.from_data({"tenants": tenants}),
    )


@pytest.fixture
def names(mongo_client: Any) -> Iterator[list[str]]:
    """Copy database names for one test (unique), dropped afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        mongo_client.drop_database(name)


def _name(names: list[str], what: str = "copy") -> str:
    name = f"{what}_{uuid.uuid4().hex[:10]}"
    names.append(name)
    return name


def _seed(client: Any, name: str) -> None:
    db = client[name]
    db.create_collection("people", validator={"$jsonSchema": {"required": ["name"]}})
    db.people.insert_many([{"_id": i, "name": f"p{i}", "team": i % 3} for i in range(40)])
    db.people.create_index([("team", 1), ("name", 1)], name="by_team", unique=True)
    db.create_collection("audit", capped=True, size=65536)
    db.audit.insert_one({"event": "seeded"})
    db.command("create", "big_teams", viewOn="people", pipeline=[{"$match": {"team": 2}}])


def _copy_state(client: Any, name: str) -> dict[str, Any]:
    return {k: v for k, v in db_state(client, name).items() if k != MARKER}


def test_the_copy_is_the_backup_exactly_while_live_is_untouched(
    mongo_client: Any, mongo_uri: str, mongo_db_name: str, names: list[str]
) -> None:
    _seed(mongo_client, mongo_db_name)
    ctx = _ctx(mongo_uri, f"memory://copies-{uuid.uuid4().hex[:8]}", {"hr": mongo_db_name})
    hr = ctx.tenant("hr")
    at_backup = db_state(mongo_client, mongo_db_name)
    file = backup_tenant(ctx, hr, "manual").entry.file
    live = mongo_client[mongo_db_name]
    live.people.delete_many({"_id": {"$lt": 10}})
    live.people.create_index("team", name="after_backup")
    live.drop_collection("audit")
    live.create_collection("new_since")
    changed = db_state(mongo_client, mongo_db_name)

    into = _name(names)
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    outcome = restore_copy(ctx, hr, file, into, actor=OPS, now=now)

    assert _copy_state(mongo_client, into) == at_backup
    assert db_state(mongo_client, mongo_db_name) == changed
    assert (outcome.collections, outcome.documents, outcome.views) == (2, 41, 1)
    assert outcome.expires_at == now + timedelta(days=3)
    [listed] = list_copies(ctx, hr)
    assert (listed.database, listed.file, listed.actor, listed.ready) == (into, file, OPS, True)
    assert listed.expires_at == now + timedelta(days=3)

    # Again into the same copy: refused unless replace, then replaced by the other backup.
    live.people.insert_one({"_id": 999, "name": "later"})
    second = backup_tenant(ctx, hr, "manual", now=datetime.now(UTC) + timedelta(seconds=1))
    with pytest.raises(CopyRefused, match="--replace"):
        restore_copy(ctx, hr, second.entry.file, into, actor=OPS)
    assert _copy_state(mongo_client, into) == at_backup
    restore_copy(ctx, hr, second.entry.file, into, actor=OPS, replace=True)
    assert _copy_state(mongo_client, into) == db_state(mongo_client, mongo_db_name)
    assert [c.file for c in list_copies(ctx, hr)] == [second.entry.file]
    ctx.close()


def test_copy_refusals_change_nothing(
    mongo_client: Any, mongo_uri: str, mongo_db_name: str, names: list[str]
) -> None:
    other_db = _name(names, "tenant")
    mongo_client[mongo_db_name].people.insert_one({"name": "a"})
    mongo_client[other_db].people.insert_one({"name": "b"})
    ctx = _ctx(
        mongo_uri,
        f"memory://copies-{uuid.uuid4().hex[:8]}",
        {"hr": mongo_db_name, "crm": other_db},
    )
    hr, crm = ctx.tenant("hr"), ctx.tenant("crm")
    file = backup_tenant(ctx, hr, "manual").entry.file
    crm_file = backup_tenant(ctx, crm, "manual").entry.file
    plain = _name(names, "plain")
    mongo_client[plain].things.insert_one({"x": 1})
    twin = _name(names, "Twin")
    mongo_client[twin].things.insert_one({"x": 1})
    crm_copy = _name(names)
    restore_copy(ctx, crm, crm_file, crm_copy, actor=OPS)
    before = sorted(mongo_client.list_database_names())

    refused: dict[str, type[Exception]] = {
        mongo_db_name: InvalidName,  # this tenant's live database
        other_db: InvalidName,  # another tenant's live database
        other_db.upper(): InvalidName,  # its case twin
        "admin": InvalidName,
        "Config": InvalidName,
        "daai_backup_control": InvalidName,
        "__daai_mine": InvalidName,
        "": InvalidName,
        "has.dot": InvalidName,
        "has space": InvalidName,
        'q"uote': InvalidName,
        "a/b": InvalidName,
        "nul\x00": InvalidName,
        "x" * 64: InvalidName,
        plain: CopyRefused,  # exists, not a copy
        twin.lower(): CopyRefused,  # differs only in case from an existing database
        crm_copy: CopyRefused,  # another tenant's copy
    }
    for into, error in refused.items():
        with pytest.raises(error) as caught:
            restore_copy(ctx, hr, file, into, actor=OPS, replace=True)
        assert "\n" not in str(caught.value)
    with pytest.raises(PermissionDenied):
        restore_copy(ctx, hr, file, _name(names), actor="viewer@example.com")
    with pytest.raises(CopyRefused, match="not a copy of tenant 'hr'"):
        drop_copy(ctx, hr, crm_copy, actor=OPS)
    with pytest.raises(InvalidName):
        drop_copy(ctx, hr, other_db, actor=OPS)

    assert sorted(mongo_client.list_database_names()) == before
    assert list_copies(ctx, hr) == []  # a tenant sees only its own copies
    assert [c.database for c in list_copies(ctx, crm)] == [crm_copy]
    assert mongo_client[plain].list_collection_names() == ["things"]
    assert drop_copy(ctx, crm, crm_copy, actor=OPS).database == crm_copy
    assert crm_copy not in mongo_client.list_database_names()
    ctx.close()


def test_the_sweep_drops_expired_copies_and_keeps_fresh_ones(
    mongo_client: Any, mongo_uri: str, mongo_db_name: str, names: list[str]
) -> None:
    mongo_client[mongo_db_name].people.insert_one({"name": "a"})
    ctx = _ctx(
        mongo_uri,
        f"memory://copies-{uuid.uuid4().hex[:8]}",
        {"hr": mongo_db_name},
        copy_ttl_days=2,
    )
    hr = ctx.tenant("hr")
    file = backup_tenant(ctx, hr, "manual").entry.file
    now = datetime.now(UTC)
    old, fresh = _name(names), _name(names)
    restore_copy(ctx, hr, file, old, actor=OPS, now=now - timedelta(days=2, minutes=1))
    restore_copy(ctx, hr, file, fresh, actor=OPS, now=now - timedelta(days=1))

    dropped = drop_expired_copies(ctx, now=now)

    assert [c.database for c in dropped] == [old]
    assert [c.database for c in list_copies(ctx, hr)] == [fresh]
    assert old not in mongo_client.list_database_names()
    assert drop_expired_copies(ctx, now=now + timedelta(days=1, minutes=1))[0].database == fresh
    ctx.close()


def test_a_load_that_fails_midway_leaves_nothing_that_passes_for_a_copy(
    mongo_client: Any, mongo_uri: str, mongo_db_name: str, local_storage_url: str, names: list[str]
) -> None:
    # Three 1 MiB DBK1 segments: the first collection is loaded before the last segment fails.
    db = mongo_client[mongo_db_name]
    db.first.insert_many([{"_id": i, "blob": os.urandom(4096)} for i in range(400)])
    db.second.insert_many([{"_id": i, "blob": os.urandom(4096)} for i in range(300)])
    ctx = _ctx(mongo_uri, local_storage_url, {"hr": mongo_db_name})
    hr = ctx.tenant("hr")
    file = backup_tenant(ctx, hr, "manual").entry.file
    stored = Path(local_storage_url.removeprefix("file://")) / "hr" / "db-backups" / file
    data = bytearray(stored.read_bytes())
    assert len(data) > 2 * 1024 * 1024
    data[-100] ^= 0x01
    stored.write_bytes(bytes(data))

    into = _name(names)
    read: list[int] = []
    with pytest.raises(ArchiveCorrupt):
        restore_copy(ctx, hr, file, into, actor=OPS, progress=lambda done, _: read.append(done))
    assert max(read) > 2 * 1024 * 1024  # it failed midway, not at the start
    assert list_copies(ctx, hr) == []
    assert into not in mongo_client.list_database_names()
    ctx.close()


def test_a_killed_load_is_listed_incomplete_and_swept(
    mongo_client: Any, mongo_uri: str, mongo_db_name: str, names: list[str]
) -> None:
    mongo_client[mongo_db_name].people.insert_many([{"n": i} for i in range(20)])
    ctx = _ctx(mongo_uri, f"memory://copies-{uuid.uuid4().hex[:8]}", {"hr": mongo_db_name})
    hr = ctx.tenant("hr")
    file = backup_tenant(ctx, hr, "manual").entry.file
    into = _name(names)
    with pytest.raises(_SimulatedCrash):
        restore_copy(ctx, hr, file, into, actor=OPS, _fail_at="load")
    [left] = list_copies(ctx, hr)
    assert (left.database, left.ready) == (into, False)

    assert [c.database for c in drop_expired_copies(ctx)] == [into]
    assert into not in mongo_client.list_database_names()
    ctx.close()


def test_a_tenant_onboarded_onto_a_copy_is_not_backed_up_as_its_own(
    mongo_client: Any, mongo_uri: str, mongo_db_name: str, names: list[str]
) -> None:
    """alpha's copy named gamma_db, then tenant gamma registered with database gamma_db:
    gamma's backups must not take alpha's data for gamma's (one line, whose copy it is)."""
    from daai_backup.operations import preflight_backup

    _seed(mongo_client, mongo_db_name)
    storage = f"memory://copies-{uuid.uuid4().hex[:8]}"
    ctx = _ctx(mongo_uri, storage, {"alpha": mongo_db_name})
    alpha = ctx.tenant("alpha")
    file = backup_tenant(ctx, alpha, "manual").entry.file
    target = _name(names, "gamma")
    restore_copy(ctx, alpha, file, target, actor=OPS)

    later = _ctx(mongo_uri, storage, {"alpha": mongo_db_name, "gamma": target})
    with pytest.raises(CopyRefused, match="holds a restore copy made for tenant 'alpha'") as no:
        preflight_backup(later, later.tenant("gamma"), "manual", actor=OPS)
    assert "\n" not in str(no.value)
