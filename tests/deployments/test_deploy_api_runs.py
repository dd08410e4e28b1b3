"""How the suite's backend triggers Backup Now and a restore through Prefect's REST API.

Exactly the calls ``docs/operations.md`` documents: look the deployment up by name, then
``POST /api/deployments/{id}/create_flow_run`` with the parameters (actor included), and the
Python form ``run_deployment(..., timeout=0)``. The runs are created Scheduled for now, with
the given parameters; executing them needs a served process or a worker (the stack test and
the work-pool test do that).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from deploy_helpers import registry
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

from daai_backup.settings import Settings
from deployments.sync import sync_deployments


def _setup(settings: Settings, flows: dict[str, Any]) -> None:
    tenants = registry(
        {
            "id": "acme-hr",
            "workspace_name": "Acme HR",
            "permissions": {"priya@acme.example": ["create", "restore"]},
        }
    )
    sync_deployments(tenants.values(), settings=settings, now=datetime.now(UTC), flows=flows)


def test_backup_now_and_restore_over_rest(
    clean_server: str, settings: Settings, stand_in_flows: dict[str, Any]
) -> None:
    _setup(settings, stand_in_flows)
    api = clean_server.rstrip("/")
    with httpx.Client(base_url=api, timeout=10) as http:
        deployment = http.get("/deployments/name/backup/backup-acme-hr").json()
        response = http.post(
            f"/deployments/{deployment['id']}/create_flow_run",
            json={
                "parameters": {
                    "tenant": "acme-hr",
                    "label": "manual",
                    "actor": "priya@acme.example",
                    "note": "before the payroll import",
                },
                "tags": ["backup-now", "actor:priya@acme.example"],
            },
        )
        assert response.status_code == 201, response.text
        run = response.json()
        assert run["parameters"] == {
            "tenant": "acme-hr",
            "label": "manual",
            "actor": "priya@acme.example",
            "note": "before the payroll import",
        }
        assert run["state"]["type"] == "SCHEDULED"
        assert run["deployment_id"] == deployment["id"]
        assert "actor:priya@acme.example" in run["tags"]

        # A parameter of the wrong type is refused by the server (the schema is enforced).
        bad = http.post(
            f"/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": {"tenant": "acme-hr", "label": ["manual"]}},
        )
        assert bad.status_code in (409, 422), bad.text

        # A Quick Run (the deployment's defaults: a manual Backup Now) without an actor is
        # refused by the server, naming the parameter; nothing is created.
        quick = http.post(f"/deployments/{deployment['id']}/create_flow_run", json={})
        assert quick.status_code in (409, 422), quick.text
        assert "actor" in quick.text

        restore = http.get("/deployments/name/restore/restore").json()
        response = http.post(
            f"/deployments/{restore['id']}/create_flow_run",
            json={
                "parameters": {
                    "tenant": "acme-hr",
                    "file": "manual_20260601T010000Z_0a1b2c3d.gz.enc",
                    "actor": "priya@acme.example",
                    "confirm_workspace_name": "Acme HR",
                }
            },
        )
        assert response.status_code == 201, response.text
        assert response.json()["parameters"]["confirm_workspace_name"] == "Acme HR"

        # What the run page shows: the run, readable by id, with its parameters.
        again = http.get(f"/flow_runs/{run['id']}").json()
        assert again["parameters"]["actor"] == "priya@acme.example"


def test_run_deployment_from_python(
    clean_server: str, settings: Settings, stand_in_flows: dict[str, Any]
) -> None:
    _setup(settings, stand_in_flows)
    run = run_deployment(
        "backup/backup-acme-hr",
        parameters={"label": "manual", "actor": "priya@acme.example", "note": "via python"},
        timeout=0,  # return at once; the run executes on a worker or the served process
    )
    assert run.parameters == {  # type: ignore[union-attr]
        "tenant": "acme-hr",  # from the deployment
        "label": "manual",  # overridden by the caller
        "actor": "priya@acme.example",
        "note": "via python",
    }
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(run.id)  # type: ignore[union-attr]
    assert stored.state is not None
    assert stored.state.is_scheduled()
