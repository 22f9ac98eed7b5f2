"""The refresh grant's driver path (oauth/grants/refresh_rotation.py): the common refresh runs on
the database driver, with no statement through SQLAlchemy, and keeps every guarantee of the ORM
path: the same tokens and claims, one winner of parallel uses, refusals that change nothing, and
on SQLite a wait (not a failure) while another connection holds the write lock.

The shared app reads the keys on every request (key_cache_seconds=0), so its token requests
always have a transaction open before the grant runs: PostgreSQL then runs the driver statement
inside it, SQLite takes the ORM path. These tests use a node whose caches are warm, as in
production, where the grant starts with no transaction open."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import event, select, text

from idp.app import create_app
from idp.db import engine as engine_module
from idp.db import utcnow
from idp.oauth.models import RefreshToken
from idp.security import token_hash
from tests.conftest import ISSUER
from tests.token_support import (
    all_at_once, assert_error, expire_refresh_token, grant_id_of, grant_revoked, live_refresh_tokens, refresh,
    signed_in,
)

CLAIMS = "openid profile email offline_access"
# What an ID token says of the person and the sign-in; iat, exp, at_hash and jti differ per token.
IDENTITY = ("iss", "sub", "aud", "azp", "auth_time", "amr", "sid", "name", "given_name", "family_name",
            "locale", "updated_at", "email", "email_verified")


@contextlib.asynccontextmanager
async def _warm_node(settings, **overrides):
    """A node on the same database whose key cache lasts, so a grant begins no transaction."""
    app = create_app(settings.model_copy(update={"key_cache_seconds": 300.0, **overrides}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
            yield app.state.services, http


@contextlib.contextmanager
def _statements(services):
    """Every statement SQLAlchemy sends on this node's engine while the block runs."""
    sent: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        sent.append(statement)

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def _token_row(services, value: str) -> RefreshToken | None:
    return await services.db.run(lambda db: db.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash(value))))


async def _warmed(node_http, rp, session) -> str:
    """One refresh on the node (it reads the client and the keys into its caches): the next token."""
    reply = await refresh(node_http, rp, session.client, session.refresh_token)
    assert reply.status_code == 200, reply.text
    return reply.json()["refresh_token"]


async def test_a_common_refresh_runs_on_the_driver_and_issues_what_the_orm_path_issues(http, rp, services, settings):
    session = await signed_in(http, rp, scope=CLAIMS)
    async with _warm_node(settings) as (node, node_http):
        presented = await _warmed(node_http, rp, session)
        with _statements(node) as sent:
            reply = await refresh(node_http, rp, session.client, presented)
        assert reply.status_code == 200, reply.text
        assert sent == []  # the rotation went to the driver: no BEGIN, no statement, no COMMIT
        body = reply.json()
        # The ORM path (a scope parameter sends the request there), for the same family.
        orm = await refresh(node_http, rp, session.client, body["refresh_token"], scope=CLAIMS)
        assert orm.status_code == 200, orm.text

    assert set(body["scope"].split()) == set(CLAIMS.split())
    driver_id = await rp.verify(http, body["id_token"])
    orm_id = await rp.verify(http, orm.json()["id_token"])
    assert {claim: driver_id.get(claim) for claim in IDENTITY} == {claim: orm_id.get(claim) for claim in IDENTITY}
    assert driver_id["email"] == session.email and driver_id["sub"] == session.sub and "name" in driver_id
    access = await rp.verify(http, body["access_token"])
    assert access["sub"] == session.sub and grant_id_of(body["access_token"]) == grant_id_of(session.access_token)

    spent, successor = await _token_row(services, presented), await _token_row(services, body["refresh_token"])
    assert spent.used_at is not None
    assert (successor.grant_id, successor.client_id, successor.scope) == (spent.grant_id, spent.client_id, spent.scope)
    assert successor.created_at == spent.used_at
    assert abs(successor.expires_at - (successor.created_at + timedelta(seconds=settings.refresh_token_ttl))) \
        < timedelta(seconds=1)


async def test_one_token_used_in_parallel_on_the_driver_wins_once_and_the_rest_revoke_the_family(
        http, rp, services, settings):
    session = await signed_in(http, rp)
    grant_id = grant_id_of(session.access_token)
    async with _warm_node(settings) as (_, node_http):
        presented = await _warmed(node_http, rp, session)
        replies = await all_at_once(8, lambda: refresh(node_http, rp, session.client, presented))
    outcomes = Counter((reply.status_code, reply.json().get("error")) for reply in replies)
    assert outcomes == {(200, None): 1, (400, "invalid_grant"): 7}, outcomes
    assert await grant_revoked(services, grant_id)
    assert await live_refresh_tokens(services, grant_id) == 0


async def test_refusals_on_the_warm_node_change_nothing(http, rp, services, settings):
    session, other = await signed_in(http, rp), await signed_in(http, rp)
    async with _warm_node(settings) as (_, node_http):
        presented = await _warmed(node_http, rp, session)
        # Another client's token: unknown to this client, and left as it was for its own.
        assert_error(await refresh(node_http, rp, session.client, other.refresh_token), 400, "invalid_grant")
        assert (await _token_row(services, other.refresh_token)).used_at is None
        await expire_refresh_token(services, presented)
        assert_error(await refresh(node_http, rp, session.client, presented), 400, "invalid_grant")
    row = await _token_row(services, presented)
    assert row.used_at is None and row.expires_at < utcnow()
    assert not await grant_revoked(services, row.grant_id)


async def test_on_sqlite_a_refresh_waits_for_another_writer_and_then_succeeds(http, rp, services, settings):
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL has row locks, tested by the parallel use above")
    session = await signed_in(http, rp)
    async with _warm_node(settings) as (_, node_http):
        presented = await _warmed(node_http, rp, session)
        async with services.db.transaction() as db:
            await db.execute(text("UPDATE refresh_tokens SET scope = scope WHERE 1 = 0"))  # holds the write lock
            pending = asyncio.ensure_future(refresh(node_http, rp, session.client, presented))
            await asyncio.sleep(0.3)
            assert not pending.done()  # waiting on the busy timeout, the event loop free meanwhile
        reply = await pending
    assert reply.status_code == 200, reply.text
    assert (await _token_row(services, presented)).used_at is not None


async def test_on_postgresql_a_dead_pooled_connection_answers_503_once_and_changes_nothing(
        http, rp, services, settings, monkeypatch):
    """The driver statement runs on a connection of the pool's; one whose server process ended
    (a database restart) fails that request with the outage answer, leaves the token as it was,
    and is replaced: the next try succeeds."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to lose")
    monkeypatch.setattr(engine_module, "IDLE_BEFORE_PING", 3600.0)  # no ping to find it dead first
    session = await signed_in(http, rp)
    async with _warm_node(settings, db_pool_size=1) as (node, node_http):
        presented = await _warmed(node_http, rp, session)
        backend = await node.db.run(lambda db: db.scalar(text("SELECT pg_backend_pid()")))  # the one connection
        assert await services.db.run(lambda db: db.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"),
                                                          {"pid": backend}))
        assert_error(await refresh(node_http, rp, session.client, presented), 503, "temporarily_unavailable")
        assert (await _token_row(services, presented)).used_at is None
        reply = await refresh(node_http, rp, session.client, presented)
    assert reply.status_code == 200, reply.text
    assert (await _token_row(services, presented)).used_at is not None
