"""Nothing is lost across a restart: an event queued while the server's webhook worker could not
deliver it (worker off, receiver down) is delivered by the server after it restarts.

A real uvicorn process (tests/server_process.py) on its own SQLite file; the integrator's client is
registered with `idp clients add`, and the subscription and the event go through the API.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests import secrets_registry
from tests.server_process import ServerProcess, free_port
from tests.webhook_receiver import Receiver

FAST = {"IDP_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true", "IDP_WEBHOOK_POLL_SECONDS": "0.1",
        "IDP_WEBHOOK_BACKOFF_SECONDS": "0.1", "IDP_WEBHOOK_BACKOFF_MAX_SECONDS": "0.5",
        "IDP_COURIER_IN_PROCESS": "false"}


def _token(server: ServerProcess) -> dict[str, str]:
    added = server.idp("clients", "add", "--name", "HR system", "--grant-type", "client_credentials",
                       "--scope", "idp:webhooks:read", "--scope", "idp:webhooks:write",
                       "--scope", "idp:audit:read", "--json")
    client = json.loads(added.stdout)
    secrets_registry.remember(client["client_secret"])
    reply = httpx.post(f"{server.url}/token", data={"grant_type": "client_credentials"},
                       auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert reply.status_code == 200, reply.text
    token = reply.json()["access_token"]
    secrets_registry.remember(token)
    return {"Authorization": f"Bearer {token}"}


def _deliveries(server: ServerProcess, headers: dict, subscription_id: str) -> list[dict]:
    reply = httpx.get(f"{server.url}/api/v1/webhooks/{subscription_id}/deliveries", headers=headers, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()["items"]


async def test_an_event_queued_before_a_restart_is_delivered_after_it(tmp_path):
    receiver = Receiver(port=free_port())  # its port is known, but nothing listens there yet
    server = ServerProcess(tmp_path, env=FAST | {"IDP_WEBHOOKS_IN_PROCESS": "false"})
    with server:
        headers = _token(server)
        created = httpx.post(f"{server.url}/api/v1/webhooks", headers=headers, timeout=10, json={
            "url": f"{receiver.url}/hook", "event_types": ["webhook.updated"]})
        assert created.status_code == 201, created.text
        subscription_id, secret = created.json()["id"], created.json()["secret"]
        secrets_registry.remember(secret)
        changed = httpx.patch(f"{server.url}/api/v1/webhooks/{subscription_id}", headers=headers,
                              json={"description": "queued before the restart"}, timeout=10)
        assert changed.status_code == 200, changed.text
        [queued] = _deliveries(server, headers, subscription_id)
        assert (queued["event_type"], queued["state"], queued["attempts"]) == ("webhook.updated", "pending", 0)

    receiver.start()
    try:
        server.env |= {"IDP_WEBHOOKS_IN_PROCESS": "true"}
        with server:
            [got] = await receiver.wait_for(1, timeout=30)
            assert got.id == queued["id"]
            payload = got.verify(secret)
            assert payload["type"] == "webhook.updated"
            assert payload["data"]["target"] == {"type": "webhook", "id": subscription_id}
            assert payload["data"]["after"] == {"description": "queued before the restart"}
            deadline = time.monotonic() + 15
            while _deliveries(server, headers, subscription_id)[0]["state"] != "delivered":
                assert time.monotonic() < deadline, "the delivery was not marked delivered"
                await asyncio.sleep(0.1)
        assert len(receiver.received()) == 1
    finally:
        receiver.stop()


async def test_idp_webhooks_run_delivers_beside_servers_that_do_not(tmp_path):
    """A dedicated worker process (`idp webhooks run`) for servers run with the worker off."""
    import signal
    import subprocess

    from tests.server_process import BIN

    receiver = Receiver(port=free_port()).start()
    server = ServerProcess(tmp_path, env=FAST | {"IDP_WEBHOOKS_IN_PROCESS": "false"})
    worker = None
    try:
        with server:
            headers = _token(server)
            created = httpx.post(f"{server.url}/api/v1/webhooks", headers=headers, timeout=10, json={
                "url": f"{receiver.url}/hook", "event_types": ["webhook.updated"]})
            assert created.status_code == 201, created.text
            subscription_id, secret = created.json()["id"], created.json()["secret"]
            secrets_registry.remember(secret)
            changed = httpx.patch(f"{server.url}/api/v1/webhooks/{subscription_id}", headers=headers,
                                  json={"description": "for the worker process"}, timeout=10)
            assert changed.status_code == 200, changed.text
            worker = subprocess.Popen([str(BIN / "idp"), "webhooks", "run"], env=server.env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            [got] = await receiver.wait_for(1, timeout=30)
            assert got.verify(secret)["data"]["after"] == {"description": "for the worker process"}
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGINT)  # Ctrl-C: stops after the round in progress
            output, _ = worker.communicate(timeout=20)
            assert worker.returncode == 0, output
            assert "Traceback" not in output and "webhooks worker stopped" in output
            assert secret not in output
        receiver.stop()
