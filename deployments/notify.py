"""``daai-backup notify --webhook URL``: post failed backup and restore runs to a webhook.

Creates (or replaces, so running it again is harmless) two objects on the Prefect server:

- a ``Webhook`` block ``daai-backup-failure-webhook`` holding the URL (stored as a secret:
  Slack/Teams URLs are credentials) with ``Content-Type: application/json``;
- an automation ``daai-backup: failed backup or restore`` whose trigger is a flow run of
  ``backup``, ``pre-restore-backup`` or ``restore`` entering ``Failed`` or ``Crashed``, and
  whose action (``CallWebhook``) posts one JSON object per failure::

    {"product": "daai-backup", "flow": "backup", "flow_run": "backup-acme-hr-manual",
     "state": "Failed", "tenant": "acme-hr", "label": "manual", "message": "...",
     "flow_run_id": "...", "url": "http://.../runs/flow-run/..."}

- a second automation ``daai-backup: tenant overdue or failing`` on the events the ``fleet``
  flow emits when a tenant's state changes (``daai-backup.tenant.overdue`` and
  ``daai-backup.tenant.failing``, resource ``daai-backup.tenant.<id>``), posting the same
  JSON shape through the same block (``flow`` is ``fleet``, ``state`` is ``overdue`` or
  ``failing``, ``message`` says why). The fleet flow emits an event only when a tenant's
  state *changes*, so a tenant that stays overdue is posted once, not every 15 minutes.

Nothing secret is in the payload: parameters carry tenant, label, file and actor only.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

AUTOMATION_NAME: Final = "daai-backup: failed backup or restore"
TENANT_AUTOMATION_NAME: Final = "daai-backup: tenant overdue or failing"
BLOCK_NAME: Final = "daai-backup-failure-webhook"
WATCHED_FLOWS: Final = ("backup", "pre-restore-backup", "restore", "capture")
FAILED_EVENTS: Final = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")

PAYLOAD: Final = (
    "{"
    '"product": "daai-backup", '
    '"flow": {{ flow.name | tojson }}, '
    '"flow_run": {{ flow_run.name | tojson }}, '
    '"state": {{ flow_run.state.name | tojson }}, '
    '"tenant": {{ flow_run.parameters.get("tenant") | tojson }}, '
    '"label": {{ flow_run.parameters.get("label") | tojson }}, '
    '"file": {{ flow_run.parameters.get("file") | tojson }}, '
    '"message": {{ flow_run.state.message | tojson }}, '
    '"flow_run_id": "{{ flow_run.id }}", '
    '"url": {{ flow_run | ui_url | tojson }}'
    "}"
)
"""The JSON body, rendered by the server's Jinja sandbox (``tojson`` escapes each value)."""

TENANT_EVENTS: Final = (
    "daai-backup.tenant.overdue",
    "daai-backup.tenant.failing",
    "daai-backup.tenant.capture-gap",
    "daai-backup.tenant.capture-lag",
)
"""Tenant events that post: the fleet flow's state changes (``overdue``, ``failing``,
``capture-lag`` when a tenant's capture lag goes over the target) and the capture flow's
``capture-gap`` (change history lost). All carry the fleet payload shape."""

TENANT_PAYLOAD: Final = (
    "{"
    '"product": "daai-backup", '
    '"flow": "fleet", '
    '"flow_run": {{ event.payload.flow_run | tojson }}, '
    '"state": {{ event.payload.state | tojson }}, '
    '"tenant": {{ event.payload.tenant | tojson }}, '
    '"label": {{ event.payload.frequency | tojson }}, '
    '"file": null, '
    '"message": {{ event.payload.detail | tojson }}, '
    '"flow_run_id": {{ event.payload.flow_run_id | tojson }}, '
    '"url": {{ event.payload.url | tojson }}'
    "}"
)
"""The same JSON shape as :data:`PAYLOAD`, from the fleet event's payload."""


def create_failure_notification(webhook_url: str) -> UUID:
    """Create or replace the webhook block and both automations; returns the id of the
    failed-run automation (:data:`AUTOMATION_NAME`)."""
    from prefect.automations import Automation, CallWebhook, EventTrigger, Posture
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client

    if not webhook_url.startswith(("http://", "https://")):
        from daai_backup.errors import ConfigError

        raise ConfigError(f"webhook URL must start with http:// or https://, not {webhook_url!r}")
    block = Webhook(
        method="POST",
        url=webhook_url,  # type: ignore[arg-type]  # SecretStr accepts str
        headers={"Content-Type": "application/json"},  # type: ignore[arg-type]
    )
    block_id = block.save(BLOCK_NAME, overwrite=True)
    assert isinstance(block_id, UUID)
    with get_client(sync_client=True) as client:
        for name in (AUTOMATION_NAME, TENANT_AUTOMATION_NAME):
            for existing in client.read_automations_by_name(name):
                client.delete_automation(existing.id)
    tenant_automation = Automation(
        name=TENANT_AUTOMATION_NAME,
        description="Post tenants that become overdue or failing (from the fleet flow).",
        trigger=EventTrigger(
            match={"prefect.resource.id": "daai-backup.tenant.*"},
            expect=set(TENANT_EVENTS),
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=TENANT_PAYLOAD)],
    )
    made = tenant_automation.create()
    assert isinstance(made, Automation)
    automation = Automation(
        name=AUTOMATION_NAME,
        description="Post failed or crashed backup/restore runs to the ops webhook.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={  # type: ignore[arg-type]
                "prefect.resource.role": "flow",
                "prefect.resource.name": list(WATCHED_FLOWS),
            },
            expect=set(FAILED_EVENTS),
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=PAYLOAD)],
    )
    created = automation.create()
    assert isinstance(created, Automation)
    assert created.id is not None
    return created.id
