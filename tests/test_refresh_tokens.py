"""Refresh tokens (RFC 6749 §6; OIDC Core §12; RFC 9700 §4.14.2): issued for offline_access,
rotated on every use, replay revokes the family, bound to the client and to the granted scope.
Checklist items 41–46 and bug class 2."""

from __future__ import annotations

import asyncio

from tests.conftest import ISSUER
from tests.rp import now
from tests.token_support import (
    assert_error, basic, expire_refresh_token, grant_id_of, grant_revoked, introspect, live_refresh_tokens,
    refresh, signed_in, userinfo,
)


async def test_offline_access_yields_a_refresh_token_that_refreshes(http, rp, services):
    session = await signed_in(http, rp, scope="openid profile offline_access")
    reply = await refresh(http, rp, session.client, session.refresh_token)
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert body["refresh_token"] != session.refresh_token
    assert body["access_token"] != session.access_token
    assert set(body["scope"].split()) == {"openid", "profile", "offline_access"}

    access = await rp.verify(http, body["access_token"])
    assert access["sub"] == session.sub and access["client_id"] == session.client.client_id
    info = await userinfo(http, body["access_token"])
    assert info.status_code == 200 and info.json()["sub"] == session.sub and "name" in info.json()
    # Same grant (token family) as the first access token.
    assert grant_id_of(body["access_token"]) == grant_id_of(session.access_token)
    assert await live_refresh_tokens(services, grant_id_of(body["access_token"])) == 1


async def test_refreshed_id_token_keeps_identity_claims_with_newer_iat(http, rp):
    session = await signed_in(http, rp)
    first = await rp.verify(http, session.body["id_token"])
    await asyncio.sleep(1.01)  # so a newer iat is observable at one-second resolution
    reply = await refresh(http, rp, session.client, session.refresh_token)
    assert reply.status_code == 200, reply.text
    second = await rp.verify(http, reply.json()["id_token"])
    for claim in ("iss", "sub", "aud", "azp", "auth_time"):
        assert second[claim] == first[claim], claim
    assert second["iss"] == ISSUER and second["azp"] == session.client.client_id
    assert second["iat"] > first["iat"] and second["exp"] > now()
    assert "nonce" not in second  # OIDC Core §12.2


async def test_rotation_refuses_the_previous_token_and_revokes_the_family(http, rp, services):
    session = await signed_in(http, rp)
    client = session.client
    grant_id = grant_id_of(session.access_token)

    second = await refresh(http, rp, client, session.refresh_token)
    assert second.status_code == 200, second.text
    third = await refresh(http, rp, client, second.json()["refresh_token"])
    assert third.status_code == 200, third.text
    newest = third.json()

    # Replaying an already-rotated token: refused, and the whole family dies (RFC 9700 §4.14.2).
    assert_error(await refresh(http, rp, client, session.refresh_token), 400, "invalid_grant")
    assert await grant_revoked(services, grant_id)
    assert await live_refresh_tokens(services, grant_id) == 0
    assert_error(await refresh(http, rp, client, newest["refresh_token"]), 400, "invalid_grant")
    assert_error(await refresh(http, rp, client, second.json()["refresh_token"]), 400, "invalid_grant")
    for access_token in (session.access_token, second.json()["access_token"], newest["access_token"]):
        assert (await userinfo(http, access_token)).status_code == 401
        assert await introspect(http, client, access_token) == {"active": False}
    assert await introspect(http, client, newest["refresh_token"]) == {"active": False}


async def test_public_client_refresh_rotation_and_reuse_detection(http, rp, services):
    client = await rp.register(public=True)
    session = await signed_in(http, rp, client, auth="none")
    second = await refresh(http, rp, client, session.refresh_token, auth="none")
    assert second.status_code == 200, second.text
    assert_error(await refresh(http, rp, client, session.refresh_token, auth="none"), 400, "invalid_grant")
    assert_error(await refresh(http, rp, client, second.json()["refresh_token"], auth="none"), 400, "invalid_grant")
    assert (await userinfo(http, second.json()["access_token"])).status_code == 401
    assert await live_refresh_tokens(services, grant_id_of(session.access_token)) == 0


async def test_refresh_token_of_another_client_is_invalid_grant_and_stays_valid(http, rp, services):
    session_2 = await signed_in(http, rp)
    client_1 = await rp.register()

    assert_error(await refresh(http, rp, client_1, session_2.refresh_token), 400, "invalid_grant")
    # Not a replay of client 2's family: client 2's token keeps working.
    assert not await grant_revoked(services, grant_id_of(session_2.access_token))
    assert (await userinfo(http, session_2.access_token)).status_code == 200
    reply = await refresh(http, rp, session_2.client, session_2.refresh_token)
    assert reply.status_code == 200, reply.text


async def test_scope_may_narrow_but_never_widen(http, rp):
    session = await signed_in(http, rp, scope="openid profile email offline_access")
    client = session.client

    narrowed = await refresh(http, rp, client, session.refresh_token, scope="openid email")
    assert narrowed.status_code == 200, narrowed.text
    body = narrowed.json()
    assert body["scope"] == "openid email"
    assert (await rp.verify(http, body["access_token"]))["scope"] == "openid email"
    info = (await userinfo(http, body["access_token"])).json()
    assert "email" in info and "name" not in info
    id_token = await rp.verify(http, body["id_token"])
    assert "email" in id_token and "name" not in id_token

    # A narrowed refresh does not shrink the grant: the full scope can be asked again.
    full = await refresh(http, rp, client, body["refresh_token"], scope="openid profile email offline_access")
    assert full.status_code == 200, full.text
    latest = full.json()["refresh_token"]

    # Asking for more than was granted: invalid_scope, and the refresh token is not spent.
    for scope in ("openid profile email offline_access phone", "api.read", "openid address"):
        assert_error(await refresh(http, rp, client, latest, scope=scope), 400, "invalid_scope")
    assert (await refresh(http, rp, client, latest)).status_code == 200


async def test_narrowing_without_openid_returns_no_id_token(http, rp):
    session = await signed_in(http, rp, scope="openid profile offline_access")
    reply = await refresh(http, rp, session.client, session.refresh_token, scope="profile")
    assert reply.status_code == 200, reply.text
    assert "id_token" not in reply.json()
    assert (await userinfo(http, reply.json()["access_token"])).status_code == 403


async def test_refresh_without_client_authentication_is_invalid_client(http, rp):
    session = await signed_in(http, rp)
    reply = await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": session.refresh_token})
    assert_error(reply, 401, "invalid_client")
    reply = await refresh(http, rp, session.client, session.refresh_token, auth="none")  # client_id only
    assert_error(reply, 401, "invalid_client")
    # Failed authentication does not spend the token.
    assert (await refresh(http, rp, session.client, session.refresh_token)).status_code == 200


async def test_missing_unknown_and_expired_refresh_tokens(http, rp, services):
    session = await signed_in(http, rp)
    client = session.client
    assert_error(await rp.token(http, client, {"grant_type": "refresh_token"}), 400, "invalid_request")
    assert_error(await refresh(http, rp, client, "idprt_" + "A" * 43), 400, "invalid_grant")
    assert_error(await refresh(http, rp, client, session.access_token), 400, "invalid_grant")

    await expire_refresh_token(services, session.refresh_token)
    assert_error(await refresh(http, rp, client, session.refresh_token), 400, "invalid_grant")
    assert await introspect(http, client, session.refresh_token) == {"active": False}


async def test_refresh_after_revocation_is_invalid_grant(http, rp):
    session = await signed_in(http, rp)
    reply = await http.post("/revoke", data={"token": session.refresh_token},
                            headers=basic(session.client))
    assert reply.status_code == 200
    assert_error(await refresh(http, rp, session.client, session.refresh_token), 400, "invalid_grant")


async def test_refresh_needs_the_refresh_grant_type(http, rp):
    client = await rp.register(grant_types=["authorization_code"])
    assert_error(await refresh(http, rp, client, "idprt_whatever"), 400, "unauthorized_client")


async def test_refresh_token_entropy_and_lifetime(http, rp, services):
    session = await signed_in(http, rp)
    info = await introspect(http, session.client, session.refresh_token)
    assert info["active"] is True and info["client_id"] == session.client.client_id
    assert info["sub"] == session.sub and info["exp"] > now()
    assert len(session.refresh_token.removeprefix("idprt_")) * 6 >= 128
