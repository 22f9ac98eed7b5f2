"""The outside world for delivery tests: a real SMTP server (aiosmtpd) and a real HTTP SMS gateway
(a threaded http.server on 127.0.0.1) that speaks our signed webhook and Twilio's Messages API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller

from tests import secrets_registry

WEBHOOK_SECRET = "gateway-shared-secret"
TWILIO_SID = "AC0123456789abcdef"
TWILIO_TOKEN = "twilio-auth-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def code_in(text: str) -> str:
    return re.search(r"\b(\d{6,10})\b", text).group(1)


class SmtpServer:
    """aiosmtpd in a thread; every message received is parsed and kept. Its port is chosen at
    once, but nothing listens there before `controller.start()` (an outage test's mail server)."""

    def __init__(self) -> None:
        self.messages: list = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        message = message_from_bytes(envelope.content, policy=policy.default)
        secrets_registry.remember_message(self.body(message))  # for the log-hygiene test
        self.messages.append(message)
        return "250 OK"

    def to(self, recipient: str) -> list:
        return [m for m in self.messages if m["To"] == recipient]

    def body(self, message) -> str:
        return message.get_body(("plain",)).get_content()


class SmsGateway:
    """POST /webhook (signed JSON) and POST /2010-04-01/Accounts/<sid>/Messages.json (form,
    Basic auth). `script` is a list of status codes to answer before the next 2xx. `hold` is a
    list of events: each next request is handled, then its answer waits for the next event (a
    slow gateway, released by the test)."""

    def __init__(self) -> None:
        self.received: list[dict] = []  # accepted messages: {"to", "text", "shape"}
        self.requests = 0
        self.script: list[int] = []
        self.hold: list[threading.Event] = []
        self.always: int | None = None
        self.bad_signatures = 0
        self.lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, _ = gateway._handle(self.path, self.headers, body)
                with gateway.lock:
                    release = gateway.hold.pop(0) if gateway.hold else None
                if release is not None:
                    release.wait(timeout=30)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                payload = json.dumps({"ok": status < 300}).encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        # Bound now (the port and URL are known at once), listening only from `start()`: until
        # then a connection is refused, as by a gateway that is down.
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.server_bind()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handle(self, path: str, headers, body: bytes) -> tuple[int, dict | None]:
        with self.lock:
            self.requests += 1
            if path == "/webhook":
                record = self._webhook(headers, body)
            elif path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json":
                record = self._twilio(headers, body)
            else:
                return 404, None
            if record is None:
                return 401, None
            # Refused or not, the text was sent: the log-hygiene test looks for its code.
            secrets_registry.remember_message(record["text"])
            if self.always is not None:
                return self.always, None
            if self.script:
                return self.script.pop(0), None
            self.received.append(record)
            return (201 if record["shape"] == "twilio" else 200), record

    def _webhook(self, headers, body: bytes) -> dict | None:
        timestamp = headers.get("X-IDP-Timestamp", "")
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
        if not (fresh and hmac.compare_digest(expected, headers.get("X-IDP-Signature", ""))):
            self.bad_signatures += 1
            return None
        data = json.loads(body)
        return {"to": data["to"], "text": data["text"], "shape": "webhook",
                "idempotency_key": headers.get("Idempotency-Key")}

    def _twilio(self, headers, body: bytes) -> dict | None:
        expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if headers.get("Authorization") != expected:
            return None
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        return {"to": form["To"], "text": form["Body"], "from": form["From"], "shape": "twilio"}

    def to(self, recipient: str) -> list[dict]:
        return [m for m in self.received if m["to"] == recipient]

    def start(self) -> None:
        self.server.server_activate()
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- waiting for what the courier worker delivers ----------------------------------------------

async def until(predicate, *, timeout: float = 5.0):
    """Poll `predicate` until it returns something truthy (the worker sends in the background)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for a delivery"
        await asyncio.sleep(0.02)


async def mail_to(smtp: SmtpServer, address: str, count: int = 1) -> list:
    """The first `count` (or more) mails received for `address`."""
    return await until(lambda: len(smtp.to(address)) >= count and smtp.to(address))


async def emailed_code(smtp: SmtpServer, address: str, count: int = 1, *,
                       warning: str = "not a password") -> str:
    """The code in the `count`-th mail to `address` (which must say the code is not a password)."""
    mail = (await mail_to(smtp, address, count))[count - 1]
    body = smtp.body(mail)
    assert warning in body
    return code_in(body)


async def texted_code(gateway: SmsGateway, number: str, count: int = 1) -> str:
    """The code in the `count`-th SMS to `number`."""
    messages = await until(lambda: len(gateway.to(number)) >= count and gateway.to(number))
    assert "not a password" in messages[count - 1]["text"]
    return code_in(messages[count - 1]["text"])
