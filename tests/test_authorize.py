"""The authorization endpoint, black-box: what a relying party sends and what comes back.

Checklist (b) items 5–16 and 27–28: success by GET and POST, error redirects (always with `iss`,
and `state` when it was sent once), what is tolerated, what is refused, PKCE, and the prompt /
max_age / id_token_hint decisions. Tokens are only ever read through rp.verify (joserfc).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from tests.conftest import ISSUER
from tests.rp import AuthResult, pkce_pair, query_of

# ---- helpers -----------------------------------------------------------------------------------


def request_items(client, **extra) -> list[tuple[str, str]]:
    """A valid authorization request as a list of pairs (so tests can repeat or reorder them)."""
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
              "scope": "openid profile email", "state": secrets.token_urlsafe(12),
              "nonce": secrets.token_urlsafe(12), "code_challenge": challenge, "code_challenge_method": "S256"}
    params |= extra
    return [(name, value) for name, value in params.items() if value is not None]


async def get_authorize(http, items: list[tuple[str, str]]):
    return await http.get("/authorize?" + urlencode(items))


def error_redirect(reply, redirect_uri: str, error: str, *, state: str | None, status: int = 302) -> dict:
    """An error sent back to the client: exact redirect URI, `error`, `iss`, `state`; no code."""
    assert reply.status_code == status, reply.text
    location = reply.headers["location"]
    assert location.split("?")[0] == redirect_uri and "#" not in location, location
    params = query_of(location)
    assert params["error"] == error, params
    assert params["iss"] == ISSUER  # RFC 9207, on errors too
    assert params.get("state") == state
    assert not {"code", "access_token", "id_token"} & params.keys()
    return params


def code_redirect(reply, redirect_uri: str, state: str, *, status: int = 302) -> dict:
    assert reply.status_code == status, reply.text
    location = reply.headers["location"]
    assert location.split("?")[0] == redirect_uri, location
    params = query_of(location)
    assert params["code"] and params["state"] == state and params["iss"] == ISSUER
    assert "error" not in params
    return params


def error_page(reply) -> None:
    """An error shown to the person: never a redirect (RFC 6749 §4.1.2.1, RFC 9700 §4.11.2)."""
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("text/html")
    assert "location" not in reply.headers


async def id_token_of(http, rp, client, result) -> dict:
    """Exchange the code and verify the ID token with joserfc; returns its claims (and `raw`)."""
    reply = await rp.exchange(http, client, result)
    assert reply.status_code == 200, reply.text
    raw = reply.json()["id_token"]
    return {**await rp.verify(http, raw), "raw": raw}


@dataclass
class SignedIn:
    client: object
    email: str
    sub: str
    id_token: dict  # claims of the ID token of the first login, plus "raw"


async def signed_in(http, rp, **register) -> SignedIn:
    """A new client and user, and the browser `http` signed in with them."""
    client = await rp.register(**register)
    email, sub = await rp.user()
    result = await rp.sign_in(http, client, email)
    return SignedIn(client, email, sub, await id_token_of(http, rp, client, result))


def sent_state(reply) -> str:
    return reply.extensions["sent"]["state"]


def result_of(reply, params: dict) -> AuthResult:
    """The AuthResult rp.exchange needs, from a raw authorize reply that carried a code."""
    sent = reply.extensions["sent"]
    return AuthResult(reply.headers["location"], params, reply.extensions["pkce_verifier"], sent.get("nonce"),
                      sent["state"], sent["redirect_uri"])


# ---- success ---------------------------------------------------------------------------------


async def test_get_authorize_redirects_with_code_state_and_iss(http, rp):
    client = await rp.register()
    email, sub = await rp.user()
    result = await rp.sign_in(http, client, email)
    assert result.location.split("?")[0] == client.redirect_uri
    assert result.params["state"] == result.state and result.params["iss"] == ISSUER
    assert (await id_token_of(http, rp, client, result))["sub"] == sub


async def test_post_authorize_redirects_with_code_state_and_iss(http, rp):
    client = await rp.register()
    email, sub = await rp.user()
    result = await rp.sign_in(http, client, email, method="POST")
    assert result.params["state"] == result.state and result.params["iss"] == ISSUER
    assert (await id_token_of(http, rp, client, result))["sub"] == sub


async def test_post_authorize_with_a_session_answers_303_with_a_code(http, rp):
    client = (await signed_in(http, rp)).client
    reply = await rp.authorize(http, client, method="POST")
    code_redirect(reply, client.redirect_uri, sent_state(reply), status=303)


async def test_unknown_parameter_is_ignored(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    result = await rp.sign_in(http, client, email, extra="foobar")
    assert result.params["code"] and "extra" not in result.params


async def test_reversed_scope_and_parameter_order_succeeds(http, rp):
    me = await signed_in(http, rp)
    client = me.client
    verifier, challenge = pkce_pair()
    items = request_items(client, scope="email profile openid", code_challenge=challenge)[::-1]
    reply = await get_authorize(http, items)
    params = code_redirect(reply, client.redirect_uri, dict(items)["state"])
    token = await rp.token(http, client, {"grant_type": "authorization_code", "code": params["code"],
                                          "redirect_uri": client.redirect_uri, "code_verifier": verifier})
    assert token.status_code == 200, token.text
    assert set(token.json()["scope"].split()) == {"openid", "profile", "email"}
    assert (await rp.verify(http, token.json()["id_token"]))["email"] == me.email


@pytest.mark.parametrize("name, value", [
    ("display", "page"), ("display", "popup"), ("ui_locales", "fi-FI sv en"), ("claims_locales", "fi en"),
    ("acr_values", "urn:mace:incommon:iap:silver urn:idp:acr:password"), ("login_hint", "someone@example.com"),
    ("claims", '{"userinfo": {"name": {"essential": true}}}'),  # oidcc-claims-essential
])
async def test_optional_oidc_parameters_are_accepted(http, rp, name, value):
    client = await rp.register()
    email, sub = await rp.user()
    result = await rp.sign_in(http, client, email, **{name: value})
    assert result.params["code"] and result.params["state"] == result.state
    assert (await id_token_of(http, rp, client, result))["sub"] == sub


async def test_login_hint_prefills_the_login_page(http, rp):
    client = await rp.register()
    reply = await rp.authorize(http, client, login_hint="hinted@example.com")
    page = await http.get(reply.headers["location"])
    assert page.status_code == 200
    assert 'value="hinted@example.com"' in page.text


async def test_long_state_and_nonce_are_echoed_exactly(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    state, nonce = secrets.token_urlsafe(1536)[:2048], secrets.token_urlsafe(288)[:384]
    assert (len(state), len(nonce)) == (2048, 384)
    result = await rp.sign_in(http, client, email, state=state, nonce=nonce)
    assert result.params["state"] == state
    assert (await id_token_of(http, rp, client, result))["nonce"] == nonce


async def test_request_without_nonce_succeeds(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    result = await rp.sign_in(http, client, email, nonce=None)
    assert "nonce" not in await id_token_of(http, rp, client, result)


# ---- response_type -----------------------------------------------------------------------------


async def test_missing_response_type_redirects_invalid_request(http, rp):
    client = (await signed_in(http, rp)).client
    reply = await rp.authorize(http, client, response_type=None)
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


@pytest.mark.parametrize("response_type", ["token", "id_token token", "code token", "id_token", "code id_token"])
async def test_implicit_and_hybrid_response_types_are_unsupported(http, rp, response_type):
    client = (await signed_in(http, rp)).client  # even with a session, nothing is issued
    reply = await rp.authorize(http, client, response_type=response_type)
    error_redirect(reply, client.redirect_uri, "unsupported_response_type", state=sent_state(reply))


async def test_unsupported_response_type_by_post_is_a_303_error_redirect(http, rp):
    client = await rp.register()
    reply = await rp.authorize(http, client, method="POST", response_type="token")
    error_redirect(reply, client.redirect_uri, "unsupported_response_type", state=sent_state(reply), status=303)


@pytest.mark.parametrize("mode", ["fragment", "form_post"])
async def test_response_mode_other_than_query_redirects_invalid_request(http, rp, mode):
    client = await rp.register()
    reply = await rp.authorize(http, client, response_mode=mode)
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


# ---- repeated parameters -------------------------------------------------------------------


async def test_repeated_state_redirects_invalid_request_without_state(http, rp):
    client = (await signed_in(http, rp)).client
    items = request_items(client) + [("state", "second")]
    reply = await get_authorize(http, items)
    error_redirect(reply, client.redirect_uri, "invalid_request", state=None)


async def test_repeated_scope_redirects_invalid_request(http, rp):
    client = (await signed_in(http, rp)).client
    items = request_items(client) + [("scope", "openid")]
    reply = await get_authorize(http, items)
    error_redirect(reply, client.redirect_uri, "invalid_request", state=dict(items)["state"])


async def test_repeated_redirect_uri_shows_error_page(http, rp):
    client = (await signed_in(http, rp)).client
    error_page(await get_authorize(http, request_items(client) + [("redirect_uri", client.redirect_uri)]))


async def test_repeated_redirect_uri_with_an_attacker_value_shows_error_page(http, rp):
    client = (await signed_in(http, rp)).client
    error_page(await get_authorize(http, request_items(client) + [("redirect_uri", "https://evil.example/cb")]))


async def test_repeated_client_id_shows_error_page(http, rp):
    client = (await signed_in(http, rp)).client
    error_page(await get_authorize(http, request_items(client) + [("client_id", client.client_id)]))


# ---- client ----------------------------------------------------------------------------------


async def test_unknown_client_id_shows_error_page(http, rp):
    client = await rp.register()
    error_page(await rp.authorize(http, client, client_id="idpc_no_such_client"))


async def test_missing_client_id_shows_error_page(http, rp):
    client = await rp.register()
    error_page(await rp.authorize(http, client, client_id=None))


async def test_client_without_the_code_grant_gets_unauthorized_client(http, rp):
    client = await rp.register(grant_types=["client_credentials"], redirect_uris=["https://cc.example/cb"],
                               redirect_uri="https://cc.example/cb")
    reply = await rp.authorize(http, client)
    error_redirect(reply, client.redirect_uri, "unauthorized_client", state=sent_state(reply))


# ---- PKCE ------------------------------------------------------------------------------------


async def test_public_client_without_code_challenge_gets_invalid_request(http, rp):
    client = await rp.register(public=True)
    reply = await rp.authorize(http, client, pkce=False)
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


async def test_plain_code_challenge_method_gets_invalid_request(http, rp):
    client = await rp.register()
    verifier = secrets.token_urlsafe(48)
    reply = await rp.authorize(http, client, pkce=False, code_challenge=verifier, code_challenge_method="plain")
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


async def test_code_challenge_without_method_gets_invalid_request(http, rp):
    client = await rp.register(public=True)
    reply = await rp.authorize(http, client, code_challenge_method=None)
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


async def test_code_challenge_method_without_challenge_gets_invalid_request(http, rp):
    client = await rp.register()
    reply = await rp.authorize(http, client, code_challenge=None)
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


@pytest.mark.parametrize("challenge", [
    "short", "A" * 42, "A" * 44, "A" * 42 + "=", "A" * 41 + "+/", "A" * 42 + ".", "A" * 128, "A" * 43 + "\n",
    "\u0661" * 43,
])
async def test_malformed_code_challenge_gets_invalid_request(http, rp, challenge):
    client = await rp.register(public=True)
    reply = await rp.authorize(http, client, code_challenge=challenge)
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


async def test_public_client_with_s256_gets_a_code_that_needs_the_verifier(http, rp):
    client = await rp.register(public=True)
    email, sub = await rp.user()
    result = await rp.sign_in(http, client, email)
    reply = await rp.exchange(http, client, result, auth="none")
    assert reply.status_code == 200, reply.text
    assert (await rp.verify(http, reply.json()["id_token"]))["sub"] == sub


async def test_confidential_client_without_pkce_works(http, rp):
    client = await rp.register()
    email, sub = await rp.user()
    result = await rp.sign_in(http, client, email, pkce=False)
    assert result.verifier is None
    assert (await id_token_of(http, rp, client, result))["sub"] == sub


# ---- request objects ---------------------------------------------------------------------


async def test_request_parameter_gets_request_not_supported(http, rp):
    client = await rp.register()
    reply = await rp.authorize(http, client, request="eyJhbGciOiJub25lIn0.eyJzdGF0ZSI6IngifQ.")
    error_redirect(reply, client.redirect_uri, "request_not_supported", state=sent_state(reply))


async def test_request_uri_parameter_gets_request_uri_not_supported(http, rp):
    client = await rp.register()
    reply = await rp.authorize(http, client, request_uri="https://rp.example/request.jwt")
    error_redirect(reply, client.redirect_uri, "request_uri_not_supported", state=sent_state(reply))


# ---- scope -----------------------------------------------------------------------------------


async def test_scope_not_allowed_for_the_client_gets_invalid_scope(http, rp):
    client = await rp.register(scopes=["openid", "profile"])
    reply = await rp.authorize(http, client, scope="openid email")
    error_redirect(reply, client.redirect_uri, "invalid_scope", state=sent_state(reply))


async def test_unknown_scope_gets_invalid_scope(http, rp):
    client = (await signed_in(http, rp)).client
    reply = await rp.authorize(http, client, scope="openid admin")
    error_redirect(reply, client.redirect_uri, "invalid_scope", state=sent_state(reply))


@pytest.mark.parametrize("name", ["nonce", "state", "scope", "login_hint", "acr_values"])
async def test_nul_character_in_a_parameter_gets_invalid_request_not_a_503(http, rp, name):
    client = (await signed_in(http, rp)).client  # with a session the code would be stored at once
    value = "openid\x00" if name == "scope" else "a\x00b"
    reply = await rp.authorize(http, client, **{name: value})
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


async def test_nul_character_in_client_id_shows_error_page(http, rp):
    client = await rp.register()
    error_page(await rp.authorize(http, client, client_id=client.client_id + "\x00"))


async def test_oversized_parameter_gets_invalid_request_not_a_500(http, rp):
    client = await rp.register()
    reply = await rp.authorize(http, client, nonce="n" * 10_000)
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


# ---- prompt, max_age, id_token_hint ----------------------------------------------------------


async def test_prompt_none_without_session_gets_login_required_with_state_and_iss(http, rp):
    client = await rp.register()
    reply = await rp.authorize(http, client, prompt="none")
    error_redirect(reply, client.redirect_uri, "login_required", state=sent_state(reply))


async def test_prompt_none_with_session_issues_a_code_without_ui(http, rp):
    me = await signed_in(http, rp)
    reply = await rp.authorize(http, me.client, prompt="none")
    params = code_redirect(reply, me.client.redirect_uri, sent_state(reply))
    claims = await id_token_of(http, rp, me.client, result_of(reply, params))
    assert claims["sub"] == me.sub and claims["auth_time"] == me.id_token["auth_time"]


async def test_prompt_none_for_third_party_client_without_consent_gets_consent_required(http, rp):
    await signed_in(http, rp)  # a session exists …
    third_party = await rp.register(first_party=False)  # … but this client was never approved
    reply = await rp.authorize(http, third_party, prompt="none")
    error_redirect(reply, third_party.redirect_uri, "consent_required", state=sent_state(reply))


async def test_prompt_none_combined_with_login_gets_invalid_request(http, rp):
    client = await rp.register()
    reply = await rp.authorize(http, client, prompt="none login")
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


async def test_unknown_prompt_value_gets_invalid_request(http, rp):
    client = await rp.register()
    reply = await rp.authorize(http, client, prompt="dance")
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


async def test_prompt_login_forces_login_and_a_later_auth_time(http, rp):
    me = await signed_in(http, rp)
    await asyncio.sleep(1.1)
    reply = await rp.authorize(http, me.client, prompt="login")
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?flow=")
    logged_in = await rp.login(http, reply.headers["location"], me.email)
    params = code_redirect(logged_in, me.client.redirect_uri, sent_state(reply), status=303)
    claims = await id_token_of(http, rp, me.client, result_of(reply, params))
    assert claims["sub"] == me.sub and claims["auth_time"] > me.id_token["auth_time"]


async def test_max_age_1_after_more_than_a_second_forces_login(http, rp):
    me = await signed_in(http, rp)
    await asyncio.sleep(1.1)
    reply = await rp.authorize(http, me.client, max_age="1")
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?flow=")
    logged_in = await rp.login(http, reply.headers["location"], me.email)
    params = code_redirect(logged_in, me.client.redirect_uri, sent_state(reply), status=303)
    claims = await id_token_of(http, rp, me.client, result_of(reply, params))
    assert claims["sub"] == me.sub and claims["auth_time"] > me.id_token["auth_time"]


async def test_max_age_10000_does_not_force_login(http, rp):
    me = await signed_in(http, rp)
    reply = await rp.authorize(http, me.client, max_age="10000")
    params = code_redirect(reply, me.client.redirect_uri, sent_state(reply))
    claims = await id_token_of(http, rp, me.client, result_of(reply, params))
    assert claims["sub"] == me.sub and claims["auth_time"] == me.id_token["auth_time"]


@pytest.mark.parametrize("max_age", ["-1", "abc", "1.5", "9999999999", "\u00b2", "\u0661\u0662", "12\n"])
async def test_malformed_max_age_gets_invalid_request(http, rp, max_age):
    client = await rp.register()
    reply = await rp.authorize(http, client, max_age=max_age)
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


async def test_id_token_hint_with_prompt_none_issues_a_code_for_the_same_sub(http, rp):
    me = await signed_in(http, rp)
    reply = await rp.authorize(http, me.client, prompt="none", id_token_hint=me.id_token["raw"])
    params = code_redirect(reply, me.client.redirect_uri, sent_state(reply))
    assert (await id_token_of(http, rp, me.client, result_of(reply, params)))["sub"] == me.sub


async def test_garbage_id_token_hint_gets_invalid_request(http, rp):
    client = (await signed_in(http, rp)).client
    reply = await rp.authorize(http, client, prompt="none", id_token_hint="not.a.jwt")
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


async def hint_of_another_user(http, rp, client) -> str:
    """An ID token of one user, while `http` is signed in as another."""
    async with rp.browser() as other_browser:
        other_email, _ = await rp.user()
        other = await rp.sign_in(other_browser, client, other_email)
        hint = (await id_token_of(other_browser, rp, client, other))["raw"]
    email, _ = await rp.user()
    await rp.sign_in(http, client, email)
    return hint


async def test_id_token_hint_of_another_user_with_prompt_none_gets_login_required(http, rp):
    client = await rp.register()
    other_hint = await hint_of_another_user(http, rp, client)
    reply = await rp.authorize(http, client, prompt="none", id_token_hint=other_hint)
    error_redirect(reply, client.redirect_uri, "login_required", state=sent_state(reply))


async def test_signing_in_as_someone_else_than_the_id_token_hint_gets_login_required(http, rp):
    client = await rp.register()
    other_hint = await hint_of_another_user(http, rp, client)
    reply = await rp.authorize(http, client, id_token_hint=other_hint)
    third_email, _ = await rp.user()
    after_login = await rp.login(http, reply.headers["location"], third_email)
    error_redirect(after_login, client.redirect_uri, "login_required", state=sent_state(reply), status=303)


async def test_an_access_token_is_not_accepted_as_id_token_hint(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    result = await rp.sign_in(http, client, email)
    access_token = (await rp.exchange(http, client, result)).json()["access_token"]
    reply = await rp.authorize(http, client, prompt="none", id_token_hint=access_token)
    error_redirect(reply, client.redirect_uri, "invalid_request", state=sent_state(reply))


async def test_id_token_hint_of_another_user_without_prompt_none_forces_login(http, rp):
    client = await rp.register()
    other_hint = await hint_of_another_user(http, rp, client)
    reply = await rp.authorize(http, client, id_token_hint=other_hint)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?flow=")
