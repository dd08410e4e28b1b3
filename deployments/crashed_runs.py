"""Runs whose process died end ``Crashed``: an automation driven by flow-run heartbeats.

A flow run whose process is killed (``kill -9`` of a CLI command, a worker machine lost)
never reports a final state, so without help it stays ``Running`` forever and the failure
notification never fires. Every daai-backup process runs its flows with heartbeats on
(``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, :data:`HEARTBEAT_SECONDS`; the CLI, the served stack
and the workers set it), and this module keeps one automation on the server, the one
Prefect documents for "zombie" runs:

- trigger: after a ``prefect.flow-run.heartbeat`` of a run, expect another heartbeat or a
  final state event of the same run within :data:`WITHIN_SECONDS` (proactive posture);
- action: set that run to ``Crashed`` with a message that says what happened.

The ``Crashed`` state then fires the failure notification (``deployments.notify``) like any
failed run. ``WITHIN_SECONDS`` is three heartbeats: one late heartbeat of a busy process is
never taken for a death.

Created by ``daai-backup deploy`` and by the embedded stack; idempotent (replaced by name).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final
from uuid import UUID

AUTOMATION_NAME: Final = "daai-backup: mark runs whose process died as crashed"
HEARTBEAT_SECONDS: Final = 30
"""Heartbeat interval of every flow run (Prefect's minimum is 30 s)."""
WITHIN_SECONDS: Final = 3 * HEARTBEAT_SECONDS
HEARTBEAT_VARIABLE: Final = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
CRASH_MESSAGE: Final = (
    "the process running this flow stopped sending heartbeats (killed or its machine lost); "
    "nothing partial is listed: run it again"
)
FINAL_EVENTS: Final = (
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
)


def heartbeat_environment() -> dict[str, str]:
    """The environment entry that turns flow-run heartbeats on in a process."""
    return {HEARTBEAT_VARIABLE: str(HEARTBEAT_SECONDS)}


def ensure_crash_detection(within_seconds: float = WITHIN_SECONDS) -> UUID:
    """Create or replace the automation; returns its id. ``within_seconds`` is for tests."""
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(AUTOMATION_NAME):
            client.delete_automation(existing.id)
    automation = Automation(
        name=AUTOMATION_NAME,
        description=(
            "A flow run that stops sending heartbeats without reaching a final state is "
            "marked Crashed (so it is not Running forever and the failure webhook fires)."
        ),
        trigger=EventTrigger(
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *FINAL_EVENTS},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED, name="Crashed", message=CRASH_MESSAGE, force=False
            )
        ],
    )
    created = automation.create()
    assert isinstance(created, Automation)
    assert created.id is not None
    return created.id
