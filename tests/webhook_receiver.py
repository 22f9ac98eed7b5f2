"""A real webhook receiver for the tests: an HTTP server on 127.0.0.1 in a thread that records
every request (headers and raw body) and answers as scripted (`answers`: statuses to give first,
then `status`)."""

from __future__ import annotations

import asyncio
import socketserver
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> dict:
        """The payload, if the Standard Webhooks signature verifies with `secret` (raises if not)."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.requests: list[Received] = []
        self.answers: list[int] = []
        self.status = 204
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body))
                    status = receiver.answers.pop(0) if receiver.answers else receiver.status
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"{receiver.url}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    async def wait_for(self, count: int, path: str | None = None, timeout: float = 30.0) -> list[Received]:
        """At least `count` requests (to `path`), waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.received(path)) < count:
            assert time.monotonic() < deadline, f"{len(self.received(path))} of {count} requests arrived"
            await asyncio.sleep(0.02)
        return self.received(path)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True  # a connection still dripping does not hold up the test's end
    block_on_close = False


class Dripping:
    """An endpoint that never finishes answering, one byte every `every` seconds: `mode="headers"`
    drips the status line's headers (the answer never arrives), `mode="body"` answers 200 at once
    and then drips an endless body. Each connection gives up by itself after `limit` seconds."""

    def __init__(self, mode: str, every: float = 0.1, limit: float = 20.0) -> None:
        assert mode in ("headers", "body")
        self.mode, self.every, self.limit = mode, every, limit
        self.connections = 0
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Dripping:
        dripping = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                dripping.connections += 1
                self.request.recv(65536)  # the request (small): its content is not our concern
                if dripping.mode == "headers":
                    head = b"HTTP/1.1 200 OK\r\nX-Drip: "
                else:
                    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000000\r\n\r\n"
                deadline = time.monotonic() + dripping.limit
                try:
                    self.request.sendall(head)
                    while time.monotonic() < deadline:
                        time.sleep(dripping.every)
                        self.request.sendall(b"a")
                except OSError:
                    pass  # the worker hung up: what it should do

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
