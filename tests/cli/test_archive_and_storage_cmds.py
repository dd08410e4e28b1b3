"""The CLI: exit codes, one-line messages, and what each command prints."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

from bson import ObjectId

from daai_backup.operations import backup_tenant, load_context, next_backup


def _one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    out = result.output.strip()
    assert out.startswith("error:"), out
    assert fragment in out, out
    assert "Traceback" not in out


def _backup(mongo_client, db_name: str, note: str | None = None) -> str:
    mongo_client[db_name].people.insert_many([{"_id": ObjectId(), "n": i} for i in range(20)])
    ctx = load_context()
    return backup_tenant(ctx, ctx.tenant("acme"), "manual", note=note).entry.file


def test_keygen_prints_a_valid_key(run_cli) -> None:
    result = run_cli("keygen")
    assert result.exit_code == 0
    key = result.stdout.strip().splitlines()[0]
    assert len(base64.b64decode(key, validate=True)) == 32


def test_doctor_reports_each_check_and_fails_without_a_key(cli_env, run_cli, monkeypatch) -> None:
    ok = run_cli("doctor")
    assert ok.exit_code == 0, ok.output
    lines = ok.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 5
    assert "change streams: replica set" in lines[-1]  # SecantusDB is a one-member set
    monkeypatch.delenv("BACKUP_ENCRYPTION_KEY")
    monkeypatch.setenv(
        "DAAI_BACKUP_MONGODB_URI", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"
    )
    bad = run_cli("doctor")
    assert bad.exit_code == 1
    text = bad.output
    assert "FAIL encryption key: BACKUP_ENCRYPTION_KEY is not set" in text
    assert "FAIL mongodb: cannot reach MongoDB" in text
    assert "ok   tenant registry" in text


def test_doctor_names_a_malformed_key(cli_env, run_cli, monkeypatch) -> None:
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "c2hvcnQ=")
    result = run_cli("doctor")
    assert result.exit_code == 1
    assert "FAIL encryption key" in result.output
    assert "32" in result.output


def test_list_inspect_decrypt_and_usage(cli_env, run_cli, mongo_client, mongo_db_name) -> None:
    empty = run_cli("list", "--tenant", "acme")
    assert empty.exit_code == 0
    assert "No backups yet" in empty.output
    # The real next slot (01:00 Berlin time plus the tenant's offset), not "01:00".
    ctx = load_context()
    at = next_backup(ctx, ctx.tenant("acme"))
    assert f"runs at {at:%Y-%m-%d %H:%M %Z} (15-day, Europe/Berlin time)" in empty.output
    assert "daai-backup backup --tenant acme" in empty.output

    file = _backup(mongo_client, mongo_db_name, note="before the audit")
    listed = json.loads(run_cli("list", "--tenant", "acme", "--json").stdout)
    assert [row["file"] for row in listed] == [file]
    assert listed[0]["note"] == "before the audit"
    assert listed[0]["encrypted"] is True
    assert listed[0]["taken_at"].endswith(("+01:00", "+02:00"))  # Europe/Berlin
    table = run_cli("list", "--tenant", "acme")
    assert file[:20] in table.output

    path = cli_env / "storage" / "acme" / "db-backups" / file
    info = json.loads(run_cli("inspect", str(path), "--json").stdout)
    assert info["tenant"] == "acme"
    assert info["encrypted"] is True
    assert len(info["key_fingerprint"]) == 16
    assert info["format"] == "DBK1"
    assert info["version"] == 2
    assert info["content_type"] == "backup-archive"
    assert info["name"] == file
    shown = run_cli("inspect", str(path)).output
    assert "DBK1 version 2" in shown
    assert f"name             {file}" in shown
    assert "content type     backup-archive" in shown

    out = cli_env / "plain.gz"
    result = run_cli("decrypt", str(path), "--tenant", "acme", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert gzip.decompress(out.read_bytes())[:4] == bytes.fromhex("6de29981")

    wrong = run_cli("decrypt", str(path), "--tenant", "beta", "--output", str(cli_env / "x.gz"))
    _one_line_error(wrong, "belongs to tenant 'acme'")
    assert not (cli_env / "x.gz").exists()

    _one_line_error(
        run_cli("decrypt", str(path), "--tenant", "acme", "--output", str(cli_env / "no" / "x.gz")),
        "cannot write",
    )
    _one_line_error(
        run_cli("decrypt", str(path), "--tenant", "acme", "--output", str(cli_env)), "is a folder"
    )
    assert not list(cli_env.glob(".*.partial"))

    usage = run_cli("usage", "--tenant", "acme")
    assert usage.exit_code == 0
    assert "of 50 MB" in usage.output
    # A backup of 20 small documents is a few kB: shown as such, never as "0.0 MB".
    assert re.search(r"acme: \d+(\.\d)? (B|kB) of 50 MB \(\d+\.\d%, 50\.0 MB free\)", usage.output)
    assert not re.search(r"(?<![\d.])0\.0 MB", usage.output)


def test_decrypt_takes_a_name_from_list(cli_env, run_cli, mongo_client, mongo_db_name) -> None:
    file = _backup(mongo_client, mongo_db_name)
    assert json.loads(run_cli("list", "--tenant", "acme", "--json").stdout)[0]["file"] == file
    out = cli_env / "plain.gz"
    result = run_cli("decrypt", file, "--tenant", "acme", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert gzip.decompress(out.read_bytes())[:4] == bytes.fromhex("6de29981")

    # Another tenant's folder has no backup of that name: refused, nothing written.
    other = cli_env / "other.gz"
    wrong = run_cli("decrypt", file, "--tenant", "beta", "--output", str(other))
    _one_line_error(wrong, f"{file!r} is not a backup of tenant 'beta'")
    assert "daai-backup list --tenant beta" in wrong.output
    assert not other.exists()
    missing = run_cli(
        "decrypt", "manual_20990101T000000Z_aaaaaa17.gz.enc", "--tenant", "acme", "-o", str(other)
    )
    _one_line_error(missing, "is not a backup of tenant 'acme'")
    # Neither a local file nor a backup name: the path is what is missing.
    _one_line_error(
        run_cli("decrypt", "nothing-here.gz", "--tenant", "acme", "-o", str(other)), "no such file"
    )

    # A local file under that name (here, in the working directory) is read first, and must
    # be the backup its header names, as before.
    (cli_env / "manual_20990101T000000Z_aaaaaa17.gz.enc").write_bytes(
        (cli_env / "storage" / "acme" / "db-backups" / file).read_bytes()
    )
    local = run_cli(
        "decrypt", "manual_20990101T000000Z_aaaaaa17.gz.enc", "--tenant", "acme", "-o", str(other)
    )
    _one_line_error(local, "renamed or copied")


def test_decrypt_refuses_a_renamed_copy(cli_env, run_cli, mongo_client, mongo_db_name) -> None:
    file = _backup(mongo_client, mongo_db_name)
    data = (cli_env / "storage" / "acme" / "db-backups" / file).read_bytes()
    renamed = cli_env / "15-day_20991231T000000Z_aaaaaa17.gz.enc"
    renamed.write_bytes(data)
    out = cli_env / "plain.gz"
    result = run_cli("decrypt", str(renamed), "--tenant", "acme", "--output", str(out))
    _one_line_error(result, "renamed or copied")
    assert file in result.output
    assert not out.exists()
    assert json.loads(run_cli("inspect", str(renamed), "--json").stdout)["name"] == file
    # Saved under a name that is no backup name (a download): nothing to compare it with.
    download = cli_env / "download.bin"
    download.write_bytes(data)
    result = run_cli("decrypt", str(download), "--tenant", "acme", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert gzip.decompress(out.read_bytes())[:4] == bytes.fromhex("6de29981")


def test_hold_and_release(cli_env, run_cli, mongo_client, mongo_db_name) -> None:
    file = _backup(mongo_client, mongo_db_name)
    assert run_cli("hold", "--tenant", "acme", "--file", file).exit_code == 0
    assert json.loads(run_cli("list", "--tenant", "acme", "--json").stdout)[0]["held"] is True
    assert run_cli("release", "--tenant", "acme", "--file", file).exit_code == 0
    assert json.loads(run_cli("list", "--tenant", "acme", "--json").stdout)[0]["held"] is False
    _one_line_error(run_cli("hold", "--tenant", "beta", "--file", file), "not a backup of tenant")
    _one_line_error(run_cli("hold", "--tenant", "acme", "--file", "../beta/x"), "")


def test_bad_input_is_one_line(cli_env, run_cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DAAI_BACKUP_TIMEZONE", "Mars/Base")
    _one_line_error(run_cli("list", "--tenant", "acme"), "setting timezone: unknown time zone")
    monkeypatch.setenv("DAAI_BACKUP_TIMEZONE", "Asia/Kolkata")
    _one_line_error(run_cli("list", "--tenant", "nope"), "unknown tenant 'nope'")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world")
    _one_line_error(run_cli("inspect", str(junk)), "not a backup archive")
    _one_line_error(run_cli("inspect", str(tmp_path / "missing.gz.enc")), "no such file")
    (cli_env / "tenants.yaml").write_text("tenants:\n  - id: Bad\n    workspace_name: x\n")
    _one_line_error(run_cli("list", "--tenant", "acme"), "tenant 'Bad': field 'id'")
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "!!!")
    (cli_env / "tenants.yaml").write_text("tenants: []\n")
    _one_line_error(
        run_cli("decrypt", str(junk), "--tenant", "acme", "--output", str(tmp_path / "o")),
        "BACKUP_ENCRYPTION_KEY",
    )


def test_status_without_a_prefect_server(
    cli_env, run_cli, mongo_client, mongo_db_name, monkeypatch
) -> None:
    """One line per tenant; 'failing' is unknown and the output says so; no key is shown as
    soon as the key is missing."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _backup(mongo_client, mongo_db_name)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        shown = run_cli("status")
        as_json = run_cli("status", "--json")
    assert shown.exit_code == 0, shown.output
    lines = shown.output.strip().splitlines()
    assert lines[0].startswith("2 tenants at ")
    assert "1 waiting for first backup" in lines[0]
    assert "1 ok" in lines[0]
    tenant_lines = [line for line in lines if line.startswith(("acme ", "beta "))]
    assert len(tenant_lines) == 2
    [acme] = [line for line in tenant_lines if line.startswith("acme ")]
    assert " ok " in acme
    assert "last good " in acme
    assert "quota 0% of 50.0 MB" in acme
    assert "last run —" in acme
    assert lines[-1].startswith("note: no Prefect server (PREFECT_API_URL is not set)")
    data = json.loads(as_json.stdout)
    assert {r["tenant"]: r["state"] for r in data["tenants"]} == {
        "acme": "ok",
        "beta": "waiting for first backup",
    }
    assert data["tenants"][0]["last_run_state"] == "?"

    monkeypatch.delenv("BACKUP_ENCRYPTION_KEY")
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        keyless = json.loads(run_cli("status", "--json").stdout)
    assert {r["state"] for r in keyless["tenants"]} == {"no key"}
    assert "BACKUP_ENCRYPTION_KEY is not set" in keyless["tenants"][0]["detail"]


def test_list_and_doctor_report_what_is_not_a_backup(cli_env, run_cli) -> None:
    folder = cli_env / "storage" / "acme" / "db-backups"
    folder.mkdir(parents=True)
    backup = "manual_20261127T010000Z_3f9a1c2b.gz.enc"
    (folder / backup).write_bytes(b"x")
    (folder / "readme.txt").write_text("someone's notes")
    gone = "15-day_20261101T010000Z_0badcafe.gz.enc"
    (folder / f"{gone}.manifest").write_bytes(b"m")  # its backup was deleted

    listed = run_cli("list", "--tenant", "acme")
    assert listed.exit_code == 0, listed.output
    assert backup in listed.output
    text = " ".join(listed.output.split())
    assert "2 file(s) in db-backups are not backups" in text
    assert "readme.txt" in text
    assert "daai-backup doctor --tenant acme" in text

    doctor = run_cli("doctor", "--tenant", "acme")
    assert doctor.exit_code == 1, doctor.output  # an unknown file needs a person
    text = " ".join(doctor.output.split())
    assert "1 backup(s), 0 held, 0 verified (0 bad)" in text
    assert "FAIL db-backups/readme.txt: not a name daai-backup writes" in text
    assert f"WARN db-backups/{gone}.manifest: manifest of {gone}, which is gone" in text
    assert "the next retention run removes it" in text
    assert "1 backup(s) without a manifest (written before manifests, or the write" in text
    assert f"{backup}; verify builds it" in text

    (folder / "readme.txt").unlink()
    assert run_cli("doctor", "--tenant", "acme").exit_code == 0
