"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0), after the conformance plan
oidcc-rp-initiated-logout and SECURITY-CHECKLIST items 54–57 and bug class 6 (logout open
redirects): we redirect only to a URI registered for the client the verified id_token_hint names,
and without a valid hint only after the person confirms (with a CSRF-protected form).
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.conftest import ISSUER
from tests.rp import AuthResult, RegisteredClient, form_field, query_of

SESSION_COOKIE = "idp_session"


@dataclass
class SignedIn:
    client: RegisteredClient
    bye: str  # the registered post_logout_redirect_uri
    sub: str
    result: AuthResult
    tokens: dict

    @property
    def id_token(self) -> str:
        return self.tokens["id_token"]


async def sign_in(http: httpx.AsyncClient, rp, *, bye: str | None = None, client=None) -> SignedIn:
    """Register a client with a post-logout redirect URI (unless given one) and sign a new user in."""
    if client is None:
        host = f"https://rp{secrets.token_hex(4)}.example"
        bye = bye or f"{host}/bye"
        client = await rp.register(redirect_uri=f"{host}/cb", post_logout_redirect_uris=[bye])
    email, sub = await rp.user()
    result = await rp.sign_in(http, client, email)
    reply = await rp.exchange(http, client, result)
    assert reply.status_code == 200, reply.text
    return SignedIn(client, bye or client.spec.post_logout_redirect_uris[0], sub, result, reply.json())


async def silent(http, rp, client) -> dict:
    """authorize with prompt=none: the redirect's parameters (code, or error=login_required)."""
    reply = await rp.authorize(http, client, prompt="none")
    assert reply.status_code in (302, 303), reply.text
    location = reply.headers["location"]
    assert location.startswith(client.redirect_uri), location
    return query_of(location)


async def assert_signed_in(http, rp, client) -> None:
    params = await silent(http, rp, client)
    assert "code" in params, params


async def assert_signed_out(http, rp, client) -> None:
    params = await silent(http, rp, client)
    assert params.get("error") == "login_required", params
    assert "code" not in params


def cookie_cleared(reply: httpx.Response) -> bool:
    return any(header.startswith(f"{SESSION_COOKIE}=") and ("max-age=0" in header.lower() or '=""' in header)
               for header in reply.headers.get_list("set-cookie"))


def assert_error_page(reply: httpx.Response) -> None:
    assert reply.status_code == 400, reply.text
    assert "location" not in reply.headers
    assert reply.headers["content-type"].startswith("text/html")
    assert "Something went wrong" in reply.text


async def logout(http, *, method: str = "GET", **params) -> httpx.Response:
    params = {k: v for k, v in params.items() if v is not None}
    if method == "POST":
        return await http.post("/logout", data=params)
    return await http.get("/logout?" + urlencode(params))


async def confirm(http, page: httpx.Response, decision: str = "logout", csrf: str | None = None) -> httpx.Response:
    """Submit the confirmation form the page shows, with all its hidden fields."""
    assert page.status_code == 200, page.text
    assert 'action="/logout/confirm"' in page.text
    fields = dict(_hidden_fields(page.text))
    if csrf is not None:
        fields["csrf_token"] = csrf
    return await http.post("/logout/confirm", data=fields | {"decision": decision})


def _hidden_fields(html: str) -> list[tuple[str, str]]:
    import html as html_lib
    import re

    return [(name, html_lib.unescape(value))
            for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)]


def _b64(data: bytes | dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(header))), json.loads(base64.urlsafe_b64decode(pad(payload))), signature


# ---- the happy path (oidcc-rp-initiated-logout) ------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_valid_hint_and_registered_uri_redirect_with_state_and_end_the_session(http, rp, method):
    me = await sign_in(http, rp)
    old_cookie = http.cookies.get(SESSION_COOKIE)
    assert old_cookie
    state = secrets.token_urlsafe(16)

    reply = await logout(http, method=method, id_token_hint=me.id_token, post_logout_redirect_uri=me.bye,
                         state=state)
    assert reply.status_code == 303, reply.text
    assert reply.headers["location"] == f"{me.bye}?{urlencode({'state': state})}"
    assert cookie_cleared(reply)
    assert http.cookies.get(SESSION_COOKIE) is None

    await assert_signed_out(http, rp, me.client)
    # The session is ended on the server: replaying the old cookie does not bring it back.
    async with rp.browser() as replay:
        replay.cookies.set(SESSION_COOKIE, old_cookie, domain="idp.test")
        await assert_signed_out(replay, rp, me.client)


async def test_valid_hint_without_state_redirects_to_the_exact_uri(http, rp):
    me = await sign_in(http, rp)
    reply = await logout(http, id_token_hint=me.id_token, post_logout_redirect_uri=me.bye)
    assert reply.status_code == 303 and reply.headers["location"] == me.bye
    await assert_signed_out(http, rp, me.client)


async def test_valid_hint_without_redirect_uri_shows_signed_out(http, rp):
    me = await sign_in(http, rp)
    reply = await logout(http, id_token_hint=me.id_token, state="abc")
    assert reply.status_code == 200 and "location" not in reply.headers
    assert "You have been signed out." in reply.text
    assert cookie_cleared(reply)
    await assert_signed_out(http, rp, me.client)


async def test_client_id_matching_the_hint_is_accepted(http, rp):
    me = await sign_in(http, rp)
    reply = await logout(http, id_token_hint=me.id_token, client_id=me.client.client_id,
                         post_logout_redirect_uri=me.bye, state="s1")
    assert reply.status_code == 303 and reply.headers["location"] == f"{me.bye}?state=s1"


async def test_a_registered_uri_with_a_query_keeps_it_and_gets_state_appended(http, rp):
    host = f"https://rp{secrets.token_hex(4)}.example"
    client = await rp.register(redirect_uri=f"{host}/cb", post_logout_redirect_uris=[f"{host}/bye?from=idp"])
    me = await sign_in(http, rp, client=client)
    reply = await logout(http, id_token_hint=me.id_token, post_logout_redirect_uri=f"{host}/bye?from=idp",
                         state="a b&c")
    assert reply.status_code == 303
    assert reply.headers["location"] == f"{host}/bye?from=idp&state=a+b%26c"


async def test_an_expired_but_genuine_hint_is_still_accepted(http, rp, services):
    """§2: the OP need not reject an expired id_token_hint (the RP's copy is often old)."""
    me = await sign_in(http, rp)
    _, claims, _ = _parts(me.id_token)
    claims |= {"exp": claims["iat"] - 10}
    stale = services.keyring.sign(claims, alg="RS256")
    reply = await logout(http, id_token_hint=stale, post_logout_redirect_uri=me.bye, state="x")
    assert reply.status_code == 303 and reply.headers["location"] == f"{me.bye}?state=x"
    await assert_signed_out(http, rp, me.client)


async def test_a_hint_works_even_when_the_browser_sends_no_session_cookie(http, rp):
    """A cross-site form POST to the logout endpoint carries no SameSite=Lax cookie: the valid
    hint's `sid` still names the session, so that session ends (and the RP is told so)."""
    me = await sign_in(http, rp)
    async with rp.browser() as cookieless:
        reply = await logout(cookieless, method="POST", id_token_hint=me.id_token,
                             post_logout_redirect_uri=me.bye, state="s")
    assert reply.status_code == 303 and reply.headers["location"] == f"{me.bye}?state=s"
    await assert_signed_out(http, rp, me.client)


# ---- refused requests: an error page, never a redirect -----------------------------------------

async def test_unregistered_post_logout_redirect_uri_is_refused(http, rp):
    me = await sign_in(http, rp)
    for uri in ("https://evil.example/bye", me.client.redirect_uri, me.bye + "/", me.bye.upper(),
                me.bye.replace("https://", "http://"), "javascript:alert(1)", me.bye + "#x"):
        reply = await logout(http, id_token_hint=me.id_token, post_logout_redirect_uri=uri, state="s")
        assert_error_page(reply)
    await assert_signed_in(http, rp, me.client)


async def test_query_added_to_the_registered_uri_is_refused(http, rp):
    me = await sign_in(http, rp)
    reply = await logout(http, id_token_hint=me.id_token, post_logout_redirect_uri=me.bye + "?foo=bar")
    assert_error_page(reply)
    await assert_signed_in(http, rp, me.client)


async def test_another_clients_uri_is_refused_even_with_a_valid_hint(http, rp):
    """The client is taken from the verified hint, never from the URI (openemr #12768 class)."""
    me = await sign_in(http, rp)
    other_bye = f"https://other{secrets.token_hex(4)}.example/bye"
    other = await rp.register(post_logout_redirect_uris=[other_bye])
    assert_error_page(await logout(http, id_token_hint=me.id_token, post_logout_redirect_uri=other_bye))
    assert_error_page(await logout(http, id_token_hint=me.id_token, client_id=other.client_id,
                                   post_logout_redirect_uri=other_bye))
    await assert_signed_in(http, rp, me.client)


def _alg_none(token: str) -> str:
    header, claims, _ = _parts(token)
    return f"{_b64(header | {'alg': 'none'})}.{_b64(claims)}."


def _tampered_signature(token: str) -> str:
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{payload}.{_b64(bytes(raw))}"


def _tampered_claims(token: str) -> str:
    head, _, signature = token.split(".")
    _, claims, _ = _parts(token)
    return f"{head}.{_b64(claims | {'sub': 'someone-else'})}.{signature}"


def _foreign_key(token: str) -> str:
    """Same claims and even the same kid, signed by a key that is not ours."""
    header, claims, _ = _parts(token)
    key = RSAKey.generate_key(2048)
    return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": header["kid"]}, claims, key, algorithms=["RS256"])


def _foreign_key_in_header(token: str) -> str:
    """An embedded `jwk` header must never be trusted (Authlib CVE-2026-27962)."""
    _, claims, _ = _parts(token)
    key = RSAKey.generate_key(2048)
    public = key.as_dict(private=False)
    return jwt.encode({"alg": "RS256", "typ": "JWT", "jwk": public}, claims, key, algorithms=["RS256"])


def _hs256_with_public_key(token: str) -> str:
    header, claims, _ = _parts(token)
    import hashlib
    import hmac
    signing_input = f"{_b64(header | {'alg': 'HS256'})}.{_b64(claims)}"
    mac = hmac.new(b"public-key-as-secret", signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


@pytest.mark.parametrize("forge", [_alg_none, _tampered_signature, _tampered_claims, _foreign_key,
                                   _foreign_key_in_header, _hs256_with_public_key, lambda t: "garbage",
                                   lambda t: t.rsplit(".", 1)[0]],
                         ids=["alg-none", "tampered-signature", "tampered-claims", "foreign-key",
                              "jwk-header", "hs256", "garbage", "no-signature"])
async def test_modified_or_foreign_id_token_hint_is_refused(http, rp, forge):
    me = await sign_in(http, rp)
    for method in ("GET", "POST"):
        reply = await logout(http, method=method, id_token_hint=forge(me.id_token),
                             post_logout_redirect_uri=me.bye, state="s")
        assert_error_page(reply)
        assert not cookie_cleared(reply)
    await assert_signed_in(http, rp, me.client)


async def test_an_access_token_is_not_an_id_token_hint(http, rp):
    """Token confusion: an access token (typ at+jwt, aud = client) must not pass as a hint."""
    me = await sign_in(http, rp)
    reply = await logout(http, id_token_hint=me.tokens["access_token"], post_logout_redirect_uri=me.bye, state="s")
    assert_error_page(reply)
    await assert_signed_in(http, rp, me.client)


async def test_a_hint_from_another_issuer_is_refused(http, rp, services):
    me = await sign_in(http, rp)
    _, claims, _ = _parts(me.id_token)
    other_issuer = services.keyring.sign(claims | {"iss": "https://evil.example"}, alg="RS256")
    assert_error_page(await logout(http, id_token_hint=other_issuer, post_logout_redirect_uri=me.bye))
    await assert_signed_in(http, rp, me.client)


async def test_uri_without_any_client_identification_is_refused(http, rp):
    me = await sign_in(http, rp)
    assert_error_page(await logout(http, post_logout_redirect_uri=me.bye, state="s"))
    await assert_signed_in(http, rp, me.client)


async def test_repeated_parameters_are_refused(http, rp):
    me = await sign_in(http, rp)
    query = urlencode([("id_token_hint", me.id_token), ("post_logout_redirect_uri", me.bye),
                       ("post_logout_redirect_uri", "https://evil.example/bye")])
    assert_error_page(await http.get("/logout?" + query))
    await assert_signed_in(http, rp, me.client)


# ---- confirmation: no (valid) hint, or a hint for someone else's session -----------------------

async def test_no_hint_with_client_id_asks_then_logs_out_and_redirects(http, rp):
    me = await sign_in(http, rp)
    page = await logout(http, client_id=me.client.client_id, post_logout_redirect_uri=me.bye, state="st")
    assert page.status_code == 200 and "location" not in page.headers
    assert page.headers["cache-control"] == "no-store"
    assert form_field(page.text, "csrf_token")
    assert not cookie_cleared(page)
    await assert_signed_in(http, rp, me.client)  # asking changes nothing

    reply = await confirm(http, page)
    assert reply.status_code == 303, reply.text
    assert reply.headers["location"] == f"{me.bye}?state=st"
    assert cookie_cleared(reply)
    await assert_signed_out(http, rp, me.client)


async def test_no_params_asks_then_shows_signed_out(http, rp):
    me = await sign_in(http, rp)
    page = await logout(http)
    reply = await confirm(http, page)
    assert reply.status_code == 200 and "location" not in reply.headers
    assert "You have been signed out." in reply.text
    assert cookie_cleared(reply)
    await assert_signed_out(http, rp, me.client)


async def test_no_params_by_post_asks_too(http, rp):
    me = await sign_in(http, rp)
    page = await logout(http, method="POST")
    assert page.status_code == 200 and 'action="/logout/confirm"' in page.text
    await assert_signed_in(http, rp, me.client)
    assert (await confirm(http, page)).status_code == 200
    await assert_signed_out(http, rp, me.client)


async def test_only_state_asks_then_signs_out_without_redirect(http, rp):
    me = await sign_in(http, rp)
    page = await logout(http, state="only-state")
    reply = await confirm(http, page)
    assert reply.status_code == 200 and "location" not in reply.headers
    assert "You have been signed out." in reply.text
    await assert_signed_out(http, rp, me.client)


async def test_choosing_to_stay_keeps_the_session(http, rp):
    me = await sign_in(http, rp)
    page = await logout(http, client_id=me.client.client_id, post_logout_redirect_uri=me.bye)
    reply = await confirm(http, page, decision="stay")
    assert reply.status_code == 200 and "location" not in reply.headers
    assert "still signed in" in reply.text
    assert not cookie_cleared(reply)
    await assert_signed_in(http, rp, me.client)


@pytest.mark.parametrize("csrf", ["forged", "", None])
async def test_confirmation_with_a_forged_csrf_token_is_refused(http, rp, csrf):
    me = await sign_in(http, rp)
    page = await logout(http, client_id=me.client.client_id, post_logout_redirect_uri=me.bye)
    fields = dict(_hidden_fields(page.text)) | {"decision": "logout"}
    if csrf is None:
        fields.pop("csrf_token")
    else:
        fields["csrf_token"] = csrf
    reply = await http.post("/logout/confirm", data=fields)
    assert reply.status_code == 403 and "location" not in reply.headers
    assert not cookie_cleared(reply)
    await assert_signed_in(http, rp, me.client)


async def test_a_csrf_token_from_another_browser_is_refused(http, rp):
    me = await sign_in(http, rp)
    async with rp.browser() as attacker:
        attacker_page = await logout(attacker, client_id=me.client.client_id, post_logout_redirect_uri=me.bye)
        stolen = form_field(attacker_page.text, "csrf_token")
    page = await logout(http, client_id=me.client.client_id, post_logout_redirect_uri=me.bye)
    reply = await confirm(http, page, csrf=stolen)
    assert reply.status_code == 403
    await assert_signed_in(http, rp, me.client)


async def test_the_confirmation_cannot_smuggle_an_unregistered_uri(http, rp):
    me = await sign_in(http, rp)
    page = await logout(http, client_id=me.client.client_id, post_logout_redirect_uri=me.bye)
    fields = dict(_hidden_fields(page.text)) | {"decision": "logout",
                                                "post_logout_redirect_uri": "https://evil.example/bye"}
    reply = await http.post("/logout/confirm", data=fields)
    assert_error_page(reply)
    await assert_signed_in(http, rp, me.client)


async def test_a_hint_for_another_session_asks_first(http, rp):
    """A genuine hint from an earlier session (or another person) must not silently end this one."""
    earlier = await sign_in(http, rp)
    async with rp.browser() as other:
        mine = await sign_in(other, rp, client=earlier.client)
        page = await logout(other, id_token_hint=earlier.id_token, post_logout_redirect_uri=earlier.bye, state="q")
        assert page.status_code == 200 and 'action="/logout/confirm"' in page.text
        await assert_signed_in(other, rp, mine.client)
        reply = await confirm(other, page)
        assert reply.status_code == 303 and reply.headers["location"] == f"{earlier.bye}?state=q"
        await assert_signed_out(other, rp, mine.client)
    await assert_signed_in(http, rp, earlier.client)  # the hinted, other browser's session is untouched


async def test_confirmation_page_escapes_reflected_parameters(http, rp):
    await sign_in(http, rp)
    evil = '"><script>alert(1)</script>'
    page = await logout(http, state=evil)
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert ("state", evil) in _hidden_fields(page.text)


async def test_logout_without_a_session_still_answers(http):
    page = await http.get("/logout")
    assert page.status_code == 200
    reply = await confirm(http, page)
    assert reply.status_code == 200 and "signed out" in reply.text


async def test_discovery_advertises_the_logout_endpoint(http):
    doc = (await http.get("/.well-known/openid-configuration")).json()
    assert doc["end_session_endpoint"] == f"{ISSUER}/logout"
