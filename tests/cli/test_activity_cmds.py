"""`daai-backup timeline` and `history` through the real CLI, with the real change capture."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cli.context import engine, load_settings
from daai_backup.capture.runner import run_capture
from daai_backup.inspection.chart import SIZE
from daai_backup.operations import backup_tenant


def _next_second() -> None:
    time.sleep(1.02 - (time.time() % 1))


def test_timeline_and_history_commands(
    cli_env: Path, run_cli: Any, mongo_client: Any, mongo_db_name: str, monkeypatch: Any
) -> None:
    from cli.app import console

    monkeypatch.setattr(console, "_width", 200)
    control = f"ctl_{mongo_db_name}"
    monkeypatch.setenv("DAAI_BACKUP_CONTROL_DATABASE", control)
    none = run_cli("timeline", "--tenant", "acme", "--actor", "ops@acme.test")
    assert none.exit_code == 1
    assert "has no captured changes" in none.output
    invoices = mongo_client[mongo_db_name]["invoices"]
    invoices.insert_many([{"_id": i, "number": f"INV-{i:04d}", "total": 1} for i in range(150)])
    settings = load_settings()
    run_capture(settings, once=True)
    ctx = engine()
    try:
        backup_tenant(ctx, ctx.tenant("acme"), "manual", actor="ops@acme.test")
    finally:
        ctx.close()
    _next_second()
    invoices.update_one({"number": "INV-0042"}, {"$set": {"total": 2}})
    _next_second()
    invoices.delete_many({})
    run_capture(settings, once=True)

    plot = cli_env / "chart.png"
    result = run_cli(
        "timeline", "--tenant", "acme", "--actor", "ops@acme.test", "--plot", str(plot)
    )
    assert result.exit_code == 0, result.output
    assert "bulk delete" in result.output
    assert 'daai-backup restore --tenant acme --at "' in result.output
    with Image.open(plot) as image:
        assert image.size == SIZE

    history = run_cli(
        "history", "--tenant", "acme", "--actor", "ops@acme.test",
        "--collection", "invoices", "--where", "number=INV-0042",
    )  # fmt: skip
    assert history.exit_code == 0, history.output
    assert "~total: 1 -> 2" in history.output
    assert "deleted" in history.output
    assert "1 document(s), 3 version(s)" in history.output

    nothing = run_cli(
        "history", "--tenant", "acme", "--actor", "ops@acme.test",
        "--collection", "invoices", "--where", "number=INV-9999",
    )  # fmt: skip
    assert nothing.exit_code == 1
    assert "no document of 'invoices' matches number=INV-9999" in nothing.output
    refused = run_cli("timeline", "--tenant", "acme", "--actor", "viewer@acme.test")
    assert refused.exit_code == 1
    mongo_client.drop_database(control)


@pytest.mark.parametrize("plot", ["chart.jpg"])
def test_plot_needs_a_png_name(cli_env: Path, run_cli: Any, plot: str) -> None:
    result = run_cli("timeline", "--tenant", "acme", "--actor", "ops@acme.test", "--plot", plot)
    assert result.exit_code == 1
    assert "give a file name ending in .png" in result.output
