"""Run the real CLI app in-process with a test environment (tenants file, storage, key)."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import cli.main  # noqa: F401  (registers every command module)
from cli.app import app

KEY = base64.b64encode(os.urandom(32)).decode()

TENANTS = """
tenants:
  - id: acme
    workspace_name: Acme Payroll
    database: {db}
    timezone: Europe/Berlin
    storage_quota_mb: 50
    permissions:
      ops@acme.test: [create, restore]
      viewer@acme.test: []
  - id: beta
    workspace_name: Beta CRM
    database: {db}_beta
"""


@pytest.fixture
def cli_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mongo_uri: str, mongo_db_name: str
) -> Path:
    """A working directory with a tenants file; the environment points at real servers."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tenants.yaml").write_text(TENANTS.format(db=mongo_db_name))
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("DAAI_BACKUP_MONGODB_URI", mongo_uri)
    monkeypatch.setenv("DAAI_BACKUP_TENANTS_FILE", str(tmp_path / "tenants.yaml"))
    monkeypatch.setenv("DAAI_BACKUP_STORAGE_URL", (tmp_path / "storage").as_uri())
    (tmp_path / "storage").mkdir()
    return tmp_path


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return run
