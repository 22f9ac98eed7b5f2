"""The fast paths of issue 6 keep their guarantees: the client cache (oauth/client_cache.py) never
lets a change through this node go unseen, and bounds what other nodes may still accept; a
token request served from the caches runs no SQL at all; discovery and JWKS, served as bytes,
keep the headers every response carries."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from idp.app import create_app
from idp.audit.service import Actor
from idp.db import Database
from idp.db import engine as engine_module
from idp.oauth.client_cache import ClientCache
from tests.api_support import integrator
from tests.conftest import ISSUER
from tests.token_support import assert_error

CC = {"grant_type": "client_credentials"}


async def _machine(rp):
    return await rp.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"],
                             first_party=False)


def _post(http, client, secret=None):
    return http.post("/token", data=CC, auth=(client.client_id, secret or client.secret))


@contextlib.asynccontextmanager
async def _other_node(settings, **overrides):
    """A second server process on the same database, as a node behind the load balancer would be."""
    app = create_app(settings.model_copy(update=overrides))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
            yield app.state.services, http


# ---- changes through this node apply at once -------------------------------------------------

async def test_a_client_deleted_through_the_api_is_refused_at_once(http, rp, services):
    assert services.clients.cache.ttl > 0  # the shared app runs with the cache on
    client = await _machine(rp)
    assert (await _post(http, client)).status_code == 200  # now cached
    admin = await integrator(http, rp, scopes=["idp:clients:write"])
    deleted = await http.delete(f"/api/v1/clients/{client.client_id}", headers=admin.headers)
    assert deleted.status_code == 204, deleted.text
    assert_error(await _post(http, client), 401, "invalid_client")


async def test_a_rotated_secret_is_refused_at_once_and_the_new_one_works(http, rp, services):
    client = await _machine(rp)
    assert (await _post(http, client)).status_code == 200

    async def rotate(db):
        row = await services.clients.get(db, client.client_id, for_update=True)
        return await services.clients.rotate_secret(db, row, actor=Actor.operator())

    new_secret = await services.db.run(rotate)
    assert_error(await _post(http, client), 401, "invalid_client")
    assert (await _post(http, client, new_secret)).status_code == 200


async def test_a_narrowed_registration_applies_to_the_next_request(http, rp, services):
    client = await rp.register(grant_types=["client_credentials"], redirect_uris=[],
                               scopes=["api.read", "api.write"], first_party=False)
    assert (await http.post("/token", data={**CC, "scope": "api.write"},
                            auth=(client.client_id, client.secret))).status_code == 200

    async def narrow(db):
        row = await services.clients.get(db, client.client_id, for_update=True)
        await services.clients.update(db, row, {"scopes": ["api.read"]}, actor=Actor.operator())

    await services.db.run(narrow)
    assert_error(await http.post("/token", data={**CC, "scope": "api.write"},
                                 auth=(client.client_id, client.secret)), 400, "invalid_scope")


async def test_a_change_rolled_back_leaves_the_client_working(http, rp, services):
    client = await _machine(rp)

    async def rotate_then_fail(db):
        row = await services.clients.get(db, client.client_id, for_update=True)
        await services.clients.rotate_secret(db, row, actor=Actor.operator())
        raise RuntimeError("the request failed after the change")

    with pytest.raises(RuntimeError):
        await services.db.run(rotate_then_fail)
    assert (await _post(http, client)).status_code == 200


def test_a_row_read_before_an_invalidation_is_not_cached():
    """A request that read a client's row while another committed a change must not put the old
    row back into the cache after the change dropped it."""
    from idp.oauth.models import Client

    cache = ClientCache(60)
    generation = cache.generation  # the request starts reading
    cache.invalidate({"c1"})  # meanwhile a change commits
    returned = cache.put(Client(client_id="c1", name="old", scopes=["a"]), generation)
    assert returned.name == "old"  # the request itself goes on with what it read
    assert cache.get("c1") is None
    cache.put(Client(client_id="c1", name="new", scopes=["a"]), cache.generation)
    assert cache.get("c1").name == "new"


# ---- other nodes: bounded staleness ----------------------------------------------------------

async def test_another_node_with_the_cache_off_refuses_a_deleted_client_at_once(http, rp, services, settings):
    client = await _machine(rp)
    async with _other_node(settings, client_cache_seconds=0.0) as (_, other):
        assert (await _post(other, client)).status_code == 200
        await services.db.run(lambda db: _delete(services, db, client.client_id))
        assert_error(await _post(other, client), 401, "invalid_client")


async def test_another_node_sees_a_rotated_secret_within_its_cache_time(http, rp, services, settings):
    client = await _machine(rp)
    async with _other_node(settings, client_cache_seconds=0.3) as (_, other):
        assert (await _post(other, client)).status_code == 200  # cached there

        async def rotate(db):
            row = await services.clients.get(db, client.client_id, for_update=True)
            return await services.clients.rotate_secret(db, row, actor=Actor.operator())

        new_secret = await services.db.run(rotate)
        assert_error(await _post(http, client), 401, "invalid_client")  # this node: at once
        # The other node may still take the old secret, but only until its entry is 0.3 s old.
        await asyncio.sleep(0.35)
        assert_error(await _post(other, client), 401, "invalid_client")
        assert (await _post(other, client, new_secret)).status_code == 200


async def _delete(services, db, client_id):
    row = await services.clients.get(db, client_id, for_update=True)
    await services.clients.delete(db, row, actor=Actor.operator())


# ---- no SQL when nothing needs it -------------------------------------------------------------

async def test_a_cached_client_credentials_request_runs_no_sql(http, rp, services, settings):
    """A warm client_credentials grant reads the client and the keys from the caches and writes
    nothing: no statement, no BEGIN and no COMMIT (SQLite's BEGIN IMMEDIATE would serialise it
    behind every writer)."""
    async with _other_node(settings, key_cache_seconds=60.0) as (node, other):
        client = await _machine(rp)
        assert (await _post(other, client)).status_code == 200
        statements = []

        def seen(*args):
            statements.append(args)

        engine = node.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        event.listen(engine, "begin", seen)  # SQLite's BEGIN IMMEDIATE comes from a begin listener
        event.listen(engine, "commit", seen)
        try:
            for _ in range(3):
                assert (await _post(other, client)).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", seen)
            event.remove(engine, "begin", seen)
            event.remove(engine, "commit", seen)
        assert statements == []


# ---- discovery and JWKS ----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server",
                                  "/jwks"])
async def test_documents_keep_their_headers_and_answer_head(http, path):
    reply = await http.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-length"] == str(len(reply.content))
    assert reply.headers["access-control-allow-origin"] == "*"
    assert reply.headers["x-frame-options"] == "DENY" and reply.headers["x-request-id"]
    head = await http.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == reply.headers["content-length"]
    assert (await http.post(path)).status_code == 405


@pytest.mark.parametrize("idle_before_ping", [0.0, 3600.0])
async def test_a_pooled_connection_that_died_while_idle_is_pinged_and_replaced(settings, monkeypatch,
                                                                               idle_before_ping):
    """PostgreSQL pings a pooled connection only after it sat idle a while (db/engine.py), not at
    every checkout. Past that time, one whose server process ended meanwhile (a restart, an idle
    timeout) is replaced before any work sees it; within it, the work fails once and the pool is
    renewed (the request gets a 503)."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to lose")
    monkeypatch.setattr(engine_module, "IDLE_BEFORE_PING", idle_before_ping)
    database, other = Database(settings.database_url, pool_size=1), Database(settings.database_url)
    backend = text("SELECT pg_backend_pid()")
    try:
        pid = await database.run(lambda db: db.scalar(backend))
        # Waits (up to 5 s) until the backend has exited, so the next checkout meets a dead one.
        assert await other.run(lambda db: db.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}))
        if idle_before_ping:
            with pytest.raises(DBAPIError):
                await database.run(lambda db: db.scalar(backend))
        assert await database.run(lambda db: db.scalar(backend)) != pid
    finally:
        await database.dispose()
        await other.dispose()
