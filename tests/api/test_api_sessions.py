"""/api/v1/users/{id}/sessions: an integrator lists a person's live browser sessions and ends
one or all of them; the token families signed in through them stop working."""

from __future__ import annotations

from sqlalchemy import select

from idp.audit.models import AuditEvent
from idp.oauth.models import Grant
from idp.sessions.models import BrowserSession
from tests.api.test_api_users import no_secrets
from tests.api_support import assert_problem, integrator
from tests.org_support import team
from tests.token_support import OFFLINE, assert_error, grant_id_of, refresh

USERS = "/api/v1/users"


async def two_sessions(http, rp):
    """One person signed in from two browsers through one client, each with a refresh token:
    (client, user id, [(access token, refresh token)])."""
    client = await rp.register()
    email, sub = await rp.user()
    tokens = []
    for _ in range(2):
        async with rp.browser() as browser:
            result = await rp.sign_in(browser, client, email, scope=OFFLINE)
        reply = await rp.exchange(http, client, result)
        assert reply.status_code == 200, reply.text
        tokens.append((reply.json()["access_token"], reply.json()["refresh_token"]))
    return client, sub, tokens


async def revoked(services, grant_id: str) -> bool:
    return (await services.db.run(lambda db: db.get(Grant, grant_id, populate_existing=True))).revoked_at is not None


async def test_list_and_end_one_session(http, rp, services):
    caller = await integrator(http, rp, scopes=["idp:sessions:read", "idp:sessions:write"])
    client, sub, tokens = await two_sessions(http, rp)

    reply = await http.get(f"{USERS}/{sub}/sessions", headers=caller.headers)
    assert reply.status_code == 200, reply.text
    listed = reply.json()
    no_secrets(listed)
    assert listed["next_cursor"] is None and len(listed["items"]) == 2
    item = listed["items"][0]
    assert set(item) == {"id", "created_at", "auth_time", "expires_at", "amr", "acr", "user_agent"}
    assert item["amr"] == ["pwd"]

    # Which session each token family came through.
    grants = {grant_id_of(access): await services.db.run(lambda db, a=access: db.get(Grant, grant_id_of(a)))
              for access, _ in tokens}
    first_grant, second_grant = (grant_id_of(access) for access, _ in tokens)
    target = grants[first_grant].session_id

    ended = await http.delete(f"{USERS}/{sub}/sessions/{target}", headers=caller.headers)
    assert ended.status_code == 204 and ended.content == b""
    remaining = (await http.get(f"{USERS}/{sub}/sessions", headers=caller.headers)).json()["items"]
    assert [s["id"] for s in remaining] == [grants[second_grant].session_id]
    row = await services.db.run(lambda db: db.get(BrowserSession, target))
    assert row.ended_at is not None
    assert await revoked(services, first_grant) and not await revoked(services, second_grant)
    assert_error(await refresh(http, rp, client, tokens[0][1]), 400, "invalid_grant")
    assert (await refresh(http, rp, client, tokens[1][1])).status_code == 200

    events = await services.db.run(lambda db: db.execute(select(AuditEvent).where(
        AuditEvent.action == "session.revoked", AuditEvent.target_id == target)))
    [event] = events.scalars().all()
    assert event.client_id == caller.client_id and event.after == {"user_id": sub}

    # An ended session, another person's session, an unknown person: 404.
    assert_problem(await http.delete(f"{USERS}/{sub}/sessions/{target}", headers=caller.headers), 404, "not-found")
    _, other, _ = await two_sessions(http, rp)
    assert_problem(await http.delete(f"{USERS}/{other}/sessions/{remaining[0]['id']}", headers=caller.headers),
                   404, "not-found")
    assert_problem(await http.get(f"{USERS}/nobody/sessions", headers=caller.headers), 404, "not-found")


async def test_end_every_session(http, rp, services):
    caller = await integrator(http, rp, scopes=["idp:sessions:read", "idp:sessions:write"])
    client, sub, tokens = await two_sessions(http, rp)
    reply = await http.delete(f"{USERS}/{sub}/sessions", headers=caller.headers)
    assert reply.status_code == 204
    assert (await http.get(f"{USERS}/{sub}/sessions", headers=caller.headers)).json()["items"] == []
    for access, refresh_token in tokens:
        assert await revoked(services, grant_id_of(access))
        assert_error(await refresh(http, rp, client, refresh_token), 400, "invalid_grant")
    events = await services.db.run(lambda db: db.execute(select(AuditEvent).where(
        AuditEvent.action == "session.revoked", AuditEvent.client_id == caller.client_id)))
    assert len(events.scalars().all()) == 2
    # Nothing left to end is not an error.
    assert (await http.delete(f"{USERS}/{sub}/sessions", headers=caller.headers)).status_code == 204


async def test_sessions_are_not_for_org_bound_clients_nor_without_the_scope(http, rp, services):
    org, ids, _ = await team(services)
    bound = await integrator(http, rp, org=org.id)
    assert_problem(await http.get(f"{USERS}/{ids['member']}/sessions", headers=bound.headers), 404, "not-found")
    assert_problem(await http.delete(f"{USERS}/{ids['member']}/sessions", headers=bound.headers), 404, "not-found")
    reader = await integrator(http, rp, scopes=["idp:sessions:read"])
    body = assert_problem(await http.delete(f"{USERS}/{ids['member']}/sessions", headers=reader.headers),
                          403, "insufficient-scope")
    assert body["missing_scope"] == "idp:sessions:write"
