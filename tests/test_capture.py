"""Continuous change capture against SecantusDB: routing, coverage, resume, kill -9, gaps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bson import Timestamp

from daai_backup.capture import state
from daai_backup.capture.runner import predecessor, run_capture
from daai_backup.capture.segments import (
    coverage,
    gaps,
    list_segments,
    read_changes,
)
from daai_backup.format.keys import generate_master_key
from daai_backup.repository.folder import folder_for_tenant
from daai_backup.settings import Settings

KEY = generate_master_key()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def setup(mongo_uri: str, mongo_client: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    suffix = uuid.uuid4().hex[:8]
    dbs = {"alpha": f"cap_a_{suffix}", "beta": f"cap_b_{suffix}", "gamma": f"cap_c_{suffix}"}
    unknown = f"cap_x_{suffix}"
    tenants_file = tmp_path / "tenants.yaml"
    storage = tmp_path / "storage"
    storage.mkdir()
    settings = Settings(
        backup_encryption_key=KEY,
        mongodb_uri=mongo_uri,
        storage_url=storage.as_uri(),
        tenants_file=tenants_file,
        control_database=f"ctl_{suffix}",
    )

    def write_registry(ids: list[str], suspended: tuple[str, ...] = ()) -> None:
        tenants = [
            {
                "id": tid,
                "workspace_name": tid.title(),
                "database": dbs[tid],
                "subscription": "suspended" if tid in suspended else "active",
            }
            for tid in ids
        ]
        tenants_file.write_text(yaml.safe_dump({"tenants": tenants}))

    write_registry(["alpha", "beta"])
    yield {
        "settings": settings,
        "dbs": dbs,
        "unknown": unknown,
        "write_registry": write_registry,
        "env": {
            **os.environ,
            "BACKUP_ENCRYPTION_KEY": KEY,
            "DAAI_BACKUP_MONGODB_URI": mongo_uri,
            "DAAI_BACKUP_STORAGE_URL": storage.as_uri(),
            "DAAI_BACKUP_TENANTS_FILE": str(tenants_file),
            "DAAI_BACKUP_CONTROL_DATABASE": f"ctl_{suffix}",
        },
    }
    for name in [*dbs.values(), unknown, f"ctl_{suffix}"]:
        mongo_client.drop_database(name)


def _folder(settings: Settings, tid: str) -> Any:
    return folder_for_tenant(tid, None, settings.storage_url)


def _changes(settings: Settings, tid: str) -> list[dict[str, Any]]:
    folder = _folder(settings, tid)
    ranges = coverage(folder)
    assert len(ranges) == 1, ranges
    start, end = ranges[0]
    return list(read_changes(folder, settings.keyring, tid, predecessor(start), end))


def _workload(client: Any, db: str, tag: str) -> None:
    coll = client[db]["items"]
    coll.insert_many([{"_id": f"{tag}{i}", "n": i, "tags": ["a", "b"]} for i in range(5)])
    coll.update_one({"_id": f"{tag}1"}, {"$set": {"n": 10, "tags.1": "z", "sub.x": 1}})
    coll.replace_one({"_id": f"{tag}2"}, {"only": True})
    coll.delete_one({"_id": f"{tag}3"})
    coll.create_index("n")
    client[db]["other"].insert_one({"_id": tag})
    client[db]["other"].rename("renamed")


def test_once_routes_each_tenant_to_its_own_folder(
    setup: dict[str, Any], mongo_client: Any
) -> None:
    settings, dbs = setup["settings"], setup["dbs"]
    first = run_capture(settings, once=True)  # starts the stream at the present
    assert first.tenants == ["alpha", "beta"]
    _workload(mongo_client, dbs["alpha"], "a")
    _workload(mongo_client, dbs["beta"], "b")
    mongo_client[setup["unknown"]]["x"].insert_one({"secret": 1})

    outcome = run_capture(settings, once=True)

    assert outcome.per_tenant["alpha"] >= 10
    assert outcome.per_tenant["beta"] >= 10
    assert outcome.skipped >= 1  # the unknown database
    for tid, other in (("alpha", "beta"), ("beta", "alpha")):
        events = _changes(settings, tid)
        assert {e["ns"]["db"] for e in events} == {dbs[tid]}
        ops = [e["operationType"] for e in events]
        assert {"insert", "update", "replace", "delete", "createIndexes", "rename"} <= set(ops)
        update = next(e for e in events if e["operationType"] == "update")
        assert update["updateDescription"]["updatedFields"] == {
            "n": 10,
            "tags.1": "z",
            "sub": {"x": 1},
        }
        assert "fullDocument" not in update  # never updateLookup
        assert all("_id" in e and "wallTime" in e for e in events)
        assert not any(dbs[other] in str(e) for e in events)
        # Segments are not backups: the list and the leftover sweep leave them alone.
        folder = _folder(settings, tid)
        assert folder.entries() == []
        folder.remove_leftovers()
        assert list_segments(folder)
        assert folder.usage_bytes() > 0  # segments count against the quota
    assert not (Path(settings.storage_url.removeprefix("file://")) / "cap_x").exists()
    # One contiguous range per tenant, reaching the resume point.
    assert coverage(_folder(settings, "alpha"))[0][1] == outcome.position


def test_resume_no_loss_no_duplicate_and_registry_changes(
    setup: dict[str, Any], mongo_client: Any
) -> None:
    settings, dbs = setup["settings"], setup["dbs"]
    run_capture(settings, once=True)
    mongo_client[dbs["alpha"]]["c"].insert_many([{"i": i} for i in range(3)])
    run_capture(settings, once=True)
    mongo_client[dbs["alpha"]]["c"].insert_many([{"i": i} for i in range(3, 6)])
    mongo_client[dbs["gamma"]]["c"].insert_one({"before": "registered"})
    # gamma joins, beta is suspended: picked up by the running capture's registry re-read
    setup["write_registry"](["alpha", "beta", "gamma"], suspended=("beta",))
    outcome = run_capture(settings, once=True)
    assert outcome.tenants == ["alpha", "gamma"]
    mongo_client[dbs["gamma"]]["c"].insert_one({"after": "registered"})
    mongo_client[dbs["beta"]]["c"].insert_one({"while": "suspended"})
    run_capture(settings, once=True)

    alpha = [e["fullDocument"]["i"] for e in _changes(settings, "alpha")]
    assert alpha == [0, 1, 2, 3, 4, 5]
    gamma = [e["fullDocument"] for e in _changes(settings, "gamma")]
    # gamma's range starts at the resume point the run started from: its earlier write too
    assert [{k: v for k, v in d.items() if k != "_id"} for d in gamma] == [
        {"before": "registered"},
        {"after": "registered"},
    ]
    beta_segments = list_segments(_folder(settings, "beta"))
    assert sum(s.events for s in beta_segments) == 0


def test_registry_change_without_restart(setup: dict[str, Any], mongo_client: Any) -> None:
    """A running capture re-reads the registry: gamma is captured without a restart."""
    import threading

    settings, dbs = setup["settings"], setup["dbs"]
    stop = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        result["outcome"] = run_capture(
            settings, stop=stop, registry_refresh_s=0, max_lag_s=0.3, max_await_ms=100
        )

    worker = threading.Thread(target=run)
    worker.start()
    try:
        deadline = 50
        while state.load(mongo_client, settings) is None and deadline:
            threading.Event().wait(0.1)
            deadline -= 1
        setup["write_registry"](["alpha", "beta", "gamma"])
        threading.Event().wait(1.0)
        mongo_client[dbs["gamma"]]["c"].insert_one({"x": 1})
        threading.Event().wait(1.0)
    finally:
        stop.set()
        worker.join(30)
    assert "gamma" in result["outcome"].tenants
    assert [e["fullDocument"]["x"] for e in _changes(settings, "gamma")] == [1]


def _cli(setup: dict[str, Any], pause: str) -> subprocess.Popen[str]:
    env = {**setup["env"], "DAAI_BACKUP_CAPTURE_TEST_PAUSE": pause}
    return subprocess.Popen(
        [sys.executable, "-c", "from cli.main import main; main()", "capture", "--once"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def _kill_at_pause(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if "CAPTURE-TEST-PAUSE" in line:
            break
    else:
        pytest.fail(f"capture ended without pausing (exit {proc.wait()})")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.mark.parametrize("pause", ["mid-upload", "before-save"])
def test_kill_9_loses_nothing_and_duplicates_nothing(
    setup: dict[str, Any], mongo_client: Any, pause: str
) -> None:
    settings, dbs = setup["settings"], setup["dbs"]
    run_capture(settings, once=True)
    mongo_client[dbs["alpha"]]["c"].insert_many([{"i": i} for i in range(4)])
    run_capture(settings, once=True)
    mongo_client[dbs["alpha"]]["c"].insert_many([{"i": i} for i in range(4, 8)])
    mongo_client[dbs["alpha"]]["c"].update_one({"i": 0}, {"$inc": {"i": 100}})

    _kill_at_pause(_cli(setup, pause))
    before = list_segments(_folder(settings, "alpha"))
    run_capture(settings, once=True)
    after = list_segments(_folder(settings, "alpha"))

    if pause == "before-save":
        # The killed run stored its segment but not the resume point: re-read, overlapping.
        assert len(after) == len(before) + 1
        starts = [s.start for s in after if s.events]
        assert len(starts) != len(set(starts))
    events = _changes(settings, "alpha")
    inserted = [e["fullDocument"]["i"] for e in events if e["operationType"] == "insert"]
    assert inserted == list(range(8))
    assert [e["operationType"] for e in events].count("update") == 1


def test_history_loss_records_a_gap(setup: dict[str, Any], mongo_client: Any) -> None:
    settings, dbs = setup["settings"], setup["dbs"]
    run_capture(settings, once=True)
    mongo_client[dbs["alpha"]]["c"].insert_one({"i": 1})
    run_capture(settings, once=True)
    point = state.load(mongo_client, settings)
    assert point is not None
    point.resume_token = {"_data": "00" * 20}  # a token the server refuses
    state.save(mongo_client, settings, point)
    mongo_client[dbs["alpha"]]["c"].insert_one({"i": 2})  # lost with the history

    outcome = run_capture(settings, once=True)
    mongo_client[dbs["alpha"]]["c"].insert_one({"i": 3})
    run_capture(settings, once=True)

    assert sorted(outcome.history_lost) == ["alpha", "beta"]
    folder = _folder(settings, "alpha")
    recorded = gaps(folder)
    assert len(recorded) == 1
    assert "refused" in recorded[0].reason
    ranges = coverage(folder)
    assert len(ranges) == 2  # the hole is explicit
    assert ranges[0][1] < recorded[0].end < ranges[1][0]
    docs = [
        e["fullDocument"]["i"]
        for e in read_changes(
            folder, settings.keyring, "alpha", predecessor(ranges[1][0]), ranges[1][1]
        )
    ]
    assert docs == [3]


def test_check_says_when_streams_work(mongo_client: Any) -> None:
    from daai_backup.capture.runner import check_change_streams

    assert "gives change streams" in check_change_streams(mongo_client)


def test_read_changes_refuses_an_uncovered_range(setup: dict[str, Any]) -> None:
    from daai_backup.errors import ChangesNotCovered

    settings = setup["settings"]
    run_capture(settings, once=True)
    folder = _folder(settings, "alpha")
    ((_, end),) = coverage(folder)
    with pytest.raises(ChangesNotCovered, match="covered:"):
        list(read_changes(folder, settings.keyring, "alpha", Timestamp(1, 0), end))


def test_lag_for_the_fleet_view(setup: dict[str, Any], mongo_client: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from daai_backup.fleet import display_rows, fleet_table
    from daai_backup.tenants import TenantRegistry

    settings = setup["settings"]
    run_capture(settings, once=True)
    now = datetime.now(UTC)
    lags = state.capture_lags(mongo_client, settings, ["alpha", "beta", "gamma"], now)
    assert lags == {"alpha": 0.0, "beta": 0.0, "gamma": None}
    # Capture stopped long ago: everything since its position may be missing.
    later = now + timedelta(minutes=30)
    stale = state.capture_lags(mongo_client, settings, ["alpha"], later)
    assert stale["alpha"] is not None
    assert stale["alpha"] >= 1700
    registry = TenantRegistry.load(settings.tenants_file)
    table = fleet_table(
        registry.values(),
        {},
        now=later,
        default_timezone="UTC",
        spread_minutes=0,
        capture_lag={"alpha": stale["alpha"], "beta": None},
        capture_target_s=60,
    )
    shown = {r["Tenant"]: r["Capture lag"] for r in display_rows(table)}
    assert shown["alpha"].endswith("(over target)")
    assert shown["beta"] == "off"


def test_change_retention_keeps_the_chain_of_the_base_snapshot(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from daai_backup.capture.segments import apply_change_retention, write_segment
    from daai_backup.policy.retention import change_cutoff

    now = datetime(2026, 11, 28, tzinfo=UTC)
    day = 86400
    t0 = int((now - timedelta(days=10)).timestamp())
    folder = folder_for_tenant("alpha", None, (tmp_path).as_uri())
    settings = Settings(backup_encryption_key=KEY, tenants_file=Path("x"), _env_file=None)  # type: ignore[call-arg]
    master = settings.keyring.require_current()
    for k in range(10):  # one segment per day, contiguous
        write_segment(
            folder,
            master,
            "alpha",
            Timestamp(t0 + k * day, 0),
            predecessor(Timestamp(t0 + (k + 1) * day, 0)),
            [],
        )
    # The base snapshot (newest kept at or before the 7-day window's start) is 8.5 days old.
    base = (int((now - timedelta(days=8.5)).timestamp()), 0)
    cutoff = change_cutoff(now, 7, [base, (int(now.timestamp()) - day, 0)])
    assert cutoff == base
    deleted = apply_change_retention(folder, Timestamp(*cutoff))
    assert len(deleted) == 1  # only the day entirely before the base snapshot
    ((start, end),) = coverage(folder)
    assert start <= Timestamp(*base) <= end
