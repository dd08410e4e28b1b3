"""`daai-backup diff` and `find` through the real CLI: tables, the last line, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cli.context import engine
from daai_backup.operations import backup_tenant

T0 = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)


@pytest.fixture
def snapshots(cli_env, mongo_client, mongo_db_name) -> list[str]:
    """Two backups of acme: INV-0042's total changes between them; one more invoice."""
    db = mongo_client[mongo_db_name]
    db.invoices.insert_many([{"_id": i, "number": f"INV-{i:04d}", "total": 100} for i in range(50)])
    ctx = engine()
    try:
        first = backup_tenant(ctx, ctx.tenant("acme"), "manual", now=T0).entry.file
        db.invoices.update_one({"_id": 42}, {"$set": {"total": 120}})
        db.invoices.insert_one({"_id": 50, "number": "INV-0050", "total": 1})
        second = backup_tenant(
            ctx, ctx.tenant("acme"), "manual", now=T0 + timedelta(days=1)
        ).entry.file
    finally:
        ctx.close()
    return [first, second]


def test_diff_prints_the_table_and_a_summary_line(snapshots, run_cli):
    first, second = snapshots
    result = run_cli(
        "diff", first, second, "--tenant", "acme", "--actor", "ops@acme.test", "--show", "3"
    )
    assert result.exit_code == 0, result.output
    assert "invoices" in result.output
    assert "+ 50, ~ 42" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last == (
        f"1 of 1 collection(s) differ: 1 document(s) added, 0 removed, 1 changed from "
        f"{first} to {second}"
    )
    live = run_cli("diff", second, "live", "--tenant", "acme", "--actor", "ops@acme.test")
    assert live.output.strip().splitlines()[-1] == f"live holds the same data as {second}"


def test_find_prints_history_newest_first(snapshots, run_cli, monkeypatch):
    from cli.app import console

    monkeypatch.setattr(console, "_width", 160)  # a wide terminal: no cell wraps
    first, second = snapshots
    result = run_cli(
        "find",
        "--tenant",
        "acme",
        "--collection",
        "invoices",
        "--where",
        "number=INV-0042",
        "--actor",
        "ops@acme.test",
    )
    assert result.exit_code == 0, result.output
    assert f"reading 1/2 {first}" in result.output  # progress, on stderr
    assert "~total: 100 -> 120" in result.output
    rows = [line for line in result.output.splitlines() if "manual_" in line and "│" in line]
    assert [(second in r, first in r) for r in rows] == [(True, False), (False, True)]
    assert "changed" in rows[0]
    assert result.output.strip().splitlines()[-1] == (
        f"1 document(s) match number=INV-0042; 2 of 2 snapshot(s) hold a match, the newest {second}"
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["diff", "{0}", "live", "--actor", "viewer@acme.test"], "'viewer@acme.test' may not read"),
        (
            ["diff", "{0}", "manual_20200101T000000Z_0badc0de.gz.enc", "--actor", "ops@acme.test"],
            "'manual_20200101T000000Z_0badc0de.gz.enc' is not a backup of tenant 'acme'",
        ),
        (["diff", "../beta/{0}", "live", "--actor", "ops@acme.test"], "is not a backup file name"),
        (
            ["find", "-c", "invoices", "-w", "number", "--actor", "ops@acme.test"],
            "is not field=value",
        ),
        (
            ["find", "-c", "invoices", "-w", "numbr=1", "--actor", "ops@acme.test"],
            "no snapshot has a document with field 'numbr'",
        ),
        (
            ["find", "-c", "nope", "-w", "number=1", "--actor", "ops@acme.test"],
            "no collection 'nope'",
        ),
        (
            ["find", "-c", "invoices", "-w", "number=INV-9999", "--actor", "ops@acme.test"],
            "no document of 'invoices' matches number=INV-9999 in the 2 snapshot(s) read",
        ),
        (
            [
                "find",
                "-c",
                "invoices",
                "-w",
                "total=1",
                "--since",
                "someday",
                "--actor",
                "ops@acme.test",
            ],
            "'someday' is not a date",
        ),
    ],
)
def test_bad_input_is_one_line(snapshots, run_cli, args, line):
    args = [{"ops": "ops@acme.test"}.get(a, a.format(snapshots[0])) for a in args]
    result = run_cli(*args, "--tenant", "acme")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ")
    assert line in lines[-1]
