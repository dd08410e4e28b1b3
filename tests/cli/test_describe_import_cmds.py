"""`describe` and `import` on the command line: what they print, one line when refused."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from bson import ObjectId

from daai_backup.mongo import dump_database
from daai_backup.operations import backup_tenant, load_context


def _one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    out = result.output.strip()
    assert out.startswith("error:"), out
    assert "\n" not in out, out
    assert fragment in out, out


def test_describe_shows_each_collection_from_the_manifest(
    cli_env, run_cli, mongo_client, mongo_db_name
) -> None:
    db = mongo_client[mongo_db_name]
    db.people.insert_many([{"_id": ObjectId(), "n": i} for i in range(20)])
    db.people.create_index("n")
    db.command("create", "adults", viewOn="people", pipeline=[{"$match": {"n": {"$gt": 5}}}])
    ctx = load_context()
    file = backup_tenant(
        ctx, ctx.tenant("acme"), "manual", actor="ops@acme.test", note="before the audit"
    ).entry.file

    shown = run_cli("describe", "--tenant", "acme", "--file", file)
    assert shown.exit_code == 0, shown.output
    out = shown.output
    for fragment in ("before the audit", "ops@acme.test", "snapshot", "people", "_id_, n_1"):
        assert fragment in out, out
    assert "adults" in out
    assert "view" in out
    assert "CET" in out or "CEST" in out  # the tenant's time zone (Europe/Berlin)

    as_json = json.loads(run_cli("describe", "-t", "acme", "-f", file, "--json").stdout)
    assert as_json["file"] == file
    people = next(n for n in as_json["namespaces"] if n["name"] == "people")
    assert people["documents"] == 20
    assert as_json["cluster_time"]["t"] > 0

    _one_line_error(
        run_cli("describe", "--tenant", "beta", "--file", file), "not a backup of tenant 'beta'"
    )
    _one_line_error(
        run_cli("describe", "--tenant", "acme", "--file", "../beta/x"), "not a backup file name"
    )


def test_import_stores_an_archive_and_refuses_what_is_not_one(
    cli_env: Path, run_cli, mongo_client, mongo_db_name
) -> None:
    other = mongo_db_name + "_old"
    try:
        mongo_client[other].people.insert_many([{"_id": i} for i in range(7)])
        sink = io.BytesIO()
        dump_database(mongo_client, other, sink)
        archive = cli_env / "old-system.archive.gz"
        archive.write_bytes(gzip.compress(sink.getvalue()))
    finally:
        mongo_client.drop_database(other)

    denied = run_cli("import", str(archive), "--tenant", "acme", "--actor", "viewer@acme.test")
    _one_line_error(denied, "may not take a backup")
    junk = cli_env / "notes.txt"
    junk.write_text("not an archive")
    _one_line_error(
        run_cli("import", str(junk), "--tenant", "acme", "--actor", "ops@acme.test"),
        "notes.txt cannot be imported: not a mongodump archive",
    )
    _one_line_error(
        run_cli("import", str(cli_env / "nope"), "--tenant", "acme", "--actor", "ops@acme.test"),
        "cannot read",
    )
    assert json.loads(run_cli("list", "--tenant", "acme", "--json").stdout) == []

    done = run_cli(
        "import", str(archive), "--tenant", "acme", "--actor", "ops@acme.test", "--note", "v1"
    )
    assert done.exit_code == 0, done.output
    assert f"database {other}: 1 collections, 7 documents" in done.output
    file = done.stdout.strip().splitlines()[-1]
    assert file.startswith("imported_")
    assert file.endswith(".gz.enc")
    listed = json.loads(run_cli("list", "--tenant", "acme", "--json").stdout)
    assert [row["file"] for row in listed] == [file]
    described = json.loads(run_cli("describe", "-t", "acme", "-f", file, "--json").stdout)
    assert (described["label"], described["note"], described["documents"]) == ("imported", "v1", 7)
