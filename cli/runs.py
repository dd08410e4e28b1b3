"""Run a flow from the CLI as a run of its deployment, so operators find it where they look.

A flow called directly makes a run that belongs to no deployment: it is missing from the
tenant's deployment page (Backup Now history) and carries none of the deployment's tags
(``tenant:<id>``). When the deployment exists on the server this command talks to, the CLI
instead creates the run *from the deployment* (its tags, its page) and executes it right
here, in this process, with this process's settings and keys: nothing waits for a worker.

The run is created ``Pending``, not ``Scheduled``: workers and served processes pick up
only scheduled runs, so no one else can start it meanwhile. Without the deployment (no
``daai-backup deploy`` yet, or a temporary server) the flow is simply called, as before.
"""

from __future__ import annotations

from typing import Any

from prefect import Flow
from prefect.client.schemas.objects import State


def run_as_deployment_run(
    flow: Flow[..., Any], deployment_name: str, parameters: dict[str, Any]
) -> State[Any]:
    """Run ``flow`` with ``parameters`` here, as a run of ``deployment_name`` if it exists.

    ``deployment_name`` is ``<flow name>/<deployment name>``. Returns the final state.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
    from prefect.flow_engine import run_flow
    from prefect.states import Pending

    from daai_backup.errors import ConfigError

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(deployment_name)
        except ObjectNotFound:
            deployment = None
        if deployment is None:
            state = flow(**parameters, return_state=True)
            assert isinstance(state, State)
            return state
        try:
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters=parameters, state=Pending()
            )
        except PrefectHTTPStatusError as exc:  # the deployment's parameter schema refused it
            detail = " ".join(exc.response.text.split())[:300]
            raise ConfigError(
                f"the Prefect server refused a run of {deployment_name} with these parameters: "
                f"{detail}"
            ) from None
    state = run_flow(flow, flow_run=run, parameters=run.parameters, return_type="state")
    assert isinstance(state, State)
    return state
