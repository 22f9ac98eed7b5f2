"""The token endpoint with the authorization code grant: response format, single use, binding to
client and redirect URI, expiry, PKCE, request syntax and grant-type rules (RFC 6749 §3.2, §4.1.3,
§5; RFC 7636; RFC 9700 §4.8.2; checklist items 26, 29–35, 37)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode

import pytest

from tests.conftest import ISSUER
from tests.rp import now
from tests.token_support import (
    assert_error, authorized, basic, code_row, expire_code, grant_id_of, grant_revoked, introspect,
    live_refresh_tokens, refresh, signed_in, userinfo,
)


def rp_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


_FORM = "application/x-www-form-urlencoded"


def _random_bits(value: str) -> int:
    """Bits carried by a base64url random string."""
    return len(value) * 6


# ---- the successful response -------------------------------------------------------------------

async def test_code_exchange_answers_no_store_bearer_with_high_entropy_tokens(http, rp):
    session = await signed_in(http, rp)
    body = session.body
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    assert set(body["scope"].split()) == {"openid", "offline_access"}

    access = await rp.verify(http, body["access_token"])
    assert access["header"]["typ"] == "at+jwt" and access["iss"] == ISSUER
    assert access["sub"] == session.sub and access["client_id"] == session.client.client_id
    assert access["exp"] > now()
    grant_part, random_part = access["jti"].split(".", 1)
    assert _random_bits(random_part) >= 128 and _random_bits(grant_part) >= 128

    prefix, _, secret = body["refresh_token"].partition("_")
    assert prefix == "idprt" and _random_bits(secret) >= 128

    id_token = await rp.verify(http, body["id_token"])
    assert id_token["aud"] == session.client.client_id and id_token["nonce"] == session.result.nonce

    # A second flow gives different tokens.
    other = await signed_in(http, rp, session.client)
    assert other.access_token != session.access_token and other.refresh_token != session.refresh_token


async def test_token_response_headers_forbid_caching(http, rp):
    client, _, _, result = await authorized(http, rp)
    reply = await rp.exchange(http, client, result)
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["pragma"] == "no-cache"
    assert reply.headers["content-type"].startswith("application/json")


async def test_client_secret_post_exchange_succeeds(http, rp):
    client = await rp.register(token_endpoint_auth_method="client_secret_post")
    client, _, sub, result = await authorized(http, rp, client)
    reply = await rp.exchange(http, client, result, auth="post")
    assert reply.status_code == 200, reply.text
    assert (await rp.verify(http, reply.json()["id_token"]))["sub"] == sub


# ---- single use --------------------------------------------------------------------------------

async def test_code_reuse_is_refused_and_revokes_everything_the_first_use_issued(http, rp, services):
    client, _, _, result = await authorized(http, rp, scope="openid offline_access")
    first = await rp.exchange(http, client, result)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert (await userinfo(http, tokens["access_token"])).status_code == 200

    second = await rp.exchange(http, client, result)
    assert_error(second, 400, "invalid_grant")
    assert "access_token" not in second.json()

    # RFC 6749 §4.1.2: tokens issued from the code are revoked.
    info = await userinfo(http, tokens["access_token"])
    assert info.status_code == 401
    assert info.headers["www-authenticate"].startswith("Bearer")
    assert await introspect(http, client, tokens["access_token"]) == {"active": False}
    assert await introspect(http, client, tokens["refresh_token"]) == {"active": False}
    assert_error(await refresh(http, rp, client, tokens["refresh_token"]), 400, "invalid_grant")
    grant_id = grant_id_of(tokens["access_token"])
    assert await grant_revoked(services, grant_id)
    assert await live_refresh_tokens(services, grant_id) == 0

    # And a third use still fails the same way.
    assert_error(await rp.exchange(http, client, result), 400, "invalid_grant")


async def test_unknown_or_missing_code(http, rp):
    client = await rp.register()
    reply = await rp.token(http, client, {"grant_type": "authorization_code", "code": "idpac_" + secrets.token_urlsafe(32),
                                          "redirect_uri": client.redirect_uri})
    assert_error(reply, 400, "invalid_grant")
    reply = await rp.token(http, client, {"grant_type": "authorization_code", "redirect_uri": client.redirect_uri})
    assert_error(reply, 400, "invalid_request")


async def test_expired_code_is_refused(http, rp, services):
    client, _, _, result = await authorized(http, rp)
    await expire_code(services, result.params["code"])
    assert_error(await rp.exchange(http, client, result), 400, "invalid_grant")
    row = await code_row(services, result.params["code"])
    assert row.used_at is None and row.grant_id is None  # nothing was issued


async def test_code_lifetime_is_at_most_ten_minutes(http, rp, services):
    _, _, _, result = await authorized(http, rp)
    row = await code_row(services, result.params["code"])
    assert 0 < row.expires_at.timestamp() - now() <= 600


# ---- binding to the client and the redirect URI ------------------------------------------------

async def test_code_of_client_a_redeemed_by_client_b_is_refused_and_not_burned(http, rp, services):
    client_a, _, sub, result = await authorized(http, rp)
    client_b = await rp.register(redirect_uri=client_a.redirect_uri)

    reply = await rp.exchange(http, client_b, result)
    assert_error(reply, 400, "invalid_grant")
    assert (await code_row(services, result.params["code"])).used_at is None

    reply = await rp.exchange(http, client_a, result)
    assert reply.status_code == 200, reply.text
    assert (await rp.verify(http, reply.json()["id_token"]))["sub"] == sub


async def test_redirect_uri_mismatch_is_refused_and_code_not_burned(http, rp, services):
    client, _, _, result = await authorized(http, rp)
    for wrong in (result.redirect_uri + "/", result.redirect_uri + "?x=1", "https://evil.example/cb"):
        reply = await rp.token(http, client, {"grant_type": "authorization_code", "code": result.params["code"],
                                              "redirect_uri": wrong, "code_verifier": result.verifier})
        assert_error(reply, 400, "invalid_grant")
    # Sent in the authorization request, so required in the token request (RFC 6749 §4.1.3).
    reply = await rp.token(http, client, {"grant_type": "authorization_code", "code": result.params["code"],
                                          "code_verifier": result.verifier})
    assert_error(reply, 400, "invalid_grant")
    assert (await code_row(services, result.params["code"])).used_at is None

    assert (await rp.exchange(http, client, result)).status_code == 200


# ---- PKCE --------------------------------------------------------------------------------------

def _code_request(result, **overrides):
    data = {"grant_type": "authorization_code", "code": result.params["code"], "redirect_uri": result.redirect_uri,
            "code_verifier": result.verifier}
    data.update(overrides)
    return {name: value for name, value in data.items() if value is not None}


async def test_missing_code_verifier_is_invalid_grant_and_code_survives(http, rp, services):
    client, _, _, result = await authorized(http, rp)
    assert_error(await rp.token(http, client, _code_request(result, code_verifier=None)), 400, "invalid_grant")
    assert (await code_row(services, result.params["code"])).used_at is None
    assert (await rp.exchange(http, client, result)).status_code == 200


async def test_wrong_code_verifier_is_invalid_grant_and_right_one_still_works(http, rp):
    client, _, _, result = await authorized(http, rp)
    wrong = secrets.token_urlsafe(48)
    assert_error(await rp.token(http, client, _code_request(result, code_verifier=wrong)), 400, "invalid_grant")
    # The challenge itself is not the verifier.
    challenge = rp_challenge(result.verifier)
    assert_error(await rp.token(http, client, _code_request(result, code_verifier=challenge)), 400, "invalid_grant")
    assert (await rp.exchange(http, client, result)).status_code == 200


@pytest.mark.parametrize("verifier", [
    "a" * 42,                      # too short (RFC 7636 §4.1: 43–128)
    "a" * 129,                     # too long
    "a" * 42 + "!",                # illegal character
    "a" * 42 + " ",                # space
    "a" * 30 + "+/=" + "a" * 12,   # base64 (not base64url) characters
    "ä" * 43,                      # non-ASCII
])
async def test_malformed_code_verifier_is_invalid_request_and_code_survives(http, rp, services, verifier):
    client, _, _, result = await authorized(http, rp)
    assert_error(await rp.token(http, client, _code_request(result, code_verifier=verifier)), 400, "invalid_request")
    assert (await code_row(services, result.params["code"])).used_at is None
    assert (await rp.exchange(http, client, result)).status_code == 200


async def test_code_verifier_for_a_code_issued_without_challenge_is_a_downgrade(http, rp, services):
    """RFC 9700 §4.8.2: a confidential client may omit PKCE, but a verifier sent for a code that
    had no challenge means the challenge was stripped: invalid_grant, never 200 or 500."""
    client, _, _, result = await authorized(http, rp, pkce=False)
    assert result.verifier is None
    reply = await rp.token(http, client, _code_request(result, code_verifier=secrets.token_urlsafe(48)))
    assert_error(reply, 400, "invalid_grant")
    assert (await code_row(services, result.params["code"])).used_at is None
    # Without a verifier the (challenge-less) code of a confidential client is redeemable.
    assert (await rp.exchange(http, client, result)).status_code == 200


async def test_valid_pkce_with_public_client_and_no_authentication(http, rp):
    client = await rp.register(public=True)
    _, _, sub, result = await authorized(http, rp, client)
    reply = await rp.exchange(http, client, result, auth="none")
    assert reply.status_code == 200, reply.text
    assert (await rp.verify(http, reply.json()["id_token"]))["sub"] == sub


# ---- request syntax ----------------------------------------------------------------------------

async def test_wrong_content_type_is_invalid_request(http, rp, services):
    client, _, _, result = await authorized(http, rp)
    data = _code_request(result)
    reply = await http.post("/token", json=data, headers=basic(client))
    assert_error(reply, 400, "invalid_request")
    reply = await http.post("/token", content="&".join(f"{k}={v}" for k, v in data.items()),
                            headers={**basic(client), "Content-Type": "text/plain"})
    assert_error(reply, 400, "invalid_request")
    reply = await http.post("/token", files={"grant_type": (None, "authorization_code")}, headers=basic(client))
    assert_error(reply, 400, "invalid_request")
    assert (await code_row(services, result.params["code"])).used_at is None
    assert (await rp.exchange(http, client, result)).status_code == 200


async def test_repeated_parameter_is_invalid_request(http, rp, services):
    client, _, _, result = await authorized(http, rp)
    data = list(_code_request(result).items()) + [("code", result.params["code"])]
    reply = await http.post("/token", content=urlencode(data), headers={**basic(client), "Content-Type": _FORM})
    assert_error(reply, 400, "invalid_request")
    data = list(_code_request(result).items()) + [("grant_type", "authorization_code")]
    reply = await http.post("/token", content=urlencode(data), headers={**basic(client), "Content-Type": _FORM})
    assert_error(reply, 400, "invalid_request")
    assert (await code_row(services, result.params["code"])).used_at is None


async def test_get_is_not_allowed_on_the_token_endpoint(http, rp):
    client, _, _, result = await authorized(http, rp)
    reply = await http.get("/token", params=_code_request(result), headers=basic(client))
    assert reply.status_code == 405


async def test_missing_grant_type_is_invalid_request(http, rp):
    client = await rp.register()
    assert_error(await rp.token(http, client, {"code": "x"}), 400, "invalid_request")


# ---- grant types -------------------------------------------------------------------------------

@pytest.mark.parametrize("grant_type", ["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code",
                                        "urn:ietf:params:oauth:grant-type:jwt-bearer", "token", "nonsense"])
async def test_unsupported_grant_types(http, rp, grant_type):
    client = await rp.register(grant_types=["authorization_code", "refresh_token", "client_credentials"])
    data = {"grant_type": grant_type, "username": "someone@example.com", "password": "a long enough test password"}
    assert_error(await rp.token(http, client, data), 400, "unsupported_grant_type")


async def test_grant_type_not_registered_for_the_client_is_unauthorized_client(http, rp):
    client = await rp.register(grant_types=["authorization_code"])
    assert_error(await rp.token(http, client, {"grant_type": "client_credentials"}), 400, "unauthorized_client")
    assert_error(await rp.token(http, client, {"grant_type": "refresh_token", "refresh_token": "idprt_x"}),
                 400, "unauthorized_client")

    machine = await rp.register(grant_types=["client_credentials"], redirect_uris=[], scopes=["api.read"])
    reply = await rp.token(http, machine, {"grant_type": "authorization_code", "code": "idpac_x",
                                           "redirect_uri": "https://x.example/cb"})
    assert_error(reply, 400, "unauthorized_client")


async def test_no_refresh_token_without_offline_access_or_the_refresh_grant(http, rp):
    session = await signed_in(http, rp, scope="openid")
    assert "refresh_token" not in session.body
    client = await rp.register(grant_types=["authorization_code"])
    session = await signed_in(http, rp, client, scope="openid offline_access")
    assert "refresh_token" not in session.body



async def test_empty_parameters_count_as_omitted_and_unknown_ones_are_ignored(http, rp):
    """RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted
    ... The authorization server MUST ignore unrecognized request parameters." """
    client, _, _, result = await authorized(http, rp)
    assert_error(await rp.token(http, client, _code_request(result, code_verifier="")), 400, "invalid_grant")
    reply = await rp.token(http, client, _code_request(result, extra="foobar", scope=""))
    assert reply.status_code == 200, reply.text

    client, _, _, result = await authorized(http, rp, pkce=False)
    reply = await rp.token(http, client, {"grant_type": "authorization_code", "code": result.params["code"],
                                          "redirect_uri": result.redirect_uri, "code_verifier": ""})
    assert reply.status_code == 200, reply.text


async def test_oversized_parameter_is_invalid_request(http, rp, services):
    client, _, _, result = await authorized(http, rp)
    reply = await rp.token(http, client, _code_request(result, code_verifier="a" * 5000))
    assert_error(reply, 400, "invalid_request")
    assert (await code_row(services, result.params["code"])).used_at is None
