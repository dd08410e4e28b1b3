"""The maintenance flag (tied to the tenant's lease), the webhook handshake against a real
local HTTP server, and the count of writes after a cluster time (SecantusDB)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from bson.timestamp import Timestamp

from daai_backup import maintenance
from daai_backup.errors import MaintenanceNotConfirmed
from daai_backup.lease import tenant_lease
from daai_backup.mongo.namespaces import RESERVED_PREFIX

CONTROL = "daai_backup_control"
TOKEN = "tok-" + "x" * 20


def begin(client: Any, tenant: str, token: str) -> maintenance.MaintenanceRecord:
    now = datetime.now(UTC)
    return maintenance.begin(
        client,
        CONTROL,
        tenant,
        lease_token=token,
        operation="restore",
        detail="manual_x.gz.enc",
        actor="a@x",
        run="restore-t",
        expected_end=now + timedelta(minutes=5),
        now=now,
    )


def test_the_flag_counts_only_while_its_lease_is_held_and_ends_only_its_own(
    mongo_client: Any,
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with tenant_lease(mongo_client, CONTROL, tenant, "restore", ttl_seconds=5) as lease:
        begin(mongo_client, tenant, lease.token)
        shown = maintenance.current_records(mongo_client, CONTROL, [tenant, "other"])
        assert list(shown) == [tenant]
        assert shown[tenant].describe().startswith("restore of manual_x.gz.enc by a@x, since ")
        assert "expected end" in shown[tenant].describe()
        assert "lease" not in shown[tenant].to_json()  # the token is not for display
        assert not maintenance.end(mongo_client, CONTROL, tenant, "someone-else")
        assert not maintenance.clear_stale(mongo_client, CONTROL, tenant, lease.token)
        assert maintenance.current_records(mongo_client, CONTROL, [tenant])
    # The lease is gone (as after a kill -9 once it lapsed): the record no longer counts...
    assert maintenance.current_records(mongo_client, CONTROL, [tenant]) == {}
    # ...and the next holder removes it.
    with tenant_lease(mongo_client, CONTROL, tenant, "backup", ttl_seconds=5) as lease:
        assert maintenance.clear_stale(mongo_client, CONTROL, tenant, lease.token)
    records = mongo_client[CONTROL]["maintenance"]
    assert records.count_documents({"tenant": tenant}) == 0


def test_ending_the_window_removes_the_flag(mongo_client: Any) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with tenant_lease(mongo_client, CONTROL, tenant, "restore", ttl_seconds=5) as lease:
        begin(mongo_client, tenant, lease.token)
        assert maintenance.end(mongo_client, CONTROL, tenant, lease.token)
        assert maintenance.current_records(mongo_client, CONTROL, [tenant]) == {}


class Suite:
    def __init__(self, status: int, answer: Any, delay: float = 0) -> None:
        self.headers: list[str | None] = []
        suite = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                suite.headers.append(self.headers.get("Authorization"))
                time.sleep(delay)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://user:pw@127.0.0.1:{self.server.server_address[1]}/hook?k=secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Suite] = []

    def start(status: int, answer: Any, delay: float = 0) -> Suite:
        servers.append(Suite(status, answer, delay))
        return servers[-1]

    yield start
    for s in servers:
        s.server.shutdown()
        s.server.server_close()


BODY = {"tenant": "acme-hr"}


def test_the_handshake_is_confirmed_by_2xx_maintenance_true(serve: Any) -> None:
    suite = serve(200, {"maintenance": True})
    plain = suite.url.replace("user:pw@", "")  # credentials in a URL go as Basic auth instead
    maintenance.request_handshake(plain, TOKEN, 2, BODY)
    assert suite.headers == [f"Bearer {TOKEN}"]


@pytest.mark.parametrize(
    ("status", "answer", "delay", "why"),
    [
        (503, {"maintenance": True}, 0, "it answered HTTP 503"),
        (200, {"maintenance": False}, 0, 'its answer was not {"maintenance": true}'),
        (200, {"maintenance": True}, 1.5, "no answer within 0.5 s"),
    ],
)
def test_anything_else_is_no_confirmation_in_one_line_without_secrets(
    serve: Any, status: int, answer: Any, delay: float, why: str
) -> None:
    suite = serve(status, answer, delay)
    with pytest.raises(MaintenanceNotConfirmed) as caught:
        maintenance.request_handshake(suite.url, TOKEN, 0.5, BODY)
    message = str(caught.value)
    assert why in message
    assert "nothing changed" in message
    assert "\n" not in message
    for secret in (TOKEN, "pw", "secret"):
        assert secret not in message


def test_a_webhook_nobody_listens_on_is_no_confirmation() -> None:
    with pytest.raises(MaintenanceNotConfirmed, match="ConnectError connecting"):
        maintenance.request_handshake("http://127.0.0.1:9/hook", None, 1, BODY)


def test_writes_after_a_cluster_time_are_counted_but_not_the_restores_own(
    mongo_client: Any, mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    db["people"].insert_one({"_id": 0})  # before: not counted
    reply = db.command("ping")
    at: Timestamp = reply.get("operationTime") or db.client.admin.command("hello").get(
        "operationTime"
    )
    assert at is not None
    db["people"].insert_many([{"_id": 1}, {"_id": 2}])
    db["people"].update_one({"_id": 1}, {"$set": {"x": 1}})
    db["people"].delete_one({"_id": 2})
    db[f"{RESERVED_PREFIX}deadbeef.c1"].insert_one({"_id": 1})  # staging: not counted
    assert maintenance.count_writes_since(mongo_client, mongo_db_name, (at.time, at.inc)) == 4
