"""The rekey flow through `daai-backup rekey`: every tenant re-encrypted, a table artifact."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flowkit import FlowEnv, artifact, seed
from typer.testing import CliRunner

import cli.main  # noqa: F401  (registers every command module)
from cli.app import app
from daai_backup.format.keys import generate_master_key, parse_master_key
from daai_backup.operations import backup_tenant, key_census


@pytest.fixture
def databases(mongo_client: Any) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        mongo_client.drop_database(name)


def test_rekey_all_rotates_every_tenant_and_reports(
    flow_env: FlowEnv, mongo_client: Any, databases: list[str]
) -> None:
    tenants = []
    for _ in range(2):
        name = f"t_{uuid.uuid4().hex[:12]}"
        databases.append(name)
        seed(mongo_client, name, docs=5, blob=16)
        tenants.append(flow_env.add_tenant(name))
    ctx = flow_env.context()
    for tid in tenants:
        backup_tenant(ctx, ctx.tenant(tid), "24-hour")
    ctx.close()
    old = os.environ["BACKUP_ENCRYPTION_KEY"]
    new = generate_master_key()
    flow_env.monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", new)
    flow_env.monkeypatch.setenv("BACKUP_ENCRYPTION_PREVIOUS_KEYS", old)

    refused = CliRunner().invoke(app, ["rekey"], catch_exceptions=False)
    assert refused.exit_code == 1
    assert "say which tenants to rekey: --tenant T, or --all" in refused.output

    shown = CliRunner().invoke(app, ["rekey", "--all"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    fingerprint = parse_master_key(new).fingerprint
    assert f"every file is under key {fingerprint}" in shown.output
    for tid in tenants:
        assert f"{tid}: re-encrypted 1 backup(s), 1 manifest(s)" in shown.output
    table = artifact("rekey")
    assert table is not None
    assert f"Rekey to key {fingerprint}: 2 of 2 tenants done" in table.description
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType

    with get_client(sync_client=True) as client:
        bars = client.read_artifacts(
            artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"]))
        )
    ours = [b for b in bars if (b.description or "").startswith("Rekey of 2 tenant(s)")]
    assert [b.data for b in ours] == [100.0]
    flow_env.monkeypatch.delenv("BACKUP_ENCRYPTION_PREVIOUS_KEYS")
    ctx = flow_env.context()
    try:
        for tid in tenants:
            assert key_census(ctx, ctx.tenant(tid)).by_key == {fingerprint: 3}
    finally:
        ctx.close()
