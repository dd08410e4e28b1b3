"""The timeline flow: the table and the chart (a markdown artifact with the PNG embedded),
from the real change capture; a refusal in one line."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest
from flowkit import OWNER, FlowEnv, artifact
from PIL import Image

from daai_backup.errors import PermissionDenied
from daai_backup.inspection.chart import SIZE
from flows.timeline import timeline


def test_timeline_flow_publishes_the_table_and_the_chart(
    flow_env: FlowEnv, mongo_client: Any, mongo_db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daai_backup.capture.runner import run_capture
    from daai_backup.settings import load_settings

    control = f"ctl_{mongo_db_name}"
    monkeypatch.setenv("DAAI_BACKUP_CONTROL_DATABASE", control)
    tid = flow_env.add_tenant(mongo_db_name, timezone="UTC")
    settings = load_settings()
    run_capture(settings, once=True)
    orders = mongo_client[mongo_db_name]["orders"]
    orders.insert_many([{"_id": i} for i in range(120)])  # an import
    orders.update_one({"_id": 1}, {"$set": {"paid": True}})
    orders.drop()
    run_capture(settings, once=True)

    result = timeline(tenant=tid, actor=OWNER)

    assert result["totals"]["inserts"] == 120
    assert [(b["what"], b["collection"]) for b in result["bursts"]] == [
        ("bulk insert (import)", "orders"),
        ("drop", "orders"),
    ]
    table = artifact(f"timeline-{tid}")
    assert table.type == "table"
    assert "orders" in str(table.data)
    chart = artifact(f"timeline-chart-{tid}")
    assert chart.type == "markdown"
    text = str(chart.data)
    assert "| 2 | drop | orders |" in text
    assert f"`{result['bursts'][1]['moment_before']}`" in text
    found = re.search(r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert found is not None
    with Image.open(io.BytesIO(base64.b64decode(found.group(1)))) as image:
        assert image.format == "PNG"
        assert image.size == SIZE

    state = timeline(tenant=tid, actor="nobody", return_state=True)
    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), PermissionDenied)
    mongo_client.drop_database(control)
