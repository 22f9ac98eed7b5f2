"""Operations: liveness and readiness, request ids, and JSON access logs that never carry secrets
(SECURITY-CHECKLIST items 103–104: a database outage is a 503, never a hang or "invalid
credentials")."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from contextlib import asynccontextmanager

import httpx
import pytest

from idp.app import create_app
from idp.oauth.discovery import metadata_bytes
from idp.observability import JsonFormatter
from idp.services import Services
from tests.conftest import ISSUER
from tests.rp import PASSWORD

UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
GENERATED_ID = re.compile(r"^[0-9a-f]{16}$")


@asynccontextmanager
async def app_with_database(settings, database_url: str):
    """The real app and real services, pointed at another database. The lifespan is skipped on
    purpose (it needs the database); the services are wired in as the lifespan would."""
    other = settings.model_copy(update={"database_url": database_url, "db_pool_timeout": 1.0})
    application = create_app(other)
    services = Services(other)
    application.state.services = services
    application.state.discovery_bytes = metadata_bytes(other.issuer)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=ISSUER) as client:
            yield client
    finally:
        await services.close()


@asynccontextmanager
async def silent_server():
    """A TCP server that accepts connections and never says a word (a wedged or firewalled DB)."""
    connections = []

    async def hold(reader, writer):
        connections.append(writer)
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in connections:
            writer.close()
        server.close()


# ---- liveness and readiness --------------------------------------------------------------------

async def test_healthz_is_ok(http):
    reply = await http.get("/healthz")
    assert reply.status_code == 200 and reply.json() == {"status": "ok"}


async def test_readyz_is_ok_when_the_database_answers(http):
    reply = await http.get("/readyz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "database": "ok"}


async def test_an_unreachable_database_is_not_ready_but_still_alive(settings):
    async with app_with_database(settings, UNREACHABLE) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "database": "unreachable"}
        assert GENERATED_ID.match(ready.headers["x-request-id"])
        live = await client.get("/healthz")
        assert live.status_code == 200  # liveness must not restart a pod for a database outage
        # Discovery is static and keeps answering.
        assert (await client.get("/.well-known/openid-configuration")).status_code == 200


async def test_a_database_outage_is_a_503_never_invalid_credentials(settings):
    async with app_with_database(settings, UNREACHABLE) as client:
        token = await client.post("/token", data={"grant_type": "client_credentials"},
                                  auth=("some-client", "some-secret"))
        assert token.status_code == 503, token.text
        assert token.json()["error"] == "temporarily_unavailable"
        assert token.headers["cache-control"] == "no-store" and token.headers["retry-after"]

        info = await client.get("/userinfo", headers={"Authorization": "Bearer whatever"})
        assert info.status_code in (401, 503)  # a JWT that does not verify may be refused first

        # No key set was ever loaded here (no lifespan): nothing to serve. A node that loaded one
        # serves it through an outage (tests/faults/test_database_outage.py).
        jwks = await client.get("/jwks")
        assert jwks.status_code == 503

        page = await client.get("/login?flow=abc")
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert "temporarily unavailable" in page.text

        login = await client.post("/login", data={"flow": "abc", "csrf_token": "x", "username": "a@b.c",
                                                  "password": PASSWORD})
        assert login.status_code in (403, 503)  # CSRF is checked before the database, or a 503
        assert "Incorrect email or password" not in login.text


async def test_a_database_refusing_a_value_is_a_client_error_never_an_outage(settings):
    """A value the database refuses (SQLSTATE class 22: too long, NUL, not a number) or a
    constraint (class 23) that escapes a route is bad input or a bug, not an outage: no 503 and
    no Retry-After, which would have a client retry it for ever. asyncpg reports class 22 as a
    plain DBAPIError, so routes that run real failing statements stand in for such a bug."""
    from sqlalchemy import text
    from starlette.routing import Route

    from idp.accounts.models import User
    from tests.api_support import assert_problem

    application = create_app(settings)
    postgres = settings.database_url.startswith("postgresql")

    async def bad_value(request):  # PostgreSQL: 22P02 invalid_text_representation
        services = request.app.state.services
        await services.db.run(lambda db: db.execute(text("SELECT CAST('x' AS INTEGER)")))

    async def duplicate(request):  # both databases: users.id is the primary key
        async def twice(db):
            for _ in range(2):
                db.add(User(id="duplicate-probe", email=None))
                await db.flush()
        await request.app.state.services.db.run(twice)

    prefixes = ("/api/v1/probe", "/account/probe", "/probe")  # the API, a page, the OAuth endpoints
    for prefix in prefixes:  # first, so that no route of the app's own answers for them
        application.router.routes[:0] = [Route(f"{prefix}/value", bad_value), Route(f"{prefix}/duplicate", duplicate)]
    replies = {}
    async with application.router.lifespan_context(application):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=ISSUER) as client:
            for prefix in prefixes:
                for what in (("value", "duplicate") if postgres else ("duplicate",)):
                    replies[prefix, what] = await client.get(f"{prefix}/{what}")
    for (prefix, what), reply in replies.items():
        assert "retry-after" not in reply.headers, (prefix, what, reply.status_code)
        if prefix.startswith("/api/"):
            assert_problem(reply, *((422, "validation-error") if what == "value" else (409, "conflict")))
        elif prefix.startswith("/account"):
            assert reply.status_code == 400 and reply.headers["content-type"].startswith("text/html")
            assert "The request could not be processed." in reply.text
        else:
            assert reply.status_code == 400 and reply.json()["error"] == "invalid_request"
            assert reply.headers["cache-control"] == "no-store"


async def test_readyz_answers_in_bounded_time_when_the_database_hangs(settings):
    async with silent_server() as port:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/none"
        async with app_with_database(settings, url) as client:
            started = time.monotonic()
            reply = await asyncio.wait_for(client.get("/readyz"), timeout=30)
            elapsed = time.monotonic() - started
    assert reply.status_code == 503
    assert elapsed < 10, f"readiness took {elapsed:.1f}s against a database that never answers"


# ---- request ids -------------------------------------------------------------------------------

@pytest.mark.parametrize("path, method", [
    ("/healthz", "GET"), ("/.well-known/openid-configuration", "GET"), ("/jwks", "GET"),
    ("/nowhere", "GET"), ("/authorize", "GET"), ("/userinfo", "GET"), ("/token", "POST"),
    ("/logout", "GET"), ("/healthz", "POST"),
])
async def test_every_response_carries_a_request_id(http, path, method):
    reply = await http.request(method, path)
    assert GENERATED_ID.match(reply.headers["x-request-id"]), (path, reply.status_code)
    assert len(reply.headers.get_list("x-request-id")) == 1


async def test_generated_request_ids_differ(http):
    ids = {(await http.get("/healthz")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("incoming", ["abc-123", "A.b_C-9", "x" * 64, "0123456789abcdef"])
async def test_a_sane_incoming_request_id_is_echoed(http, incoming):
    reply = await http.get("/healthz", headers={"X-Request-ID": incoming})
    assert reply.headers["x-request-id"] == incoming


@pytest.mark.parametrize("incoming", [
    "x" * 65, "<script>alert(1)</script>", "with space", '"}{"forged":true', "../../etc/passwd",
    "a;b", "%0d%0aSet-Cookie:x=y", "",
])
async def test_an_unsafe_incoming_request_id_is_replaced(http, incoming):
    reply = await http.get("/healthz", headers={"X-Request-ID": incoming})
    assert reply.headers["x-request-id"] != incoming
    assert GENERATED_ID.match(reply.headers["x-request-id"])


async def test_a_non_ascii_request_id_is_replaced(http):
    reply = await http.get("/healthz", headers=[(b"X-Request-ID", "idé".encode())])
    assert GENERATED_ID.match(reply.headers["x-request-id"])


async def test_security_headers_are_on_every_response(http):
    for path in ("/healthz", "/logout", "/nowhere"):
        reply = await http.get(path)
        assert reply.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
        assert reply.headers["referrer-policy"] == "no-referrer"
        assert reply.headers["x-content-type-options"] == "nosniff"


# ---- access logs -------------------------------------------------------------------------------

def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_access_log_is_json_with_request_ids_and_no_secrets(http, rp, caplog):
    caplog.set_level(logging.INFO)
    caplog.handler.setFormatter(JsonFormatter())
    seen: list[tuple[str, str, int, str]] = []

    async def record(response: httpx.Response) -> None:
        seen.append((response.request.method, response.request.url.path, response.status_code,
                     response.headers["x-request-id"]))

    http.event_hooks["response"].append(record)

    client = await rp.register(post_logout_redirect_uris=["https://logs.example/bye"])
    email, _ = await rp.user()
    # A wrong password first: it must not be logged either.
    wrong = "a wrong but long password value"
    first = await rp.authorize(http, client)
    await rp.login(http, first.headers["location"], email, password=wrong)
    result = await rp.sign_in(http, client, email, scope="openid profile email offline_access")
    tokens = (await rp.exchange(http, client, result)).json()
    await http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    refreshed = {}
    if "refresh_token" in tokens:
        refreshed = (await rp.token(http, client, {"grant_type": "refresh_token",
                                                   "refresh_token": tokens["refresh_token"]})).json()
    await http.get("/logout", params={"id_token_hint": tokens["id_token"], "state": "logstate",
                                      "post_logout_redirect_uri": "https://logs.example/bye"},
                   headers={"X-Request-ID": "trace-me-123"})

    lines = _json_lines(caplog.text)
    # What the server wrote (the test's own HTTP client logs full URLs; that is not the server).
    server_log = "\n".join(json.dumps(line) for line in lines if not line["logger"].startswith(("httpx", "httpcore")))
    access = [line for line in lines if line["logger"] == "idp.access"]
    assert len(access) == len(seen) >= 6
    for line in access:
        assert {"time", "level", "message", "method", "path", "status", "request_id", "duration_ms"} <= set(line)
        assert "?" not in line["path"]
    assert sorted((l["method"], l["path"], l["status"], l["request_id"]) for l in access) == sorted(seen)
    assert any(l["request_id"] == "trace-me-123" and l["path"] == "/logout" for l in access)

    secrets_sent = [PASSWORD, wrong, result.params["code"], result.state, result.verifier, "logstate",
                    tokens["access_token"], tokens["id_token"], client.secret, email,
                    http.cookies.get("idp_csrf") or "no-csrf-cookie"]
    secrets_sent += [v for k, v in {**tokens, **refreshed}.items() if k.endswith("token") and isinstance(v, str)]
    for value in filter(None, secrets_sent):
        assert value not in server_log, f"a secret reached the logs: {value[:12]}…"


async def test_an_unsafe_request_id_never_reaches_the_log(http, caplog):
    caplog.set_level(logging.INFO)
    caplog.handler.setFormatter(JsonFormatter())
    reply = await http.get("/healthz", headers={"X-Request-ID": '"}{"forged":true'})
    access = [line for line in _json_lines(caplog.text) if line["logger"] == "idp.access"]
    assert access[-1]["request_id"] == reply.headers["x-request-id"]
    assert "forged" not in caplog.text
