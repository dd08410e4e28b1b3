"""The diff flow publishes the table as a markdown artifact and refuses in one line."""

from __future__ import annotations

from flowkit import OWNER, FlowEnv, artifact

from daai_backup.errors import PermissionDenied
from daai_backup.operations import backup_tenant
from flows.inspect import diff


def test_diff_flow_publishes_the_table(flow_env: FlowEnv, mongo_client, mongo_db_name) -> None:
    mongo_client[mongo_db_name].items.insert_many([{"_id": i} for i in range(5)])
    tid = flow_env.add_tenant(mongo_db_name)
    ctx = flow_env.context()
    try:
        file = backup_tenant(ctx, ctx.tenant(tid), "manual").entry.file
    finally:
        ctx.close()
    mongo_client[mongo_db_name].items.insert_one({"_id": 99})

    totals = diff(tenant=tid, a=file, actor=OWNER, show=2)
    assert totals["added"] == 1
    markdown = str(artifact(f"diff-{tid}").data)
    assert "| items | collection | changed | 5 | 6 | 1 | 0 | 0 |" in markdown
    assert "items: + 99" in markdown

    state = diff(tenant=tid, a=file, actor="nobody", return_state=True)
    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), PermissionDenied)
