"""`doctor --keys` / `--retire`: which keys files still need, and refusing to drop one early."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import KEY
from typer.testing import Result

from daai_backup.format.keys import parse_master_key
from daai_backup.operations import backup_tenant, load_context, rekey_tenant

NEW = base64.b64encode(os.urandom(32)).decode()
OLD_FP = parse_master_key(KEY).fingerprint
NEW_FP = parse_master_key(NEW).fingerprint


def test_doctor_counts_keys_and_refuses_to_retire_a_needed_one(
    cli_env: Path,
    run_cli: Callable[..., Result],
    mongo_client: Any,
    mongo_db_name: str,
    monkeypatch: Any,
) -> None:
    mongo_client[mongo_db_name].items.insert_many([{"i": i} for i in range(5)])
    ctx = load_context()
    backup_tenant(ctx, ctx.tenant("acme"), "manual")
    ctx.close()
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", NEW)
    monkeypatch.setenv("BACKUP_ENCRYPTION_PREVIOUS_KEYS", KEY)

    shown = run_cli("doctor", "--keys")
    assert shown.exit_code == 0, shown.output
    assert f"key {NEW_FP} (current): 0 file(s) in 0 tenant(s)" in shown.output
    assert (
        f"key {OLD_FP} (previous): 2 file(s) still need it, in acme (2): run "
        "`daai-backup rekey --all`, then retire it"
    ) in shown.output

    refused = run_cli("doctor", "--retire", OLD_FP)
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        f"error: key {OLD_FP} cannot be retired: 2 file(s) still need it, in tenant(s) "
        "acme (2); run `daai-backup rekey --all` first"
    ]

    # Dropping the key too early: doctor names the files that need it.
    monkeypatch.delenv("BACKUP_ENCRYPTION_PREVIOUS_KEYS")
    dropped = run_cli("doctor", "--keys")
    assert dropped.exit_code == 1
    assert (
        f"FAIL key {OLD_FP} is not configured but 2 file(s) need it, in acme (2): add it "
        "back to BACKUP_ENCRYPTION_PREVIOUS_KEYS"
    ) in dropped.output

    monkeypatch.setenv("BACKUP_ENCRYPTION_PREVIOUS_KEYS", KEY)
    ctx = load_context()
    rekey_tenant(ctx, ctx.tenant("acme"))
    ctx.close()
    done = run_cli("doctor", "--keys")
    assert f"key {OLD_FP} (previous): reads nothing, no file needs it" in done.output
    retired = run_cli("doctor", "--retire", OLD_FP)
    assert retired.exit_code == 0, retired.output
    assert f"key {OLD_FP}: no file needs it any more" in retired.output


def test_bad_keys_are_one_line_each(
    cli_env: Path, run_cli: Callable[..., Result], monkeypatch: Any
) -> None:
    assert run_cli("doctor", "--retire", "nothex").output.strip() == (
        "error: --retire 'nothex' is not a key fingerprint: give the 16 hex characters "
        "`daai-backup doctor` shows for the key"
    )
    current = run_cli("doctor", "--retire", OLD_FP)
    assert current.exit_code == 1
    assert f"key {OLD_FP} is the current BACKUP_ENCRYPTION_KEY" in current.output
    monkeypatch.setenv("BACKUP_ENCRYPTION_PREVIOUS_KEYS", KEY)
    same = run_cli("doctor", "--keys")
    assert same.exit_code == 1
    assert same.output.strip().splitlines() == [
        f"error: BACKUP_ENCRYPTION_PREVIOUS_KEYS entry 1 is the same key as "
        f"BACKUP_ENCRYPTION_KEY (fingerprint {OLD_FP}): remove it from "
        "BACKUP_ENCRYPTION_PREVIOUS_KEYS"
    ]
    monkeypatch.setenv("BACKUP_ENCRYPTION_PREVIOUS_KEYS", "garbage!")
    malformed = run_cli("doctor", "--keys")
    assert malformed.exit_code == 1
    assert len(malformed.output.strip().splitlines()) == 1
    assert "BACKUP_ENCRYPTION_PREVIOUS_KEYS entry 1 is not valid base64" in malformed.output
