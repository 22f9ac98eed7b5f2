"""Client authentication at the token endpoint (RFC 6749 §2.3, §5.2; RFC 7521/7523; OIDC Core §9)
and the client credentials grant (RFC 6749 §4.4; RFC 9068). Checklist items 36–40 and bug
class 12 (alg confusion, trusted `jwk` header, `jti` replay)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

import httpx
import pytest

from idp.oauth.clients import ClientError, ClientSpec
from tests.conftest import ISSUER
from tests.rp import now
from tests.token_support import (
    JWT_BEARER, TOKEN_ENDPOINT, assert_error, authorized, basic, introspect, key_client, new_key,
    unsigned_jwt, userinfo,
)


def _assert_basic_challenge(reply: httpx.Response) -> None:
    assert reply.headers["www-authenticate"].lower().startswith("basic")


# ---- client_secret_basic / client_secret_post / none -------------------------------------------

async def test_client_secret_basic_succeeds_and_wrong_secret_is_401_with_basic_challenge(http, rp):
    client, _, _, result = await authorized(http, rp)
    wrong = httpx.BasicAuth(client.client_id, client.secret + "x")._auth_header
    reply = await http.post("/token", data={"grant_type": "authorization_code", "code": result.params["code"],
                                            "redirect_uri": result.redirect_uri, "code_verifier": result.verifier},
                            headers={"Authorization": wrong})
    assert_error(reply, 401, "invalid_client")
    _assert_basic_challenge(reply)
    # The failed attempt did not burn the code.
    assert (await rp.exchange(http, client, result)).status_code == 200


@pytest.mark.parametrize("header", [
    "Basic " + base64.b64encode(b"idpc_nobody:secret").decode(),   # unknown client
    "Basic " + base64.b64encode(b":").decode(),                    # empty
    "Basic !!!not-base64!!!",                                      # malformed
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),        # not UTF-8
])
async def test_bad_basic_credentials_are_401_invalid_client(http, header):
    reply = await http.post("/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header})
    assert_error(reply, 401, "invalid_client")
    _assert_basic_challenge(reply)


async def test_confidential_client_without_authentication_is_invalid_client(http, rp):
    client, _, _, result = await authorized(http, rp)
    reply = await rp.exchange(http, client, result, auth="none")  # client_id only
    assert_error(reply, 401, "invalid_client")
    reply = await http.post("/token", data={"grant_type": "authorization_code", "code": result.params["code"]})
    assert_error(reply, 401, "invalid_client")
    assert (await rp.exchange(http, client, result)).status_code == 200


async def test_client_secret_post_succeeds_and_wrong_secret_is_invalid_client(http, rp):
    client = await rp.register(token_endpoint_auth_method="client_secret_post")
    client, _, _, result = await authorized(http, rp, client)
    data = {"grant_type": "authorization_code", "code": result.params["code"], "redirect_uri": result.redirect_uri,
            "code_verifier": result.verifier, "client_id": client.client_id}
    assert_error(await http.post("/token", data={**data, "client_secret": client.secret[:-1]}), 401, "invalid_client")
    assert_error(await http.post("/token", data=data), 401, "invalid_client")  # no secret at all
    reply = await rp.exchange(http, client, result, auth="post")
    assert reply.status_code == 200, reply.text


async def test_method_other_than_the_registered_one_is_invalid_client(http, rp):
    basic_client = await rp.register()
    post_client = await rp.register(token_endpoint_auth_method="client_secret_post")
    public_client = await rp.register(public=True)
    data = {"grant_type": "authorization_code", "code": "idpac_x", "redirect_uri": "https://x.example/cb"}

    # A client_secret_basic client sending its (correct) secret in the body.
    assert_error(await rp.token(http, basic_client, data, auth="post"), 401, "invalid_client")
    # A client_secret_post client sending its (correct) secret in Basic.
    reply = await rp.token(http, post_client, data, auth="basic")
    assert_error(reply, 401, "invalid_client")
    _assert_basic_challenge(reply)
    # A public client pretending to have a secret.
    reply = await http.post("/token", data=data, headers={
        "Authorization": httpx.BasicAuth(public_client.client_id, "made-up")._auth_header})
    assert_error(reply, 401, "invalid_client")


async def test_two_authentication_methods_at_once_is_invalid_request(http, rp):
    client = await rp.register()
    keyed = await key_client(rp)
    data = {"grant_type": "client_credentials"}
    reply = await http.post("/token", data={**data, "client_id": client.client_id, "client_secret": client.secret},
                            headers=basic(client))
    assert_error(reply, 400, "invalid_request")
    reply = await http.post("/token", data={**data, **keyed.form()}, headers=basic(client))
    assert_error(reply, 400, "invalid_request")
    reply = await http.post("/token", data={**data, **keyed.form(), "client_secret": "x"})
    assert_error(reply, 400, "invalid_request")


async def test_client_id_in_body_must_match_basic_credentials(http, rp):
    client = await rp.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    other = await rp.register()
    reply = await http.post("/token", data={"grant_type": "client_credentials", "client_id": other.client_id},
                            headers=basic(client))
    assert_error(reply, 400, "invalid_request")
    reply = await http.post("/token", data={"grant_type": "client_credentials", "client_id": client.client_id},
                            headers=basic(client))
    assert reply.status_code == 200, reply.text


async def test_public_client_authenticates_with_client_id_and_pkce(http, rp):
    client = await rp.register(public=True)
    _, _, _, result = await authorized(http, rp, client)
    assert_error(await http.post("/token", data={"grant_type": "authorization_code", "code": result.params["code"],
                                                 "redirect_uri": result.redirect_uri,
                                                 "code_verifier": result.verifier}), 401, "invalid_client")
    reply = await rp.exchange(http, client, result, auth="none")
    assert reply.status_code == 200, reply.text


# ---- private_key_jwt ---------------------------------------------------------------------------

async def _code_and_assertion_request(http, rp, keyed):
    _, _, _, result = await authorized(http, rp, keyed.client)
    data = {"grant_type": "authorization_code", "code": result.params["code"], "redirect_uri": result.redirect_uri,
            "code_verifier": result.verifier}
    return result, data


@pytest.mark.parametrize("kind", ["EC", "RSA"])
async def test_private_key_jwt_succeeds(http, rp, kind):
    keyed = await key_client(rp, kind)
    _, data = await _code_and_assertion_request(http, rp, keyed)
    reply = await http.post("/token", data={**data, **keyed.form(), "client_id": keyed.client.client_id})
    assert reply.status_code == 200, reply.text
    assert (await rp.verify(http, reply.json()["access_token"]))["client_id"] == keyed.client.client_id


async def test_private_key_jwt_accepts_the_issuer_and_an_audience_list(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    for aud in (ISSUER, [TOKEN_ENDPOINT, "https://other.example"]):
        reply = await http.post("/token", data={"grant_type": "client_credentials",
                                                **keyed.form(keyed.assertion(aud=aud))})
        assert reply.status_code == 200, (aud, reply.text)


async def test_private_key_jwt_replayed_jti_is_invalid_client(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    assertion = keyed.assertion()
    first = await http.post("/token", data={"grant_type": "client_credentials", **keyed.form(assertion)})
    assert first.status_code == 200, first.text
    assert_error(await http.post("/token", data={"grant_type": "client_credentials", **keyed.form(assertion)}),
                 401, "invalid_client")
    # A fresh assertion with the same jti is a replay too.
    jti = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))["jti"]
    again = keyed.assertion(jti=jti)
    assert_error(await http.post("/token", data={"grant_type": "client_credentials", **keyed.form(again)}),
                 401, "invalid_client")


async def test_private_key_jwt_assertion_is_spent_even_when_the_grant_fails(http, rp):
    """An assertion authenticates once (OIDC Core §9: the jti is used only once). A token request
    that authenticated but failed for another reason must not leave the assertion reusable."""
    keyed = await key_client(rp)
    result, data = await _code_and_assertion_request(http, rp, keyed)
    assertion = keyed.assertion()
    failed = await http.post("/token", data={**data, "code_verifier": secrets.token_urlsafe(48),
                                             **keyed.form(assertion)})
    assert_error(failed, 400, "invalid_grant")
    assert_error(await http.post("/token", data={**data, **keyed.form(assertion)}), 401, "invalid_client")
    reply = await http.post("/token", data={**data, **keyed.form()})
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("overrides", [
    {"exp": "past"},                       # expired 5 minutes ago
    {"exp": "far"},                        # lives for a day: longer than we keep jti values
    {"exp": None},
    {"exp": "string"},
    {"aud": "https://other.example/token"},
    {"aud": None},
    {"aud": {"nested": "http://idp.test/token"}},
    {"aud": [{"nested": 1}]},
    {"sub": None},
    {"sub": 12345},
    {"sub": ["x"]},
    {"iss": None},
    {"iss": "someone-else"},
    {"jti": None},
    {"jti": ""},
    {"jti": 7},
    {"jti": "j" * 300},
])
async def test_private_key_jwt_bad_claims_are_invalid_client(http, rp, overrides):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    overrides = dict(overrides)
    exp = {"past": now() - 300, "far": now() + 86400, "string": str(now() + 60)}
    if overrides.get("exp") in exp:
        overrides["exp"] = exp[overrides["exp"]]
    reply = await http.post("/token", data={"grant_type": "client_credentials",
                                            **keyed.form(keyed.assertion(**overrides))})
    assert_error(reply, 401, "invalid_client")


async def test_private_key_jwt_sub_of_another_client_is_invalid_client(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    victim = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    forged = keyed.assertion(iss=victim.client.client_id, sub=victim.client.client_id)
    assert_error(await http.post("/token", data={"grant_type": "client_credentials", **keyed.form(forged)}),
                 401, "invalid_client")


async def test_private_key_jwt_signed_by_an_unregistered_key_is_invalid_client(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    stranger = new_key()
    # Same kid as the registered key, and a kid of its own.
    for header in ({"kid": keyed.key.kid}, {"kid": stranger.kid}, {"kid": None}):
        assertion = keyed.assertion(key=stranger, header=header)
        reply = await http.post("/token", data={"grant_type": "client_credentials", **keyed.form(assertion)})
        assert_error(reply, 401, "invalid_client")


async def test_private_key_jwt_embedded_jwk_header_is_not_trusted(http, rp):
    """Authlib CVE-2026-27962 class: a key carried in the JWS header must never be used."""
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    attacker = new_key()
    for kid in (keyed.key.kid, attacker.kid):
        header = {"jwk": attacker.as_dict(private=False), "kid": kid}
        assertion = keyed.assertion(key=attacker, header=header)
        reply = await http.post("/token", data={"grant_type": "client_credentials", **keyed.form(assertion)})
        assert_error(reply, 401, "invalid_client")


def _hs256(header: dict, claims: dict, secret: bytes) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_private_key_jwt_alg_none_and_hs256_with_the_public_key_are_invalid_client(http, rp):
    """Authlib CVE-2024-37568 class: alg confusion."""
    keyed = await key_client(rp, "RSA", grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    cid = keyed.client.client_id
    claims = {"iss": cid, "sub": cid, "aud": TOKEN_ENDPOINT, "exp": now() + 60, "jti": secrets.token_urlsafe(12)}
    public_pem = keyed.key.as_pem(private=False)
    public_json = json.dumps(keyed.key.as_dict(private=False)).encode()
    forged = [
        unsigned_jwt({"alg": "none", "kid": keyed.key.kid}, claims),
        unsigned_jwt({"alg": "None"}, claims),
        unsigned_jwt({"alg": "RS256", "kid": keyed.key.kid}, claims),  # empty signature
        _hs256({"alg": "HS256", "kid": keyed.key.kid}, claims, public_pem),
        _hs256({"alg": "HS256", "kid": keyed.key.kid}, claims, public_json),
        _hs256({"alg": "HS256"}, claims, b""),
        "not.a.jwt", "abc", "....",
    ]
    for assertion in forged:
        reply = await http.post("/token", data={"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
                                                "client_assertion": assertion})
        assert reply.status_code == 401, (assertion, reply.text)
        assert reply.json()["error"] == "invalid_client"


async def test_private_key_jwt_needs_the_assertion_type(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    form = keyed.form()
    reply = await http.post("/token", data={"grant_type": "client_credentials",
                                            "client_assertion": form["client_assertion"]})
    assert_error(reply, 400, "invalid_request")
    reply = await http.post("/token", data={"grant_type": "client_credentials", **form,
                                            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"})
    assert_error(reply, 400, "invalid_request")


async def test_private_key_jwt_client_cannot_use_a_secret_and_secret_client_cannot_use_an_assertion(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    assert keyed.client.secret is None  # its credential is its key: no secret is issued
    made_up = httpx.BasicAuth(keyed.client.client_id, "idpcs_" + secrets.token_urlsafe(32))._auth_header
    reply = await http.post("/token", data={"grant_type": "client_credentials"}, headers={"Authorization": made_up})
    assert_error(reply, 401, "invalid_client")
    reply = await http.post("/token", data={"grant_type": "client_credentials", "client_id": keyed.client.client_id})
    assert_error(reply, 401, "invalid_client")

    # A client_secret_basic client, with a key pair the attacker controls named in the assertion.
    secret_client = await rp.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    attacker = new_key()
    cid = secret_client.client_id
    assertion = keyed.assertion(key=attacker, iss=cid, sub=cid, header={"kid": attacker.kid,
                                                                        "jwk": attacker.as_dict(private=False)})
    reply = await http.post("/token", data={"grant_type": "client_credentials", **keyed.form(assertion)})
    assert_error(reply, 401, "invalid_client")


async def test_private_key_jwt_works_at_introspection(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    token = (await http.post("/token", data={"grant_type": "client_credentials", **keyed.form()})).json()["access_token"]
    reply = await http.post("/introspect", data={"token": token, **keyed.form()})
    assert reply.status_code == 200, reply.text
    assert reply.json()["active"] is True and reply.json()["client_id"] == keyed.client.client_id


# ---- client credentials grant ------------------------------------------------------------------

async def _machine(rp, **overrides):
    return await rp.register(**{"grant_types": ["client_credentials"], "redirect_uris": [],
                                "scopes": ["api.read", "api.write"], **overrides})


async def test_client_credentials_issues_an_at_jwt_for_the_client_itself(http, rp):
    client = await _machine(rp)
    reply = await rp.token(http, client, {"grant_type": "client_credentials"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert set(body["scope"].split()) == {"api.read", "api.write"}
    assert "refresh_token" not in body and "id_token" not in body  # RFC 6749 §4.4.3

    access = await rp.verify(http, body["access_token"])
    assert access["header"]["typ"] == "at+jwt" and access["iss"] == ISSUER
    assert access["sub"] == client.client_id and access["client_id"] == client.client_id
    assert access["exp"] > now() and access["jti"]
    assert "auth_time" not in access and "sid" not in access

    info = await introspect(http, client, body["access_token"])
    assert info["active"] is True and info["sub"] == client.client_id and info["scope"] == body["scope"]


async def test_client_credentials_narrows_scope_and_refuses_other_scopes(http, rp):
    client = await _machine(rp, scopes=["api.read", "api.write", "openid", "offline_access"])
    reply = await rp.token(http, client, {"grant_type": "client_credentials", "scope": "api.read"})
    assert reply.status_code == 200 and reply.json()["scope"] == "api.read"
    assert (await rp.verify(http, reply.json()["access_token"]))["scope"] == "api.read"

    for scope in ("api.admin", "api.read api.admin", "openid", "offline_access", "profile"):
        assert_error(await rp.token(http, client, {"grant_type": "client_credentials", "scope": scope}),
                     400, "invalid_scope")
    # Default is every non-user scope the client has; offline_access never gives a refresh token.
    reply = await rp.token(http, client, {"grant_type": "client_credentials"})
    assert reply.json()["scope"] == "api.read api.write" and "refresh_token" not in reply.json()


async def test_client_credentials_token_is_not_good_for_userinfo(http, rp):
    client = await _machine(rp)
    token = (await rp.token(http, client, {"grant_type": "client_credentials"})).json()["access_token"]
    reply = await userinfo(http, token)
    assert reply.status_code == 403 and reply.json()["error"] == "insufficient_scope"


async def test_client_credentials_refused_for_public_clients(http, rp, services):
    public = await rp.register(public=True)
    assert_error(await rp.token(http, public, {"grant_type": "client_credentials"}, auth="none"),
                 400, "unauthorized_client")

    async def register(db):
        return await services.clients.create(db, ClientSpec(name="x", public=True, grant_types=["client_credentials"]))
    with pytest.raises(ClientError):
        await services.db.run(register)


async def test_client_credentials_refused_for_clients_not_registered_for_it(http, rp):
    client = await rp.register()  # authorization_code + refresh_token
    assert_error(await rp.token(http, client, {"grant_type": "client_credentials"}), 400, "unauthorized_client")


async def test_client_id_cannot_mimic_a_user_subject(http, rp):
    """RFC 9700 §4.15: a client_credentials token's sub (the client_id) must never equal a user's sub."""
    _, sub = await rp.user()
    with pytest.raises(ClientError):
        await _machine(rp, client_id=sub)


async def test_client_credentials_with_private_key_jwt(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    reply = await http.post("/token", data={"grant_type": "client_credentials", "scope": "api.read", **keyed.form()})
    assert reply.status_code == 200, reply.text
    assert (await rp.verify(http, reply.json()["access_token"]))["sub"] == keyed.client.client_id


async def test_assertion_expiring_now_is_refused(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    reply = await http.post("/token", data={"grant_type": "client_credentials",
                                            **keyed.form(keyed.assertion(exp=int(time.time()) - 1))})
    assert_error(reply, 401, "invalid_client")


async def test_private_key_jwt_code_reuse_still_revokes_the_first_tokens(http, rp, services):
    """The assertion-spending savepoint must not undo the revocation a replayed code triggers."""
    keyed = await key_client(rp)
    result, data = await _code_and_assertion_request(http, rp, keyed)
    first = await http.post("/token", data={**data, **keyed.form()})
    assert first.status_code == 200, first.text
    assert_error(await http.post("/token", data={**data, **keyed.form()}), 400, "invalid_grant")
    assert (await userinfo(http, first.json()["access_token"])).status_code == 401
    info = await http.post("/introspect", data={"token": first.json()["access_token"], **keyed.form()})
    assert info.json() == {"active": False}


# ---- input PostgreSQL cannot store -------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["/token", "/introspect", "/revoke"])
async def test_nul_in_client_id_is_invalid_client_not_a_database_error(http, rp, endpoint):
    client = await rp.register()
    data = {"grant_type": "client_credentials", "token": "x"}
    for client_id in (client.client_id + "\x00", "\x00"):
        reply = await http.post(endpoint, data={**data, "client_id": client_id})
        assert_error(reply, 401, "invalid_client")
        reply = await http.post(endpoint, data={**data, "client_id": client_id, "client_secret": client.secret})
        assert_error(reply, 401, "invalid_client")
        reply = await http.post(endpoint, data=data, headers={
            "Authorization": "Basic " + base64.b64encode(f"{client_id}:{client.secret}".encode()).decode()})
        assert_error(reply, 401, "invalid_client")


async def test_nul_in_assertion_claims_is_invalid_client(http, rp):
    keyed = await key_client(rp, grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    for overrides in ({"jti": "a\x00b"}, {"sub": keyed.client.client_id + "\x00"}):
        reply = await http.post("/token", data={"grant_type": "client_credentials",
                                                **keyed.form(keyed.assertion(**overrides))})
        assert_error(reply, 401, "invalid_client")


async def test_nul_in_codes_and_tokens_is_an_ordinary_failure(http, rp):
    client = await rp.register()
    reply = await rp.token(http, client, {"grant_type": "authorization_code", "code": "idpac_\x00",
                                          "redirect_uri": client.redirect_uri, "code_verifier": "a" * 43})
    assert_error(reply, 400, "invalid_grant")
    assert_error(await rp.token(http, client, {"grant_type": "refresh_token", "refresh_token": "idprt_\x00"}),
                 400, "invalid_grant")
    assert (await http.post("/revoke", data={"token": "\x00"}, headers=basic(client))).status_code == 200
    assert (await introspect(http, client, "a\x00.b.c")) == {"active": False}
    assert (await userinfo(http, "a\x00b")).status_code == 401
