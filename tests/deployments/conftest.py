"""Fixtures for the deployments tests: the shared Prefect test server and stand-in flows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prefect_harness import start as start_prefect_harness
from prefect_harness import stop as stop_prefect_harness

from daai_backup.settings import Settings


@pytest.fixture(scope="session")
def prefect_api_url() -> Iterator[str]:
    """The harness's API URL (one server per pytest process, see tests/prefect_harness.py)."""
    yield start_prefect_harness()
    stop_prefect_harness()


@pytest.fixture
def clean_server(prefect_api_url: str) -> Iterator[str]:
    """The harness with no daai-backup deployments before and after the test."""
    _delete_managed()
    yield prefect_api_url
    _delete_managed()


def _delete_managed() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    with get_client(sync_client=True) as client:
        tagged = DeploymentFilter(tags=DeploymentFilterTags(all_=["daai-backup"]))
        while page := client.read_deployments(deployment_filter=tagged, limit=200):
            for deployment in page:
                client.delete_deployment(deployment.id)


@pytest.fixture(scope="session")
def stand_in_flows() -> dict[str, Any]:
    """Flows with the real names and signatures, so sync tests do not need the engine."""
    from deploy_helpers import FLOWS

    return FLOWS


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        timezone="Asia/Kolkata",
        schedule_spread_minutes=120,
        storage_url=(tmp_path / "storage").as_uri(),
    )
