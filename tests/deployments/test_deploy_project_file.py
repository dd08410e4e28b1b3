"""prefect.yaml and the Makefile agree with the code (docs held to the code by tests)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import yaml

from daai_backup.settings import Settings
from deployments.build import FLOW_OBJECTS, operation_specs

PROJECT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_matches_operation_deployments() -> None:
    data = yaml.safe_load((PROJECT / "prefect.yaml").read_text())
    specs = {s.name: s for s in operation_specs(Settings(_env_file=None), work_pool="daai-backup")}  # type: ignore[call-arg]
    listed = {d["name"]: d for d in data["deployments"]}
    assert set(listed) == set(specs)
    for name, spec in specs.items():
        item = listed[name]
        module, attribute = FLOW_OBJECTS[spec.role].split(":")
        assert item["entrypoint"] == f"{module.replace('.', '/')}.py:{attribute}"
        assert tuple(item["tags"]) == spec.tags
        assert item["description"] == spec.description
        assert item.get("parameters", {}) == spec.parameters
        assert item["work_pool"]["name"] == "daai-backup"
        yaml_schedules = item.get("schedules", [])
        assert len(yaml_schedules) == len(spec.schedules)
        for raw, schedule in zip(yaml_schedules, spec.schedules, strict=True):
            assert raw["slug"] == schedule.slug
            assert raw["timezone"] == schedule.timezone
            if schedule.rrule is not None:
                assert raw["rrule"] == schedule.rrule
            else:
                assert timedelta(seconds=raw["interval"]) == schedule.interval
                assert datetime.fromisoformat(raw["anchor_date"]) == schedule.anchor_date


def test_makefile_targets() -> None:
    text = (PROJECT / "Makefile").read_text()
    for target in ("up:", "test:", "lint:", "bench:"):
        assert f"\n{target}" in text
    assert "python -m deployments.stack up" in text
    assert "sync --frozen" in text
