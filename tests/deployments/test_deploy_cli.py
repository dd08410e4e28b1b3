"""``daai-backup deploy`` and ``notify`` as a user runs them (Typer, in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from cli.main import app
from deployments import build


@pytest.fixture
def tenants_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no developer .env
    path = tmp_path / "tenants.yaml"
    monkeypatch.setenv("DAAI_BACKUP_TENANTS_FILE", str(path))
    monkeypatch.setenv("DAAI_BACKUP_STORAGE_URL", (tmp_path / "storage").as_uri())
    return path


def _write(path: Path, *tenants: dict[str, object]) -> None:
    path.write_text(yaml.safe_dump({"tenants": list(tenants)}))


def test_deploy_registers_and_reports(clean_server: str, tenants_file: Path) -> None:
    _write(tenants_file, {"id": "acme-hr", "workspace_name": "Acme HR"})
    runner = CliRunner()
    first = runner.invoke(app, ["deploy"])
    assert first.exit_code == 0, first.output
    assert "created  backup/backup-acme-hr" in first.output
    total = len(build.ROLES)  # one per operation, plus acme-hr's backup deployment
    assert f"deployments: {total} created" in first.output
    again = runner.invoke(app, ["deploy"])
    assert again.exit_code == 0, again.output
    assert (
        f"0 created, 0 updated, 0 removed, 0 paused, 0 resumed, {total} unchanged" in again.output
    )

    pooled = runner.invoke(app, ["deploy", "--work-pool", "cli-pool"])
    assert pooled.exit_code == 0, pooled.output
    assert "created process work pool 'cli-pool'" in pooled.output
    assert "prefect worker start --pool cli-pool" in pooled.output
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("backup/backup-acme-hr")
    assert deployment.work_pool_name == "cli-pool"


def test_deploy_refuses_daily_on_production_in_one_line(
    clean_server: str, tenants_file: Path
) -> None:
    _write(tenants_file, {"id": "acme-hr", "workspace_name": "Acme", "frequency": "daily"})
    result = CliRunner().invoke(app, ["deploy"])
    assert result.exit_code == 1
    assert "tenant 'acme-hr'" in result.output
    assert "sandbox workspaces only" in result.output
    assert "Traceback" not in result.output


def test_notify_rejects_a_non_url(prefect_api_url: str) -> None:
    result = CliRunner().invoke(app, ["notify", "--webhook", "hooks.example/x"])
    assert result.exit_code == 1
    assert "must start with http" in result.output
