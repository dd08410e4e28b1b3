"""Settings come from the environment and .env; secrets never show."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import ValidationError

from daai_backup.errors import KeyInvalid, KeyMissing
from daai_backup.settings import Settings

KEY = base64.b64encode(bytes(range(32))).decode()


def test_documented_names_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("DAAI_BACKUP_STORAGE_URL", "s3://bucket/prefix/")
    monkeypatch.setenv("DAAI_BACKUP_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("DAAI_BACKUP_CONTROL_DATABASE", "backup_leases")
    settings = Settings()
    assert settings.storage_url == "s3://bucket/prefix"
    assert settings.control_database == "backup_leases"
    assert settings.timezone == "Europe/Berlin"
    assert settings.keyring.require_current().fingerprint
    assert KEY not in repr(settings)
    assert KEY not in str(settings.model_dump())


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        f"BACKUP_ENCRYPTION_KEY={KEY}\nDAAI_BACKUP_TENANTS_FILE=t.yaml\n"
    )
    settings = Settings()
    assert settings.tenants_file == Path("t.yaml")
    assert settings.keyring.current is not None


def test_default_storage_is_a_local_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings().storage_url == (tmp_path / "var" / "storage").as_uri()


def test_missing_and_malformed_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyMissing, match="BACKUP_ENCRYPTION_KEY is not set"):
        Settings().keyring.require_current()
    with pytest.raises(KeyInvalid):
        _ = Settings(backup_encryption_key="not-base64!").keyring
    short = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(KeyInvalid):
        _ = Settings(backup_encryption_key=short).keyring


def test_previous_keys_are_comma_separated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    other = base64.b64encode(bytes(range(1, 33))).decode()
    settings = Settings(backup_encryption_previous_keys=f"{KEY}, {other}")
    assert settings.keyring.current is None
    assert len(settings.keyring.previous) == 2


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match="unknown time zone"):
        Settings(timezone="Nowhere/Land")
    with pytest.raises(ValidationError, match="file:///absolute/path"):
        Settings(storage_url="relative/path")
    assert Settings().control_database == "daai_backup_control"
    for name in ("", "a.b", "a b", "a/b", "x" * 64):
        with pytest.raises(ValidationError, match="not a valid MongoDB database name"):
            Settings(control_database=name)
