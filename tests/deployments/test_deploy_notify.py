"""notify: a failed backup run is posted to a webhook (a real local HTTP listener)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from deployments.notify import AUTOMATION_NAME, create_failure_notification


@pytest.fixture
def listener() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    received: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.put({"body": body.decode(), "type": self.headers.get("Content-Type")})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


@flow(name="backup")
def failing_backup(tenant: str, label: str = "manual") -> None:
    raise RuntimeError(f'storage quota exceeded for {tenant} "quoted"')


@flow(name="verify")
def failing_other(tenant: str) -> None:
    raise RuntimeError("not watched")


def test_failed_backup_is_posted(
    prefect_api_url: str, listener: tuple[str, queue.Queue[dict[str, Any]]]
) -> None:
    url, received = listener
    first = create_failure_notification(url)
    automation_id = create_failure_notification(url)  # again: replaced, not duplicated
    with get_client(sync_client=True) as client:
        automations = client.read_automations_by_name(AUTOMATION_NAME)
    assert [a.id for a in automations] == [automation_id] != [first]
    [automation] = automations
    assert automation.enabled
    assert automation.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}  # type: ignore[union-attr]

    failing_other(tenant="acme-hr", return_state=True)
    state = failing_backup(tenant="acme-hr", return_state=True)
    assert state.is_failed()

    deadline = time.monotonic() + 60
    posts: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not posts:
        try:
            posts.append(received.get(timeout=1))
        except queue.Empty:
            continue
    assert posts, "no webhook call within 60 s (are the harness's event services running?)"
    payload = json.loads(posts[0]["body"])
    assert posts[0]["type"] == "application/json"
    assert payload["product"] == "daai-backup"
    assert payload["flow"] == "backup"
    assert payload["tenant"] == "acme-hr"
    assert payload["label"] == "manual"
    assert payload["state"] == "Failed"
    assert '"quoted"' in payload["message"]
    # The unwatched flow's failure was not posted.
    time.sleep(2)
    assert all(json.loads(p["body"])["flow"] == "backup" for p in [*posts, *received.queue])
