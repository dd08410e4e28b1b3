"""The light commands start without the heavy libraries.

`--help`, `keygen`, `inspect`, `list` (local storage) and `doctor` must start in well under a
second (``bench/bench_cli_start.py`` measures it). Wall times are noisy on shared machines, so
this asserts the cause instead: each command, run as the console script runs it in a fresh
process, leaves none of Prefect (~3 s to import), pandas or boto3 in ``sys.modules``, and
only `doctor` (which pings MongoDB) pymongo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bson import ObjectId

from daai_backup.operations import backup_tenant, load_context

PROJECT = Path(__file__).resolve().parents[2]
HEAVY = ("prefect", "pandas", "boto3", "botocore", "pymongo")

# Runs the CLI as the `daai-backup` console script does, then writes its exit status and
# which heavy top-level packages were imported to a file (the command's output stays apart).
PROBE = """
import json, sys
report, args, heavy = sys.argv[1], json.loads(sys.argv[2]), set(json.loads(sys.argv[3]))
sys.argv = ["daai-backup", *args]
from cli.main import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
found = sorted({name.split(".")[0] for name in sys.modules} & heavy)
with open(report, "w") as out:
    json.dump({"code": code, "heavy": found}, out)
"""


def _imported(cwd: Path, *args: str) -> tuple[int, list[str]]:
    """(exit status, heavy packages imported) of ``daai-backup *args`` in a fresh process."""
    report = cwd / "imported.json"
    report.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), json.dumps(args), json.dumps(HEAVY)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(PROJECT), "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.exists(), done.stderr
    result = json.loads(report.read_text())
    return int(result["code"]), list(result["heavy"])


@pytest.fixture
def backup_file(cli_env: Path, mongo_client, mongo_db_name: str) -> Path:
    mongo_client[mongo_db_name].people.insert_many([{"_id": ObjectId(), "n": i} for i in range(5)])
    ctx = load_context()
    file = backup_tenant(ctx, ctx.tenant("acme"), "manual").entry.file
    ctx.close()
    return cli_env / "storage" / "acme" / "db-backups" / file


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["keygen"],
        ["list", "--help"],
        ["doctor", "--help"],
        ["decrypt", "--help"],
        ["backup", "--help"],
        ["list", "--tenant", "acme"],
        ["list", "--tenant", "acme", "--json"],
        ["usage", "--tenant", "acme"],
    ],
    ids=" ".join,
)
def test_light_commands_import_nothing_heavy(cli_env: Path, args: list[str]) -> None:
    code, heavy = _imported(cli_env, *args)
    assert code == 0
    assert heavy == []


def test_inspect_and_decrypt_import_nothing_heavy(cli_env: Path, backup_file: Path) -> None:
    assert _imported(cli_env, "inspect", str(backup_file)) == (0, [])
    out = str(cli_env / "plain.gz")
    assert _imported(cli_env, "decrypt", str(backup_file), "--tenant", "acme", "-o", out) == (0, [])
    # by name, from the tenant's local storage folder
    assert _imported(cli_env, "decrypt", backup_file.name, "--tenant", "acme", "-o", out) == (0, [])


def test_doctor_imports_only_pymongo(cli_env: Path) -> None:
    assert _imported(cli_env, "doctor") == (0, ["pymongo"])


def test_the_engine_imports_heavy_libraries_only_when_used() -> None:
    script = (
        "import sys, json\n"
        "import daai_backup.operations, daai_backup.storage, daai_backup.repository.catalog\n"
        "from daai_backup.storage import storage_from_url\n"
        "storage_from_url('file:///tmp')\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(json.loads(done.stdout)) & set(HEAVY) == set()
    # ... and still provides them on demand
    from daai_backup.repository.catalog import COLUMNS, to_dataframe
    from daai_backup.storage import S3Storage, storage_from_url

    assert isinstance(storage_from_url("s3://bucket-name/p"), S3Storage)
    assert list(to_dataframe([], "UTC").columns) == list(COLUMNS)
