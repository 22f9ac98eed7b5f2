"""JSON logs with a request id, and the ASGI middleware that stamps ids and security headers.

Only method, path (never the query string: it can carry codes and ID tokens), status and timing
are logged for requests.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
import time

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# The caller's address, for the audit log (audit/service.py reads it; services never see a Request).
client_ip_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_ip", default=None)
access_log = logging.getLogger("idp.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Single-use link tokens travel in the path (/orgs/invitations/idpinv_...): logged as "idpinv_…".
_PATH_SECRETS = re.compile(r"(idp(?:inv|own|cc|rst)_)[A-Za-z0-9_-]+")
# Every response is a page, a redirect or protocol JSON: none may be framed (RFC 9700 §4.16).
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"),
]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
            "logger": record.name, "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", as_json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.idp_handler = True  # so a second app in the same process replaces only ours
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "idp_handler", False)] + [handler]
    root.setLevel(level)
    # uvicorn's own access log repeats the query string; ours does not.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs the whole URL of every outgoing request at INFO (the SMS gateways): a URL may
    # carry a credential (a webhook URL with a key, a token in a query). Its warnings stay.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


class RequestContextMiddleware:
    """Pure ASGI (no per-request task switch): request id, security headers, access log."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else secrets.token_hex(8)
        token = request_id_var.set(request_id)
        client = scope.get("client")
        ip_token = client_ip_var.set(client[0] if client else None)
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in _SECURITY_HEADERS if n not in present]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            access_log.info("request", extra={"fields": {
                "method": scope["method"], "path": _PATH_SECRETS.sub(r"\1…", scope["path"]), "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            }})
            request_id_var.reset(token)
            client_ip_var.reset(ip_token)
