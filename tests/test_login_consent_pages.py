"""The login and consent pages, driven as a browser would: forms, CSRF, cookies, headers, and
the state each step leaves behind (checklist (b) items 14, 17, 18, 57 and 78 in part).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from idp.db import utcnow
from idp.flows.models import AuthorizationFlow
from idp.security import keyed_hash
from tests.conftest import ISSUER
from tests.rp import PASSWORD, form_field, query_of

SESSION_COOKIE = "idp_session"  # the issuer is http://, so no __Host- prefix
GENERIC_LOGIN_ERROR = "Incorrect email, phone number or password."


# ---- helpers -----------------------------------------------------------------------------------


async def login_page(http, rp, client, **extra):
    """Start an authorization request and open the login page it leads to; returns (reply, page)."""
    reply = await rp.authorize(http, client, **extra)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?flow="), reply.text
    page = await http.get(reply.headers["location"])
    assert page.status_code == 200, page.text
    return reply, page


def login_form(page, username: str, password: str = PASSWORD, **override) -> dict:
    data = {"flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
            "username": username, "password": password} | override
    return {k: v for k, v in data.items() if v is not None}


def set_cookies(reply) -> dict[str, str]:
    """Set-Cookie headers of one response, by cookie name (the whole header as the value)."""
    return {header.split("=", 1)[0]: header for header in reply.headers.get_list("set-cookie")}


def error_page(reply, status: int = 400) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("text/html")
    assert "location" not in reply.headers
    assert SESSION_COOKIE not in set_cookies(reply)


def login_error_text(page) -> str:
    match = re.search(r'<p class="error"[^>]*>([^<]*)</p>', page.text)
    assert match, page.text
    return match.group(1)


async def expire_flow(services, flow_id: str) -> None:
    """Let the flow's lifetime pass (15 minutes would be a long test)."""
    async def work(db):
        await db.execute(update(AuthorizationFlow).where(AuthorizationFlow.id == flow_id)
                         .values(expires_at=utcnow() - timedelta(seconds=1)))
    await services.db.run(work)


def assert_security_headers(reply) -> None:
    csp = reply.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert "access-control-allow-origin" not in reply.headers


async def prompt_none(http, rp, client) -> dict:
    """What the browser's session says now: the params of a prompt=none redirect."""
    reply = await rp.authorize(http, client, prompt="none")
    assert reply.status_code == 302, reply.text
    return query_of(reply.headers["location"])


# ---- the login page ----------------------------------------------------------------------------


async def test_login_page_has_autocomplete_hints_and_a_csrf_token(http, rp):
    client = await rp.register(name="Acme Photos")
    _, page = await login_page(http, rp, client)
    assert page.headers["content-type"].startswith("text/html")
    # Identifier first: one field; the password page names the account for password managers.
    assert 'autocomplete="username"' in page.text and 'type="password"' not in page.text
    assert len(form_field(page.text, "csrf_token")) >= 32
    assert "Acme Photos" in page.text
    assert page.headers["cache-control"] == "no-store"


async def test_login_page_sends_anti_framing_and_referrer_headers(http, rp):
    client = await rp.register()
    _, page = await login_page(http, rp, client)
    assert_security_headers(page)
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", page.text)  # no third-party scripts


async def test_login_page_escapes_the_client_name(http, rp):
    client = await rp.register(name='<script>alert("x")</script>')
    _, page = await login_page(http, rp, client)
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text


async def test_authorize_sends_no_cors_headers(http, rp):
    client = await rp.register()
    reply = await http.get("/authorize", params={"client_id": client.client_id},
                           headers={"Origin": "https://evil.example"})
    assert_security_headers(reply)
    preflight = await http.options("/authorize", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


async def test_successful_login_redirects_with_303_and_sets_an_httponly_lax_session_cookie(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    reply, page = await login_page(http, rp, client)
    posted = await http.post("/login", data=login_form(page, email))
    assert posted.status_code == 303  # never 307, which would re-post the password (RFC 9700 §4.12)
    assert posted.headers["location"].startswith(client.redirect_uri + "?")
    assert query_of(posted.headers["location"])["state"] == reply.extensions["sent"]["state"]
    cookie = set_cookies(posted)[SESSION_COOKIE].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert_security_headers(posted)


async def test_each_login_gets_a_new_session_cookie(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    await rp.sign_in(http, client, email)
    first = http.cookies[SESSION_COOKIE]
    await rp.sign_in(http, client, email, prompt="login")
    assert http.cookies[SESSION_COOKIE] != first


async def test_wrong_password_gets_401_with_a_generic_message_and_no_session(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)
    reply = await http.post("/login", data=login_form(page, email, "not the password"))
    assert reply.status_code == 401 and reply.headers["content-type"].startswith("text/html")
    assert login_error_text(reply) == GENERIC_LOGIN_ERROR
    assert SESSION_COOKIE not in set_cookies(reply) and "location" not in reply.headers
    assert (await prompt_none(http, rp, client))["error"] == "login_required"


async def test_unknown_email_gets_the_same_401_and_message_as_a_wrong_password(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)
    unknown_email = email.replace("user-", "nobody-")
    wrong_password = await http.post("/login", data=login_form(page, email, "not the password"))
    unknown = await http.post("/login", data=login_form(page, unknown_email))
    assert unknown.status_code == wrong_password.status_code == 401
    assert login_error_text(unknown) == login_error_text(wrong_password) == GENERIC_LOGIN_ERROR
    assert unknown.text.replace(unknown_email, email) == wrong_password.text  # only the echoed login differs


async def test_empty_password_gets_the_same_401(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)
    # Without a password the login form is the identifier step: on to the password page ...
    reply = await http.post("/login", data=login_form(page, email, ""))
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/password?flow=")
    page = await http.get(reply.headers["location"])
    assert 'autocomplete="current-password"' in page.text and f'value="{email}"' in page.text
    # ... where an empty one fails like a wrong one.
    reply = await http.post("/login/password", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"), "password": ""})
    assert reply.status_code == 401 and login_error_text(reply) == GENERIC_LOGIN_ERROR


async def test_username_with_a_nul_character_gets_the_same_401_not_a_503(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)
    reply = await http.post("/login", data=login_form(page, email + "\x00"))
    assert reply.status_code == 401 and login_error_text(reply) == GENERIC_LOGIN_ERROR


async def test_the_flow_survives_a_wrong_password(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)
    failed = await http.post("/login", data=login_form(page, email, "not the password"))
    retried = await http.post("/login", data=login_form(failed, email))
    assert retried.status_code == 303 and query_of(retried.headers["location"])["code"]


async def test_login_without_csrf_token_gets_403_and_no_session(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)
    error_page(await http.post("/login", data=login_form(page, email, csrf_token=None)), status=403)
    assert (await prompt_none(http, rp, client))["error"] == "login_required"


async def test_login_with_forged_csrf_token_gets_403_and_no_session(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)
    error_page(await http.post("/login", data=login_form(page, email, csrf_token="0" * 64)), status=403)
    assert (await prompt_none(http, rp, client))["error"] == "login_required"


async def test_multipart_login_with_a_file_as_csrf_token_gets_403_not_a_500(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)
    data = login_form(page, email, csrf_token=None)
    token = form_field(page.text, "csrf_token").encode()
    error_page(await http.post("/login", data=data, files={"csrf_token": ("t", token)}), status=403)


async def test_login_csrf_token_from_another_browser_gets_403(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)  # the attacker's page, token and cookie
    async with rp.browser() as victim:
        error_page(await victim.post("/login", data=login_form(page, email)), status=403)


async def test_login_csrf_token_of_another_flow_gets_403(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    _, first = await login_page(http, rp, client)
    _, second = await login_page(http, rp, client)
    data = login_form(second, email, csrf_token=form_field(first.text, "csrf_token"))
    error_page(await http.post("/login", data=data), status=403)


@pytest.mark.parametrize("path", [
    "/login?flow=no-such-flow", "/login", "/login?flow=" + "x" * 500, "/login?flow=a%00b",
    "/consent?flow=no-such-flow", "/consent", "/consent?flow=%00",
])
async def test_unknown_flow_id_shows_error_page(http, path):
    error_page(await http.get(path))


async def test_expired_flow_shows_error_page_on_get_and_post(http, rp, services):
    client = await rp.register()
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)
    flow_id = form_field(page.text, "flow")
    await expire_flow(services, flow_id)
    error_page(await http.get(f"/login?flow={flow_id}"))
    error_page(await http.post("/login", data=login_form(page, email)))
    assert (await prompt_none(http, rp, client))["error"] == "login_required"


async def test_completed_flow_cannot_be_replayed(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)
    assert (await http.post("/login", data=login_form(page, email))).status_code == 303
    error_page(await http.post("/login", data=login_form(page, email)))
    error_page(await http.get(f"/login?flow={form_field(page.text, 'flow')}"))


# ---- consent -----------------------------------------------------------------------------------


async def to_consent(http, rp, client, email, **extra):
    """authorize → login → the consent page; returns (authorize reply, consent page)."""
    reply, page = await login_page(http, rp, client, **extra)
    posted = await http.post("/login", data=login_form(page, email))
    assert posted.status_code == 303 and posted.headers["location"].startswith("/consent?flow="), posted.text
    consent = await http.get(posted.headers["location"])
    assert consent.status_code == 200, consent.text
    return reply, consent


def decide(page, decision: str, **override) -> dict:
    data = {"flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
            "decision": decision} | override
    return {k: v for k, v in data.items() if v is not None}


async def test_third_party_client_shows_the_consent_page(http, rp):
    client = await rp.register(first_party=False, name="Third Party App")
    email, _ = await rp.user()
    _, page = await to_consent(http, rp, client, email)
    assert "Third Party App" in page.text and "See your email address" in page.text
    assert 'value="allow"' in page.text and 'value="deny"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert_security_headers(page)


async def test_first_party_client_skips_consent(http, rp):
    client = await rp.register(first_party=True)
    email, _ = await rp.user()
    _, page = await login_page(http, rp, client)
    posted = await http.post("/login", data=login_form(page, email))
    assert posted.status_code == 303 and posted.headers["location"].startswith(client.redirect_uri + "?")


async def test_deny_redirects_access_denied_with_state_and_iss(http, rp):
    client = await rp.register(first_party=False)
    email, _ = await rp.user()
    reply, page = await to_consent(http, rp, client, email)
    denied = await http.post("/consent", data=decide(page, "deny"))
    assert denied.status_code == 303
    assert denied.headers["location"].split("?")[0] == client.redirect_uri
    params = query_of(denied.headers["location"])
    assert params == {"error": "access_denied", "error_description": params["error_description"],
                      "state": reply.extensions["sent"]["state"], "iss": ISSUER}
    assert (await prompt_none(http, rp, client))["error"] == "consent_required"  # nothing remembered


async def test_allow_redirects_with_a_code(http, rp):
    client = await rp.register(first_party=False)
    email, sub = await rp.user()
    reply, page = await to_consent(http, rp, client, email)
    allowed = await http.post("/consent", data=decide(page, "allow"))
    assert allowed.status_code == 303
    params = query_of(allowed.headers["location"])
    assert params["code"] and params["state"] == reply.extensions["sent"]["state"] and params["iss"] == ISSUER
    sent = reply.extensions["sent"]
    token = await rp.token(http, client, {"grant_type": "authorization_code", "code": params["code"],
                                          "redirect_uri": sent["redirect_uri"],
                                          "code_verifier": reply.extensions["pkce_verifier"]})
    assert token.status_code == 200, token.text
    assert (await rp.verify(http, token.json()["id_token"]))["sub"] == sub


async def test_consent_is_remembered_for_the_same_scopes(http, rp):
    client = await rp.register(first_party=False)
    email, _ = await rp.user()
    await rp.sign_in(http, client, email)  # logs in and allows
    again = await rp.authorize(http, client)
    assert again.status_code == 302 and query_of(again.headers["location"])["code"]
    assert (await prompt_none(http, rp, client))["code"]


async def test_fewer_scopes_than_consented_skip_consent(http, rp):
    client = await rp.register(first_party=False)
    email, _ = await rp.user()
    await rp.sign_in(http, client, email, scope="openid profile email")
    again = await rp.authorize(http, client, scope="openid email")
    assert again.status_code == 302 and query_of(again.headers["location"])["code"]


async def test_an_extra_scope_asks_for_consent_again(http, rp):
    client = await rp.register(first_party=False)
    email, _ = await rp.user()
    await rp.sign_in(http, client, email, scope="openid profile")
    again = await rp.authorize(http, client, scope="openid profile email")
    assert again.status_code == 303 and again.headers["location"].startswith("/consent?flow=")
    page = await http.get(again.headers["location"])
    assert "See your email address" in page.text


async def test_prompt_consent_forces_the_consent_page(http, rp):
    client = await rp.register(first_party=False)
    email, _ = await rp.user()
    await rp.sign_in(http, client, email)
    again = await rp.authorize(http, client, prompt="consent")
    assert again.status_code == 303 and again.headers["location"].startswith("/consent?flow=")


async def test_prompt_consent_forces_the_consent_page_for_a_first_party_client(http, rp):
    client = await rp.register(first_party=True)
    email, _ = await rp.user()
    await rp.sign_in(http, client, email)
    again = await rp.authorize(http, client, prompt="consent")
    assert again.status_code == 303 and again.headers["location"].startswith("/consent?flow=")


async def test_consent_without_csrf_token_gets_403(http, rp):
    client = await rp.register(first_party=False)
    email, _ = await rp.user()
    _, page = await to_consent(http, rp, client, email)
    error_page(await http.post("/consent", data=decide(page, "allow", csrf_token=None)), status=403)
    assert (await prompt_none(http, rp, client))["error"] == "consent_required"


async def test_consent_from_another_browser_is_refused(http, rp):
    client = await rp.register(first_party=False)
    email, _ = await rp.user()
    _, page = await to_consent(http, rp, client, email)
    async with rp.browser() as other:
        # The flow is bound to the browser that started it: another one cannot even see it ...
        error_page(await other.get(f"/consent?flow={form_field(page.text, 'flow')}"))
        # ... nor post a decision with a CSRF token of its own for that flow id.
        await other.get("/reset")  # a CSRF cookie of its own
        # (A valid token of that browser for the flow, as if CSRF alone guarded the step.)
        token = keyed_hash(rp.services.csrf_key, f"{other.cookies['idp_csrf']}|{form_field(page.text, 'flow')}")
        forged = decide(page, "allow") | {"csrf_token": token}
        error_page(await other.post("/consent", data=forged))
    assert (await prompt_none(http, rp, client))["error"] == "consent_required"


async def test_completed_consent_cannot_be_replayed(http, rp):
    client = await rp.register(first_party=False)
    email, _ = await rp.user()
    _, page = await to_consent(http, rp, client, email)
    assert (await http.post("/consent", data=decide(page, "deny"))).status_code == 303
    error_page(await http.post("/consent", data=decide(page, "allow")))
    assert (await prompt_none(http, rp, client))["error"] == "consent_required"


async def test_consent_page_for_a_flow_still_at_login_shows_error_page(http, rp):
    client = await rp.register(first_party=False)
    _, page = await login_page(http, rp, client)
    error_page(await http.get(f"/consent?flow={form_field(page.text, 'flow')}"))


async def test_a_new_login_ends_the_session_it_replaces(http, rp):
    client = await rp.register()
    email, _ = await rp.user()
    await rp.sign_in(http, client, email)
    old_cookie = http.cookies["idp_session"]
    await rp.sign_in(http, client, email, prompt="login")
    assert http.cookies["idp_session"] != old_cookie
    http.cookies.set("idp_session", old_cookie, domain="idp.test")
    reply = await rp.authorize(http, client, prompt="none")
    assert query_of(reply.headers["location"])["error"] == "login_required"
