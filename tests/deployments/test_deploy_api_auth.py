"""The production layout's API authentication: a client without the credentials is refused.

The actor of a run is declared by the caller, so the Prefect API must sit behind
authentication (docs/operations.md). This starts a real Prefect server with Prefect's own
basic authentication, as the production layout configures it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Starts a Prefect server of its own, with authentication (about 20 s): in `make test-e2e`.
pytestmark = pytest.mark.e2e


AUTH = "daai-ops:correct-horse-battery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def authenticated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prefect-auth")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_AUTH_STRING": AUTH,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the Prefect server did not answer /api/health within 120 s")
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def _post(url: str, auth: str | None) -> int:
    request = urllib.request.Request(url, data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(auth.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_an_unauthenticated_client_is_refused(authenticated_server: str) -> None:
    filter_url = f"{authenticated_server}/deployments/filter"
    assert _post(filter_url, auth=None) == 401
    assert _post(filter_url, auth="daai-ops:wrong") == 401
    assert _post(filter_url, auth=AUTH) == 200


def test_the_product_talks_to_it_with_the_clients_setting(
    authenticated_server: str, tmp_path: Path
) -> None:
    """Workers, the CLI and the suite's backend set PREFECT_API_AUTH_STRING (documented)."""
    script = (
        "import json\n"
        "from prefect.client.orchestration import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    print(json.dumps([d.name for d in c.read_deployments()]))\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_API_URL": authenticated_server,
        "PREFECT_HOME": str(tmp_path),
    }
    refused = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0
    assert "401" in refused.stderr or "Unauthorized" in refused.stderr
    allowed = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "PREFECT_API_AUTH_STRING": AUTH},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout) == []
