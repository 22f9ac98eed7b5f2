"""Endpoints that read tokens: userinfo (OIDC Core §5.3, RFC 6750), introspection (RFC 7662) and
revocation (RFC 7009). Checklist items 46, 51–53."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.conftest import ISSUER
from tests.rp import now
from tests.token_support import (
    assert_error, basic, grant_id_of, grant_revoked, introspect, key_client, live_refresh_tokens, refresh, revoke,
    signed_in, userinfo,
)


def _assert_bearer_challenge(reply: httpx.Response, error: str | None = None) -> None:
    challenge = reply.headers["www-authenticate"]
    assert challenge.startswith("Bearer"), challenge
    if error is not None:
        assert f'error="{error}"' in challenge, challenge


async def _machine(rp, **overrides):
    return await rp.register(**{"grant_types": ["client_credentials"], "redirect_uris": [],
                                "scopes": ["api.read"], **overrides})


async def _machine_token(http, rp, client=None) -> tuple[object, str]:
    client = client or await _machine(rp)
    reply = await rp.token(http, client, {"grant_type": "client_credentials"})
    assert reply.status_code == 200, reply.text
    return client, reply.json()["access_token"]


# ---- userinfo ----------------------------------------------------------------------------------

async def test_userinfo_get_and_post_with_header_and_post_with_body(http, rp):
    session = await signed_in(http, rp, scope="openid profile email")
    id_token = await rp.verify(http, session.body["id_token"])
    header = {"Authorization": f"Bearer {session.access_token}"}

    replies = [
        await http.get("/userinfo", headers=header),
        await http.post("/userinfo", headers=header),
        await http.post("/userinfo", data={"access_token": session.access_token}),
    ]
    for reply in replies:
        assert reply.status_code == 200, reply.text
        assert reply.headers["cache-control"] == "no-store"
        assert reply.headers["content-type"].startswith("application/json")
        claims = reply.json()
        assert claims["sub"] == session.sub == id_token["sub"]
        assert claims["email"] == session.email and claims["email_verified"] is True
        assert claims["name"] == "Maija Meikäläinen"
    # Case-insensitive scheme (RFC 9110 §11.1).
    assert (await http.get("/userinfo", headers={"Authorization": f"bearer {session.access_token}"})).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Bearer   "},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}])
async def test_userinfo_without_a_token_is_401_with_bearer_challenge(http, headers):
    for reply in (await http.get("/userinfo", headers=headers), await http.post("/userinfo", headers=headers)):
        assert reply.status_code == 401, reply.text
        _assert_bearer_challenge(reply)
        assert reply.json()["error"] == "invalid_token"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "x" * 5000])
async def test_userinfo_with_garbage_is_401_invalid_token(http, token):
    reply = await userinfo(http, token)
    assert reply.status_code == 401
    _assert_bearer_challenge(reply, "invalid_token")
    assert reply.json()["error"] == "invalid_token"


async def test_userinfo_refuses_id_tokens_refresh_tokens_and_expired_tokens(http, rp, services):
    session = await signed_in(http, rp)
    for token in (session.body["id_token"], session.refresh_token):
        reply = await userinfo(http, token)
        assert reply.status_code == 401 and reply.json()["error"] == "invalid_token"

    # An access token signed with our key but already expired.
    await services.db.run(services.keyring.load)
    expired = services.keyring.sign({"iss": ISSUER, "sub": session.sub, "aud": session.client.client_id,
                                     "client_id": session.client.client_id, "scope": "openid",
                                     "iat": now() - 700, "exp": now() - 100, "jti": secrets.token_urlsafe(16)},
                                    alg="ES256", typ="at+jwt")
    reply = await userinfo(http, expired)
    assert reply.status_code == 401
    _assert_bearer_challenge(reply, "invalid_token")


async def test_userinfo_with_client_credentials_token_is_403_insufficient_scope(http, rp):
    _, token = await _machine_token(http, rp)
    reply = await userinfo(http, token)
    assert reply.status_code == 403
    assert reply.json()["error"] == "insufficient_scope"
    _assert_bearer_challenge(reply, "insufficient_scope")


@pytest.mark.parametrize("scope, present, absent", [
    ("openid", set(), {"name", "given_name", "family_name", "email", "email_verified"}),
    ("openid profile", {"name", "given_name", "family_name", "updated_at"}, {"email", "email_verified"}),
    ("openid email", {"email", "email_verified"}, {"name", "given_name", "family_name", "updated_at"}),
    ("openid profile email", {"name", "email", "email_verified"}, set()),
])
async def test_userinfo_claims_follow_the_granted_scopes(http, rp, scope, present, absent):
    session = await signed_in(http, rp, scope=scope)
    reply = await userinfo(http, session.access_token)
    assert reply.status_code == 200, reply.text
    claims = reply.json()
    assert claims["sub"] == session.sub
    assert present <= set(claims), claims
    assert not absent & set(claims), claims


# ---- introspection -----------------------------------------------------------------------------

async def test_introspection_needs_client_authentication(http, rp):
    session = await signed_in(http, rp)
    assert_error(await http.post("/introspect", data={"token": session.access_token}), 401, "invalid_client")
    wrong = httpx.BasicAuth(session.client.client_id, "wrong")._auth_header
    reply = await http.post("/introspect", data={"token": session.access_token}, headers={"Authorization": wrong})
    assert_error(reply, 401, "invalid_client")
    assert reply.headers["www-authenticate"].lower().startswith("basic")
    # Public clients cannot introspect.
    public = await rp.register(public=True)
    reply = await http.post("/introspect", data={"token": session.access_token, "client_id": public.client_id})
    assert_error(reply, 401, "invalid_client")
    # Wrong content type.
    reply = await http.post("/introspect", json={"token": session.access_token}, headers=basic(session.client))
    assert_error(reply, 400, "invalid_request")


async def test_introspection_of_an_active_access_token(http, rp):
    session = await signed_in(http, rp, scope="openid email offline_access")
    info = await introspect(http, session.client, session.access_token)
    assert info["active"] is True
    assert set(info["scope"].split()) == {"openid", "email", "offline_access"}
    assert info["client_id"] == session.client.client_id and info["sub"] == session.sub
    assert info["iss"] == ISSUER and info["exp"] > now() and info["token_type"] == "Bearer"

    # A resource server (another confidential client) may introspect it too.
    resource_server = await _machine(rp)
    assert (await introspect(http, resource_server, session.access_token))["active"] is True


@pytest.mark.parametrize("token", ["garbage", "", "idprt_" + "A" * 43, "a.b.c"])
async def test_introspection_of_garbage_is_inactive(http, rp, token):
    client = await _machine(rp)
    assert await introspect(http, client, token) == {"active": False}


async def test_introspection_of_revoked_tokens_is_inactive(http, rp):
    session = await signed_in(http, rp)
    assert (await revoke(http, session.client, session.access_token)).status_code == 200
    assert await introspect(http, session.client, session.access_token) == {"active": False}
    assert (await introspect(http, session.client, session.refresh_token))["active"] is True
    assert (await revoke(http, session.client, session.refresh_token)).status_code == 200
    assert await introspect(http, session.client, session.refresh_token) == {"active": False}


async def test_introspection_of_refresh_tokens_only_for_their_own_client(http, rp):
    session = await signed_in(http, rp)
    info = await introspect(http, session.client, session.refresh_token)
    assert info["active"] is True and info["client_id"] == session.client.client_id
    assert info["sub"] == session.sub and info["token_type"] == "refresh_token"
    assert "offline_access" in info["scope"].split() and info["exp"] > now()

    other = await rp.register()
    assert await introspect(http, other, session.refresh_token) == {"active": False}
    # Asking did not harm the token.
    assert (await refresh(http, rp, session.client, session.refresh_token)).status_code == 200


async def test_introspection_of_a_rotated_refresh_token_is_inactive(http, rp):
    session = await signed_in(http, rp)
    assert (await refresh(http, rp, session.client, session.refresh_token)).status_code == 200
    assert await introspect(http, session.client, session.refresh_token) == {"active": False}


async def test_introspection_of_a_client_credentials_token(http, rp):
    client, token = await _machine_token(http, rp)
    info = await introspect(http, client, token)
    assert info["active"] is True and info["sub"] == client.client_id and info["client_id"] == client.client_id
    assert info["scope"] == "api.read"


# ---- revocation --------------------------------------------------------------------------------

async def test_revoking_a_refresh_token_revokes_its_grant(http, rp, services):
    session = await signed_in(http, rp)
    reply = await revoke(http, session.client, session.refresh_token, token_type_hint="refresh_token")
    assert reply.status_code == 200 and reply.headers["cache-control"] == "no-store"

    grant_id = grant_id_of(session.access_token)
    assert await grant_revoked(services, grant_id)
    assert await live_refresh_tokens(services, grant_id) == 0
    assert_error(await refresh(http, rp, session.client, session.refresh_token), 400, "invalid_grant")
    assert await introspect(http, session.client, session.access_token) == {"active": False}
    assert (await userinfo(http, session.access_token)).status_code == 401


async def test_revoking_an_access_token_makes_userinfo_401(http, rp):
    session = await signed_in(http, rp)
    assert (await userinfo(http, session.access_token)).status_code == 200
    reply = await revoke(http, session.client, session.access_token, token_type_hint="access_token")
    assert reply.status_code == 200
    info = await userinfo(http, session.access_token)
    assert info.status_code == 401
    _assert_bearer_challenge(info, "invalid_token")
    # Revoking it again is fine, and the refresh token still works (only that token was revoked).
    assert (await revoke(http, session.client, session.access_token)).status_code == 200
    assert (await refresh(http, rp, session.client, session.refresh_token)).status_code == 200


async def test_revoking_with_a_wrong_hint_still_revokes(http, rp):
    session = await signed_in(http, rp)
    assert (await revoke(http, session.client, session.access_token, token_type_hint="refresh_token")).status_code == 200
    assert (await userinfo(http, session.access_token)).status_code == 401


async def test_revoking_a_client_credentials_token(http, rp):
    client, token = await _machine_token(http, rp)
    assert (await revoke(http, client, token)).status_code == 200
    assert await introspect(http, client, token) == {"active": False}


@pytest.mark.parametrize("token", ["unknown", "idprt_" + "B" * 43, "a.b.c"])
async def test_revoking_an_unknown_token_is_200(http, rp, token):
    session = await signed_in(http, rp)
    reply = await revoke(http, session.client, token)
    assert reply.status_code == 200 and reply.json() == {}


async def test_revoking_another_clients_tokens_is_200_but_they_stay_valid(http, rp, services):
    session = await signed_in(http, rp)
    other = await rp.register()
    assert (await revoke(http, other, session.refresh_token)).status_code == 200
    assert (await revoke(http, other, session.access_token)).status_code == 200

    assert not await grant_revoked(services, grant_id_of(session.access_token))
    assert (await userinfo(http, session.access_token)).status_code == 200
    assert (await introspect(http, session.client, session.refresh_token))["active"] is True
    assert (await refresh(http, rp, session.client, session.refresh_token)).status_code == 200


async def test_revocation_needs_a_token_and_client_authentication(http, rp):
    session = await signed_in(http, rp)
    assert_error(await http.post("/revoke", data={}, headers=basic(session.client)), 400, "invalid_request")
    assert_error(await http.post("/revoke", data={"token": ""}, headers=basic(session.client)), 400, "invalid_request")
    assert_error(await http.post("/revoke", data={"token": session.access_token}), 401, "invalid_client")
    wrong = httpx.BasicAuth(session.client.client_id, "nope")._auth_header
    assert_error(await http.post("/revoke", data={"token": session.access_token}, headers={"Authorization": wrong}),
                 401, "invalid_client")
    assert (await userinfo(http, session.access_token)).status_code == 200


async def test_public_client_revokes_its_own_refresh_token(http, rp, services):
    client = await rp.register(public=True)
    session = await signed_in(http, rp, client, auth="none")
    reply = await http.post("/revoke", data={"token": session.refresh_token, "client_id": client.client_id})
    assert reply.status_code == 200, reply.text
    assert await grant_revoked(services, grant_id_of(session.access_token))


async def test_private_key_jwt_revocation_spends_the_assertion_even_on_error(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    form = keyed.form()
    assert_error(await http.post("/revoke", data=form), 400, "invalid_request")  # no token
    token = (await http.post("/token", data={"grant_type": "client_credentials", **keyed.form()})).json()["access_token"]
    assert_error(await http.post("/revoke", data={"token": token, **form}), 401, "invalid_client")
    assert (await http.post("/revoke", data={"token": token, **keyed.form()})).status_code == 200
