"""Choosing the organisation at sign-in, product access, and the organisations' sign-in policies,
driven over HTTP as an outside client would; tokens verified with joserfc (tests/rp.py)."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from idp.audit.service import Actor
from idp.db import utcnow
from idp.oauth.models import Grant
from idp.orgs.models import Membership
from idp.sessions.models import BrowserSession
from tests.conftest import delivering_fixtures
from tests.mail_sms import emailed_code, texted_code
from tests.rp import PASSWORD, AuthResult, form_field, query_of

SCOPE = "openid profile email organization offline_access"


# s, rp and browser: this module's services, relying party and browser on the delivering app.
s, rp, browser = delivering_fixtures()


# ---- helpers (tests/test_org_tokens.py uses them too) --------------------------------------------

async def new_org(s, owner_id: str, name: str = "Acme Oy"):
    handle = f"org-{secrets.token_hex(4)}"
    return await s.db.run(lambda db: s.orgs.create(db, Actor.operator(), name=name, handle=handle,
                                                   owner_id=owner_id))


async def person(rp) -> tuple[str, str]:
    return await rp.user()


async def add_member(s, org_id: str, user_id: str, role: str = "member") -> None:
    async def work(db):
        db.add(Membership(org_id=org_id, user_id=user_id, role=role))
        await db.flush()
    await s.db.run(work)


async def set_role(s, org_id: str, user_id: str, role: str) -> None:
    await s.db.run(lambda db: db.execute(update(Membership).where(
        Membership.org_id == org_id, Membership.user_id == user_id).values(role=role)))


async def new_product(s, roles, client_ids=()):
    handle = f"prod-{secrets.token_hex(4)}"
    return await s.db.run(lambda db: s.products.create(db, Actor.operator(), handle, f"Caller {handle}",
                                                       roles, list(client_ids)))


async def licence(s, org, product, user_id: str, role: str) -> None:
    await s.db.run(lambda db: s.products.grant(db, Actor.operator(), org.id, product.id, user_id, role))


async def client_for(rp, *, product=None, scopes=("openid", "profile", "email", "offline_access",
                                                   "organization", "organization:*")):
    return await rp.register(scopes=list(scopes), product=product.handle if product else None)


async def follow(browser, rp, reply, email: str | None = None, *, pick: str | None = None,
                 password: str = PASSWORD):
    """Walk our pages (login, organisation chooser, consent) until a redirect to the client or a
    page of ours that is not one of those; returns (last reply, paths seen)."""
    seen = []
    for _ in range(8):
        assert reply.status_code in (302, 303), reply.text
        location = reply.headers["location"]
        if not location.startswith("/"):
            return reply, seen
        seen.append(location.split("?")[0])
        if location.startswith("/login?"):
            assert email is not None, "a login was not expected"
            reply = await rp.login(browser, location, email, password)
        elif location.startswith("/login/organisation"):
            assert pick is not None, "the chooser was not expected"
            page = await browser.get(location)
            assert page.status_code == 200, page.text
            reply = await browser.post("/login/organisation", data={
                "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
                "organisation": pick})
        elif location.startswith("/consent"):
            reply = await rp.consent(browser, location)
        else:
            return reply, seen
    raise AssertionError("too many steps")


async def exchange(browser, rp, client, started, reply) -> dict:
    """The token response for the code in `reply`'s redirect, with the ID and access tokens'
    claims verified with joserfc under "id" and "at"."""
    location = reply.headers["location"]
    assert location.startswith(client.redirect_uri), location
    result = AuthResult.of(started, location)
    token_reply = await rp.exchange(browser, client, result)
    assert token_reply.status_code == 200, token_reply.text
    body = token_reply.json()
    body["id"] = await rp.verify(browser, body["id_token"])
    body["at"] = await rp.verify(browser, body["access_token"])
    return body


async def sign_in(browser, rp, client, email, *, pick=None, scope=SCOPE, **extra) -> dict:
    started = await rp.authorize(browser, client, scope=scope, **extra)
    reply, _ = await follow(browser, rp, started, email, pick=pick)
    return await exchange(browser, rp, client, started, reply)


def org_claim(org) -> dict:
    return {"id": org.id, "handle": org.handle, "name": org.name}


# ---- choosing the organisation -----------------------------------------------------------------

async def test_no_membership_signs_in_without_organisation_claims(browser, rp):
    client = await client_for(rp)
    email, _ = await person(rp)
    tokens = await sign_in(browser, rp, client, email)
    for claims in (tokens["id"], tokens["at"]):
        assert "org" not in claims and "org_role" not in claims and "roles" not in claims


async def test_one_membership_is_chosen_without_asking(browser, rp, s):
    client = await client_for(rp)
    email, user_id = await person(rp)
    org = await new_org(s, user_id, "Solo Oy")
    started = await rp.authorize(browser, client, scope=SCOPE)
    reply, seen = await follow(browser, rp, started, email)
    assert "/login/organisation" not in seen
    tokens = await exchange(browser, rp, client, started, reply)
    assert tokens["id"]["org"] == org_claim(org) and tokens["id"]["org_role"] == "owner"
    assert tokens["id"]["roles"] == []


async def test_two_memberships_show_the_chooser_and_the_choice_is_in_the_tokens(browser, rp, s):
    client = await client_for(rp)
    email, user_id = await person(rp)
    first = await new_org(s, user_id, "Alpha Oy")
    other_owner = (await person(rp))[1]
    second = await new_org(s, other_owner, "Beta Ab")
    await add_member(s, second.id, user_id, "editor")
    started = await rp.authorize(browser, client, scope=SCOPE)
    reply = await rp.login(browser, started.headers["location"], email)
    assert reply.headers["location"].startswith("/login/organisation?flow=")
    page = await browser.get(reply.headers["location"])
    assert page.status_code == 200 and "Alpha Oy" in page.text and "Beta Ab" in page.text
    assert first.id in page.text and second.id in page.text
    reply, _ = await follow(browser, rp, reply, pick=second.id)
    tokens = await exchange(browser, rp, client, started, reply)
    assert tokens["id"]["org"] == org_claim(second) and tokens["id"]["org_role"] == "editor"
    assert tokens["at"]["org"] == org_claim(second) and tokens["at"]["org_role"] == "editor"


async def test_the_chooser_refuses_an_organisation_it_did_not_offer(browser, rp, s):
    client = await client_for(rp)
    email, user_id = await person(rp)
    await new_org(s, user_id, "Alpha Oy")
    await new_org(s, user_id, "Gamma Oy")
    stranger_org = await new_org(s, (await person(rp))[1], "Stranger Oy")
    started = await rp.authorize(browser, client, scope=SCOPE)
    reply = await rp.login(browser, started.headers["location"], email)
    page = await browser.get(reply.headers["location"])
    refused = await browser.post("/login/organisation", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
        "organisation": stranger_org.id})
    assert refused.status_code == 400 and "Stranger Oy" not in refused.text
    no_csrf = await browser.post("/login/organisation", data={"flow": form_field(page.text, "flow"),
                                                                "organisation": stranger_org.id})
    assert no_csrf.status_code == 403


@pytest.mark.parametrize("by", ["id", "handle"])
async def test_the_organization_parameter_names_it_by_id_or_handle(browser, rp, s, by):
    client = await client_for(rp)
    email, user_id = await person(rp)
    await new_org(s, user_id, "Alpha Oy")
    second = await new_org(s, user_id, "Beta Ab")
    started = await rp.authorize(browser, client, scope=SCOPE, organization=getattr(second, by))
    reply, seen = await follow(browser, rp, started, email)
    assert "/login/organisation" not in seen
    tokens = await exchange(browser, rp, client, started, reply)
    assert tokens["id"]["org"] == org_claim(second)


async def test_naming_an_organisation_one_is_not_in_is_denied_like_an_unknown_one(browser, rp, s):
    client = await client_for(rp)
    email, user_id = await person(rp)
    await new_org(s, user_id, "Mine Oy")
    theirs = await new_org(s, (await person(rp))[1], "Theirs Oy")
    answers = []
    for named in (theirs.handle, theirs.id, "no-such-org", "x" * 80):
        started = await rp.authorize(browser, client, scope=SCOPE, organization=named, prompt="login")
        reply, _ = await follow(browser, rp, started, email)
        location = reply.headers["location"]
        assert location.startswith(client.redirect_uri)
        params = query_of(location)
        assert params["state"] == started.extensions["sent"]["state"] and params["iss"] == "http://idp.test"
        answers.append({k: v for k, v in params.items() if k != "state"})
    assert answers[0]["error"] == "access_denied"
    assert all(answer == answers[0] for answer in answers)


async def test_prompt_select_account_shows_the_chooser_again_with_the_session(browser, rp, s):
    client = await client_for(rp)
    email, user_id = await person(rp)
    org = await new_org(s, user_id, "Solo Oy")
    await sign_in(browser, rp, client, email)
    started = await rp.authorize(browser, client, scope=SCOPE, prompt="select_account")
    reply, seen = await follow(browser, rp, started, pick=org.id)  # no login: the session is kept
    assert seen == ["/login/organisation"]
    tokens = await exchange(browser, rp, client, started, reply)
    assert tokens["id"]["org"] == org_claim(org)


async def test_prompt_none_with_two_organisations_asks_the_client_to_let_the_person_choose(browser, rp, s):
    client = await client_for(rp)
    email, user_id = await person(rp)
    await new_org(s, user_id, "Alpha Oy")
    await sign_in(browser, rp, client, email)  # one membership: chosen silently
    second = await new_org(s, user_id, "Beta Ab")
    started = await rp.authorize(browser, client, scope=SCOPE, prompt="none")
    assert query_of(started.headers["location"])["error"] == "account_selection_required"
    started = await rp.authorize(browser, client, scope=SCOPE, prompt="none", organization=second.handle)
    tokens = await exchange(browser, rp, client, started, started)
    assert tokens["id"]["org"] == org_claim(second)


# ---- product access ------------------------------------------------------------------------------

async def test_a_member_without_access_to_the_product_is_refused_with_a_page_and_access_denied(browser, rp, s):
    product = await new_product(s, ["owner", "admin"])
    client = await client_for(rp, product=product)
    email, user_id = await person(rp)
    org = await new_org(s, (await person(rp))[1], "Acme Oy")
    await add_member(s, org.id, user_id, "member")
    started = await rp.authorize(browser, client, scope=SCOPE)
    reply, seen = await follow(browser, rp, started, email)
    assert seen[-1] == "/login/no-access"
    page = await browser.get(reply.headers["location"])
    assert page.status_code == 403
    assert "Acme Oy" in page.text and product.name in page.text and "do not have access" in page.text
    back = form_link(page.text)
    assert back.startswith(client.redirect_uri)
    params = query_of(back)
    assert params["error"] == "access_denied" and params["state"] == started.extensions["sent"]["state"]
    assert params["iss"] == "http://idp.test"

    # With a licence the same person gets in, with the product's role.
    await licence(s, org, product, user_id, "admin")
    tokens = await sign_in(browser, rp, client, email)
    assert tokens["id"]["roles"] == ["admin"] and tokens["id"]["org"] == org_claim(org)


def form_link(html: str) -> str:
    import html as html_lib
    import re
    match = re.search(r'<a href="([^"]+)" class="button" id="back"', html)
    assert match, html
    return html_lib.unescape(match.group(1))


async def test_a_product_client_without_the_organization_scope_takes_the_one_organisation_with_access(browser, rp, s):
    """Decision: without scope `organization`, the organisations giving access are the candidates;
    exactly one is taken silently; the tokens carry no organisation claims (not asked for)."""
    product = await new_product(s, ["admin", "user"])
    client = await client_for(rp, product=product, scopes=("openid", "profile", "email"))
    email, user_id = await person(rp)
    without = await new_org(s, user_id, "No Licence Oy")
    with_access = await new_org(s, user_id, "Licence Oy")
    await licence(s, with_access, product, user_id, "user")
    started = await rp.authorize(browser, client, scope="openid email")
    reply, seen = await follow(browser, rp, started, email)
    assert "/login/organisation" not in seen and "/login/no-access" not in seen
    tokens = await exchange(browser, rp, client, started, reply)
    assert "org" not in tokens["id"] and "roles" not in tokens["id"]
    assert without.id != with_access.id

    # Nobody with access anywhere: the no-access page (without an organisation to name).
    other_email, _ = await person(rp)
    async with rp.browser() as other:
        started = await rp.authorize(other, client, scope="openid email")
        reply, seen = await follow(other, rp, started, other_email)
        assert seen[-1] == "/login/no-access"
        page = await other.get(reply.headers["location"])
        assert page.status_code == 403 and product.name in page.text


# ---- the organisations' sign-in policies ----------------------------------------------------------

async def set_policy(s, org, **changes) -> None:
    await s.db.run(lambda db: s.org_policies.update(db, Actor.operator(), org.id, changes))


async def phone_person(s, rp) -> tuple[str, str, str]:
    email, user_id = await rp.user()
    number = f"+35840{secrets.randbelow(10**7):07d}"

    async def add(db):
        await s.accounts.add_identifier(db, await s.accounts.get(db, user_id), "phone", number, verified=True)
    await s.db.run(add)
    return email, user_id, number


async def sms_sign_in(browser, rp, gateway, location: str, number: str):
    page = await browser.get(location)
    reply = await browser.post("/login", data={"flow": form_field(page.text, "flow"),
                                               "csrf_token": form_field(page.text, "csrf_token"),
                                               "username": number})
    assert reply.headers["location"].startswith("/login/code?flow="), reply.headers["location"]
    page = await browser.get(reply.headers["location"])
    return await browser.post("/login/code", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
        "code": await texted_code(gateway, number)})


async def test_a_required_second_factor_is_asked_after_the_organisation_is_chosen(browser, rp, s, smtp):
    client = await client_for(rp)
    email, user_id = await person(rp)
    org = await new_org(s, user_id, "Strict Oy")
    await set_policy(s, org, require_second_factor=True, allowed_factors=["email"])
    started = await rp.authorize(browser, client, scope=SCOPE)
    reply = await rp.login(browser, started.headers["location"], email)
    assert reply.headers["location"].startswith("/login/factor?flow="), reply.headers["location"]
    page = await browser.get(reply.headers["location"])
    assert "We sent a code to your email address." in page.text
    assert 'value="totp"' not in page.text and 'value="sms"' not in page.text
    reply = await browser.post("/login/factor", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
        "answer": await emailed_code(smtp, email)})
    reply, _ = await follow(browser, rp, reply)
    tokens = await exchange(browser, rp, client, started, reply)
    assert "mfa" in tokens["id"]["amr"] and tokens["id"]["org"] == org_claim(org)

    # A client without the organisation scope is not concerned by the organisation's policy.
    plain = await rp.register()
    async with rp.browser() as other:
        plain_tokens = await sign_in(other, rp, plain, email, scope="openid")
        assert plain_tokens["id"]["amr"] == ["pwd"]


async def test_a_second_factor_the_account_cannot_give_ends_on_the_no_access_page(browser, rp, s):
    client = await client_for(rp)
    email, user_id = await person(rp)
    org = await new_org(s, user_id, "App Only Oy")
    await set_policy(s, org, require_second_factor=True, allowed_factors=["totp"])
    started = await rp.authorize(browser, client, scope=SCOPE)
    reply, seen = await follow(browser, rp, started, email)
    assert seen[-1] == "/login/no-access"
    page = await browser.get(reply.headers["location"])
    assert page.status_code == 403 and "App Only Oy" in page.text
    assert query_of(form_link(page.text))["error"] == "access_denied"


async def test_a_phone_code_sign_in_the_policy_refuses_asks_for_the_password(browser, rp, s, gateway):
    client = await client_for(rp)
    email, user_id, number = await phone_person(s, rp)
    org = await new_org(s, user_id, "No Phone Oy")
    await set_policy(s, org, phone_code_sign_in=False)
    started = await rp.authorize(browser, client, scope=SCOPE)
    reply = await sms_sign_in(browser, rp, gateway, started.headers["location"], number)
    location = reply.headers["location"]
    assert location.startswith("/login?flow="), location
    # The phone number now leads to the password, and no code is offered instead.
    page = await browser.get(location)
    reply = await browser.post("/login", data={"flow": form_field(page.text, "flow"),
                                               "csrf_token": form_field(page.text, "csrf_token"),
                                               "username": number})
    assert reply.headers["location"].startswith("/login/password?flow=")
    page = await browser.get(reply.headers["location"])
    assert "Text me a code instead" not in page.text
    reply = await browser.post("/login/password", data={"flow": form_field(page.text, "flow"),
                                                        "csrf_token": form_field(page.text, "csrf_token"),
                                                        "password": PASSWORD})
    reply, _ = await follow(browser, rp, reply)
    tokens = await exchange(browser, rp, client, started, reply)
    assert tokens["id"]["amr"] == ["pwd"] and tokens["id"]["org_role"] == "owner"


async def test_a_phone_code_session_is_restricted_to_the_policys_highest_role(browser, rp, s, gateway):
    product = await new_product(s, ["owner", "admin", "editor", "member"])
    client = await client_for(rp, product=product)
    _, user_id, number = await phone_person(s, rp)
    org = await new_org(s, (await person(rp))[1], "Restricted Oy")
    await add_member(s, org.id, user_id, "admin")
    await licence(s, org, product, user_id, "admin")
    await set_policy(s, org, phone_code_max_role="editor")
    started = await rp.authorize(browser, client, scope=SCOPE + " organization:*")
    reply = await sms_sign_in(browser, rp, gateway, started.headers["location"], number)
    reply, _ = await follow(browser, rp, reply)
    tokens = await exchange(browser, rp, client, started, reply)
    assert tokens["id"]["amr"] == ["sms"]
    for claims in (tokens["id"], tokens["at"]):
        assert claims["org_role"] == "editor" and claims["roles"] == ["editor"]
    # The cap follows the grant's amr at every refresh too.
    refreshed = await rp.token(browser, client, {"grant_type": "refresh_token",
                                                 "refresh_token": tokens["refresh_token"]})
    at = await rp.verify(browser, refreshed.json()["access_token"])
    assert at["org_role"] == "editor" and at["roles"] == ["editor"]
    userinfo = await browser.get("/userinfo", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"})
    assert userinfo.json()["org_role"] == "editor"
    assert {o["id"]: o["role"] for o in userinfo.json()["orgs"]}[org.id] == "editor"


async def age_sessions(s, user_id: str, seconds: int) -> None:
    await s.db.run(lambda db: db.execute(update(BrowserSession).where(BrowserSession.user_id == user_id)
                                         .values(auth_time=utcnow() - timedelta(seconds=seconds))))


async def test_a_session_older_than_the_organisations_maximum_age_signs_in_again(browser, rp, s):
    client = await client_for(rp)
    email, user_id = await person(rp)
    org = await new_org(s, user_id, "Short Oy")
    await set_policy(s, org, max_session_age=300)
    await sign_in(browser, rp, client, email)
    # The session is now older than the organisation allows.
    await age_sessions(s, user_id, 400)
    started = await rp.authorize(browser, client, scope=SCOPE)
    assert started.headers["location"].startswith("/login?flow=")
    reply, seen = await follow(browser, rp, started, email)
    tokens = await exchange(browser, rp, client, started, reply)
    assert tokens["id"]["org"] == org_claim(org)
    # prompt=none cannot sign in again: login_required.
    await age_sessions(s, user_id, 400)
    started = await rp.authorize(browser, client, scope=SCOPE, prompt="none")
    assert query_of(started.headers["location"])["error"] == "login_required"


# ---- which second factor (the methods by name, not the amr) ---------------------------------------

async def enrol_totp(s, user_id: str, email: str):
    import pyotp

    async def work(db):
        enrolment = await s.factors.totp.enrol(db, user_id=user_id, account_name=email)
        totp = pyotp.TOTP(enrolment.secret)
        assert await s.factors.totp.confirm(db, user_id=user_id, factor_id=enrolment.factor_id, code=totp.now())
        return totp
    return await s.db.run(work)


async def live_methods(s, user_id: str) -> list:
    rows = await s.db.run(lambda db: db.execute(select(BrowserSession.methods).where(
        BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None))))
    return rows.scalars().all()


async def test_an_emailed_code_is_no_second_factor_where_only_the_app_is_allowed(browser, rp, s, smtp):
    """Finding B: amr ["pwd", "otp", "mfa"] from a password and an emailed code must not pass a
    policy that accepts only an authenticator app: prompt=none gets interaction_required, the
    refresh fails, an interactive sign-in asks for the app; with the app it all works again."""
    import time

    client = await client_for(rp)
    email, user_id = await person(rp)
    org = await new_org(s, user_id, "App Only Oy")
    totp = await enrol_totp(s, user_id, email)

    async def emailed_second_factor(db):
        (await s.accounts.get(db, user_id)).code_second_factor = "email"
    await s.db.run(emailed_second_factor)

    # Password, then the emailed code instead of the app.
    started = await rp.authorize(browser, client, scope=SCOPE)
    reply = await rp.login(browser, started.headers["location"], email)
    assert reply.headers["location"].startswith("/login/factor?flow="), reply.headers["location"]
    page = await browser.get(reply.headers["location"])
    reply = await browser.post("/login/factor", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"), "use": "email"})
    page = await browser.get(reply.headers["location"])
    reply = await browser.post("/login/factor", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
        "answer": await emailed_code(smtp, email)})
    reply, _ = await follow(browser, rp, reply)
    tokens = await exchange(browser, rp, client, started, reply)
    assert tokens["id"]["amr"] == ["pwd", "otp", "mfa"] and tokens["id"]["org"] == org_claim(org)
    assert await live_methods(s, user_id) == [["pwd", "email"]]
    grant_methods = await s.db.run(lambda db: db.execute(select(Grant.methods).where(Grant.user_id == user_id)))
    assert grant_methods.scalars().all() == [["pwd", "email"]]

    await set_policy(s, org, require_second_factor=True, allowed_factors=["totp"])
    refreshed = await rp.token(browser, client, {"grant_type": "refresh_token",
                                                 "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    silent = await rp.authorize(browser, client, scope=SCOPE, prompt="none")
    assert query_of(silent.headers["location"])["error"] == "interaction_required"

    # Interactive: a step-up offering the app (and recovery codes) only, never the email again.
    started = await rp.authorize(browser, client, scope=SCOPE)
    location = started.headers["location"]
    assert location.startswith("/login/factor?flow="), location
    page = await browser.get(location)
    assert 'value="email"' not in page.text and 'value="sms"' not in page.text
    reply = await browser.post("/login/factor", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
        "answer": totp.at(int(time.time()) + 30)})
    reply, _ = await follow(browser, rp, reply)
    tokens = await exchange(browser, rp, client, started, reply)
    assert tokens["id"]["org"] == org_claim(org)
    assert await live_methods(s, user_id) == [["pwd", "email", "totp"]]
    refreshed = await rp.token(browser, client, {"grant_type": "refresh_token",
                                                 "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    silent = await rp.authorize(browser, client, scope=SCOPE, prompt="none")
    assert "code" in query_of(silent.headers["location"]), silent.headers["location"]


async def test_a_grant_from_before_methods_were_recorded_fails_closed_on_a_factor_restriction(browser, rp, s):
    client = await client_for(rp)
    email, user_id = await person(rp)
    org = await new_org(s, user_id, "Old Grant Oy")
    tokens = await sign_in(browser, rp, client, email)
    # As rows written before methods were recorded: an amr that says "mfa" with an unknown "otp".
    await s.db.run(lambda db: db.execute(update(Grant).where(Grant.user_id == user_id).values(
        methods=None, amr=["pwd", "otp", "mfa"])))
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    await set_policy(s, org, require_second_factor=True)  # every factor allowed: the "otp" is one
    reply = await rp.token(browser, client, refresh)
    assert reply.status_code == 200, reply.text
    await set_policy(s, org, allowed_factors=["totp"])  # now the "otp" may have been an email
    reply = await rp.token(browser, client, {**refresh, "refresh_token": reply.json()["refresh_token"]})
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_grant"
