"""Self-registration (flows/registration.py, ui/registration.py) through the pages, with the
messages really sent: the delivering app (a real SMTP server, a real local SMS gateway, its
courier worker in process), and the tokens checked as a relying party would.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from idp.accounts.models import Identifier, User
from idp.accounts.service import IdentifierTaken
from idp.app import create_app
from idp.flows.registration import RegistrationFlow
from tests.conftest import COURIER_POLL as POLL, ISSUER
from tests.mail_sms import code_in, emailed_code, mail_to, texted_code, until
from tests.rp import PASSWORD, AuthResult, RelyingParty, form_field
from tests.password_support import password_owner

NAME = "Maija Meikäläinen"
NOT_VALID = "The code is not valid"


@pytest.fixture(scope="module")
def reg_app(delivering_app):
    return delivering_app


@pytest.fixture
def s(reg_app):
    return reg_app.state.services


@pytest.fixture
def rp(reg_app, s) -> RelyingParty:
    return RelyingParty(reg_app, s)


def new_browser(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER)


@pytest.fixture
async def browser(reg_app):
    async with new_browser(reg_app) as client:
        yield client


def new_email() -> str:
    return f"new-{secrets.token_hex(6)}@example.com"


def new_mobile() -> tuple[str, str]:
    """(national form as typed in Finland, E.164)."""
    digits = f"{secrets.randbelow(10**7):07d}"
    return f"040 {digits[:3]} {digits[3:]}", f"+35840{digits}"


async def start(browser, method: str, identifier: str, *, password: str = PASSWORD, name: str = "",
                login_flow: str | None = None) -> httpx.Response:
    page = await browser.get("/register" + (f"?flow={login_flow}" if login_flow else ""))
    assert page.status_code == 200, page.text
    return await browser.post("/register", data={
        "method": method, "csrf_token": form_field(page.text, "csrf_token"),
        "login_flow": form_field(page.text, "login_flow"),
        "email" if method == "email" else "phone": identifier, "password": password, "name": name,
    })


async def submit_code(browser, code_location: str, code: str) -> httpx.Response:
    page = await browser.get(code_location)
    assert page.status_code == 200, page.text
    assert 'autocomplete="one-time-code"' in page.text and 'inputmode="numeric"' in page.text
    return await browser.post("/register/code", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
        "code": code,
    })


async def ask_for_a_new_code(browser, code_location: str) -> httpx.Response:
    page = await browser.get(code_location)
    return await browser.post("/register/code/resend", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
    })


def flow_of(reply: httpx.Response) -> str:
    return reply.headers["location"].split("flow=")[1]


async def accounts_with(s, kind: str, value: str) -> list[str]:
    rows = await s.db.run(lambda db: db.execute(select(Identifier.user_id).where(
        Identifier.kind == kind, Identifier.value == value)))
    return list(rows.scalars())


async def count(s, model) -> int:
    return await s.db.run(lambda db: db.scalar(select(func.count()).select_from(model)))


async def finish_at_the_rp(rp, browser, reply: httpx.Response, authorize: httpx.Response):
    """Follow consent if asked; return the AuthResult of the code at the RP's redirect URI."""
    sent = authorize.extensions["sent"]
    location = reply.headers["location"]
    if location.startswith("/consent"):
        reply = await rp.consent(browser, location)
        location = reply.headers["location"]
    assert location.startswith(sent["redirect_uri"]), location
    return AuthResult.of(authorize, location)


# ---- the two methods, end to end ---------------------------------------------------------------

async def test_email_registration_from_an_rp_login_page_ends_at_the_rp_with_an_id_token(browser, rp, s, smtp):
    client = await rp.register()
    authorize = await rp.authorize(browser, client)
    login_location = authorize.headers["location"]
    login_flow = login_location.split("flow=")[1]
    login_page = await browser.get(login_location)
    assert f'href="/register?flow={login_flow}"' in login_page.text

    page = await browser.get(f"/register?flow={login_flow}")
    for attribute in ('autocomplete="email"', 'autocomplete="new-password"', 'autocomplete="tel"'):
        assert attribute in page.text
    email = new_email()
    reply = await start(browser, "email", email.upper(), name=NAME, login_flow=login_flow)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/register/code?flow=")
    done = await submit_code(browser, reply.headers["location"], await emailed_code(smtp, email))
    assert done.status_code == 303, done.text
    assert "idp_session" in browser.cookies

    result = await finish_at_the_rp(rp, browser, done, authorize)
    tokens = await rp.exchange(browser, client, result)
    assert tokens.status_code == 200, tokens.text
    claims = await rp.verify(browser, tokens.json()["id_token"])
    [user_id] = await accounts_with(s, "email", email)
    assert claims["sub"] == user_id and claims["nonce"] == result.nonce
    assert claims["email"] == email and claims["email_verified"] is True
    assert claims["name"] == NAME and claims["amr"] == ["pwd"]

    # The password chosen at the first step is the account's password.
    user = await s.db.run(lambda db: password_owner(s, db, email, PASSWORD))
    assert user is not None and user.id == user_id
    identifiers = await s.db.run(lambda db: s.accounts.identifiers(db, user))
    assert [(i.kind, i.value, i.verified) for i in identifiers] == [("email", email, True)]


async def test_registering_on_someone_elses_login_flow_never_reaches_their_application(browser, rp, s, smtp,
                                                                                        reg_app):
    """Login CSRF: an attacker registers on a victim's flow id to have the victim's application
    receive a code (with the victim's state) for the attacker's account. The flow belongs to the
    victim's browser, so the attacker's registration ends on the account pages instead."""
    client = await rp.register()
    authorize = await rp.authorize(browser, client)  # the victim's browser
    victim_flow = authorize.headers["location"].split("flow=")[1]
    async with new_browser(reg_app) as attacker:
        email = new_email()
        reply = await start(attacker, "email", email, login_flow=victim_flow)
        done = await submit_code(attacker, reply.headers["location"], await emailed_code(smtp, email))
        assert done.status_code == 303 and done.headers["location"] == "/account"
        assert not done.headers["location"].startswith(client.redirect_uri)


async def test_phone_registration_ends_at_the_rp_with_an_sms_id_token_and_no_email(browser, rp, s, gateway):
    client = await rp.register()
    authorize = await rp.authorize(browser, client)
    login_flow = authorize.headers["location"].split("flow=")[1]
    typed, number = new_mobile()
    reply = await start(browser, "phone", typed, name=NAME, login_flow=login_flow)
    assert reply.status_code == 303, reply.text
    code = await texted_code(gateway, number)

    # Another SMS to the number right away waits (the SmsGuard's resend delay), and none goes out.
    again = await ask_for_a_new_code(browser, reply.headers["location"])
    assert again.status_code == 429 and int(again.headers["retry-after"]) > 0
    await asyncio.sleep(10 * POLL)
    assert len(gateway.to(number)) == 1

    done = await submit_code(browser, reply.headers["location"], code)
    assert done.status_code == 303, done.text
    result = await finish_at_the_rp(rp, browser, done, authorize)
    tokens = await rp.exchange(browser, client, result)
    claims = await rp.verify(browser, tokens.json()["id_token"])
    [user_id] = await accounts_with(s, "phone", number)
    assert claims["sub"] == user_id and claims["amr"] == ["sms"] and claims["name"] == NAME
    assert "email" not in claims and "email_verified" not in claims

    user = await s.db.run(lambda db: s.accounts.get(db, user_id))
    assert user.email is None and user.password_hash is None
    identifiers = await s.db.run(lambda db: s.accounts.identifiers(db, user))
    assert [(i.kind, i.value, i.verified) for i in identifiers] == [("phone", number, True)]


async def test_registration_on_its_own_signs_in_for_the_account_pages(browser, s, smtp):
    email = new_email()
    reply = await start(browser, "email", email)
    done = await submit_code(browser, reply.headers["location"], await emailed_code(smtp, email))
    assert done.status_code == 303 and done.headers["location"] == "/account"
    assert "idp_session" in browser.cookies
    assert len(await accounts_with(s, "email", email)) == 1


async def test_a_login_flow_gone_meanwhile_ends_on_the_account_pages(browser, s, smtp):
    email = new_email()
    reply = await start(browser, "email", email, login_flow="noSuchLoginFlow")
    done = await submit_code(browser, reply.headers["location"], await emailed_code(smtp, email))
    assert done.status_code == 303 and done.headers["location"] == "/account"
    assert len(await accounts_with(s, "email", email)) == 1


# ---- no enumeration ----------------------------------------------------------------------------

def same_page(a: httpx.Response, b: httpx.Response, flow_a: str, flow_b: str) -> bool:
    token_a, token_b = form_field(a.text, "csrf_token"), form_field(b.text, "csrf_token")
    return (a.text.replace(flow_a, "F").replace(token_a, "T")
            == b.text.replace(flow_b, "F").replace(token_b, "T"))


async def test_a_taken_email_gets_the_same_page_a_notice_and_no_account(browser, rp, s, smtp):
    taken, owner_id = await rp.user()
    free = new_email()
    users_before = await count(s, User)
    taken_reply = await start(browser, "email", taken)
    free_reply = await start(browser, "email", free)
    assert taken_reply.status_code == free_reply.status_code == 303
    taken_page = await browser.get(taken_reply.headers["location"])
    free_page = await browser.get(free_reply.headers["location"])
    assert taken_page.status_code == free_page.status_code == 200
    assert same_page(taken_page, free_page, flow_of(taken_reply), flow_of(free_reply))

    # The owner is told, without a code; the free address gets its code.
    [notice] = await mail_to(smtp, taken)
    assert notice["Subject"] == "You already have an account"
    assert code_in_or_none(smtp.body(notice)) is None
    await emailed_code(smtp, free)

    # Any code on the taken address's flow fails like a wrong one, and nothing is created.
    refused = await submit_code(browser, taken_reply.headers["location"], "123456")
    assert refused.status_code == 400 and NOT_VALID in refused.text
    assert await accounts_with(s, "email", taken) == [owner_id]
    assert await count(s, User) == users_before


def code_in_or_none(text: str) -> str | None:
    try:
        return code_in(text)
    except AttributeError:
        return None


async def test_a_taken_number_gets_the_same_page_and_a_notice_by_sms(browser, rp, s, gateway):
    _, owner_id = await rp.user()
    typed, taken = new_mobile()

    async def add_phone(db):
        await s.accounts.add_identifier(db, await s.accounts.get(db, owner_id), "phone", taken, verified=True)
    await s.db.run(add_phone)
    free_typed, free = new_mobile()

    taken_reply = await start(browser, "phone", typed)
    free_reply = await start(browser, "phone", free_typed)
    assert taken_reply.status_code == free_reply.status_code == 303
    taken_page = await browser.get(taken_reply.headers["location"])
    free_page = await browser.get(free_reply.headers["location"])
    assert same_page(taken_page, free_page, flow_of(taken_reply), flow_of(free_reply))

    [notice] = await until(lambda: gateway.to(taken))
    assert "already has one" in notice["text"] and code_in_or_none(notice["text"]) is None
    await texted_code(gateway, free)
    refused = await submit_code(browser, taken_reply.headers["location"], "123456")
    assert refused.status_code == 400 and NOT_VALID in refused.text
    assert await accounts_with(s, "phone", taken) == [owner_id]


# ---- bad input: a clear error, nothing created, nothing sent -----------------------------------

async def test_a_weak_password_is_refused_before_any_mail(browser, s, smtp):
    email = new_email()
    flows_before = await count(s, RegistrationFlow)
    short = await start(browser, "email", email, password="short")
    assert short.status_code == 400
    assert "The password must be at least 15 characters long." in short.text
    assert f'value="{email}"' in short.text  # what was typed stays, except the password
    local = email.split("@")[0]
    mine = await start(browser, "email", email, password=f"{local} is my password")
    assert mine.status_code == 400
    assert "The password must not contain your email address" in mine.text
    await asyncio.sleep(10 * POLL)
    assert smtp.to(email) == []
    assert await count(s, RegistrationFlow) == flows_before


@pytest.mark.parametrize("typed, message", [
    ("not an address", "Type a valid email address."),
    ("someone@example.com\x00", "Type a valid email address."),
])
async def test_an_address_we_cannot_use_is_refused(browser, s, typed, message):
    flows_before = await count(s, RegistrationFlow)
    reply = await start(browser, "email", typed)
    assert reply.status_code == 400 and message in reply.text
    assert await count(s, RegistrationFlow) == flows_before


async def test_a_name_too_long_is_refused(browser, s):
    reply = await start(browser, "email", new_email(), name="x" * 201)
    assert reply.status_code == 400 and "The name must be at most 200 characters long." in reply.text


@pytest.mark.parametrize("typed, message", [
    ("+44 7400 123456", "We cannot send text messages to this country."),  # a UK mobile
    ("09 1234 567", "This number cannot receive text messages."),  # a Helsinki landline
    ("12345", "Type a valid mobile phone number."),
])
async def test_a_number_we_do_not_text_is_refused_before_the_gateway(browser, s, gateway, typed, message):
    flows_before, requests_before = await count(s, RegistrationFlow), gateway.requests
    reply = await start(browser, "phone", typed)
    assert reply.status_code == 400 and message in reply.text
    assert 'autocomplete="tel"' in reply.text
    await asyncio.sleep(10 * POLL)
    assert gateway.requests == requests_before
    assert await count(s, RegistrationFlow) == flows_before


# ---- codes -------------------------------------------------------------------------------------

async def test_five_wrong_codes_burn_it(browser, s, smtp):
    email = new_email()
    reply = await start(browser, "email", email)
    location = reply.headers["location"]
    code = await emailed_code(smtp, email)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        refused = await submit_code(browser, location, wrong)
        assert refused.status_code == 400 and NOT_VALID in refused.text
    refused = await submit_code(browser, location, code)  # the right one, too late
    assert refused.status_code == 400 and NOT_VALID in refused.text
    assert await accounts_with(s, "email", email) == []


async def test_the_right_code_in_ten_parallel_requests_creates_one_account(browser, s, smtp):
    email = new_email()
    users_before = await count(s, User)
    reply = await start(browser, "email", email)
    page = await browser.get(reply.headers["location"])
    fields = {"flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
              "code": await emailed_code(smtp, email)}
    replies = await asyncio.gather(*(browser.post("/register/code", data=fields) for _ in range(10)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(303) == 1 and all(code in (400, 409) for code in statuses[1:]), statuses
    assert len(await accounts_with(s, "email", email)) == 1
    assert await count(s, User) == users_before + 1


async def test_a_new_code_voids_the_old_one_and_waits_for_the_cooldown(browser, s, smtp, monkeypatch):
    email = new_email()
    reply = await start(browser, "email", email)
    location = reply.headers["location"]
    first = await emailed_code(smtp, email)
    too_soon = await ask_for_a_new_code(browser, location)
    assert too_soon.status_code == 429 and int(too_soon.headers["retry-after"]) > 0

    monkeypatch.setattr(s.otp, "resend_cooldown", timedelta(0))  # as if the cooldown had passed
    again = await ask_for_a_new_code(browser, location)
    assert again.status_code == 303 and again.headers["location"] == f"{location}&resent=1"
    assert "A new code is on its way." in (await browser.get(again.headers["location"])).text
    second = await emailed_code(smtp, email, 2)
    if second != first:  # one in a million: the same six digits twice
        refused = await submit_code(browser, location, first)
        assert refused.status_code == 400 and NOT_VALID in refused.text
    done = await submit_code(browser, location, second)
    assert done.status_code == 303


async def test_the_loser_of_a_race_for_one_address_gets_a_clear_page_and_no_rows(browser, rp, s, smtp):
    email = new_email()
    reply = await start(browser, "email", email)
    code = await emailed_code(smtp, email)
    # Meanwhile the address is verified on another account (another registration won).
    winner = await s.db.run(lambda db: s.accounts.create_user(db, email=email, password=None))
    users_before = await count(s, User)
    lost = await submit_code(browser, reply.headers["location"], code)
    assert lost.status_code == 409 and "already exists" in lost.text
    assert await accounts_with(s, "email", email) == [winner.id]
    assert await count(s, User) == users_before
    assert "idp_session" not in browser.cookies


async def test_two_accounts_for_one_number_at_once_make_one(s):
    number = new_mobile()[1]
    marker = f"racer-{secrets.token_hex(4)}"

    async def register(db):
        return await s.accounts.create_registered_user(db, kind="phone", value=number,
                                                       password_hash=None, name=marker)

    results = await asyncio.gather(*(s.db.run(register) for _ in range(2)), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["IdentifierTaken", "User"]
    assert isinstance(next(r for r in results if not isinstance(r, User)), IdentifierTaken)
    assert len(await accounts_with(s, "phone", number)) == 1
    # The loser left no user row behind either.
    named = await s.db.run(lambda db: db.scalar(
        select(func.count()).select_from(User).where(User.name == marker)))
    assert named == 1


# ---- CSRF, the browser binding, logs -----------------------------------------------------------

async def test_forms_without_csrf_are_refused(browser, s, smtp):
    email = new_email()
    await browser.get("/register")  # the browser has a CSRF cookie, the form no token
    assert (await browser.post("/register", data={"method": "email", "email": email,
                                                  "password": PASSWORD})).status_code == 403
    reply = await start(browser, "email", email)
    flow = flow_of(reply)
    code = await emailed_code(smtp, email)
    assert (await browser.post("/register/code", data={"flow": flow, "code": code})).status_code == 403
    assert (await browser.post("/register/code", data={"flow": flow, "code": code,
                                                       "csrf_token": "forged"})).status_code == 403
    assert (await browser.post("/register/code/resend", data={"flow": flow})).status_code == 403
    assert await accounts_with(s, "email", email) == []


async def test_another_browser_cannot_continue_the_flow(browser, reg_app, s, smtp):
    email = new_email()
    reply = await start(browser, "email", email)
    code = await emailed_code(smtp, email)
    async with new_browser(reg_app) as thief:
        page = await thief.get(reply.headers["location"])
        assert page.status_code == 400 and "expired" in page.text
        own = await thief.get("/register")  # a CSRF cookie and token of its own
        stolen = await thief.post("/register/code", data={
            "flow": flow_of(reply), "code": code, "csrf_token": form_field(own.text, "csrf_token")})
        assert stolen.status_code == 403
    assert await accounts_with(s, "email", email) == []


async def test_no_code_password_or_hash_is_logged(browser, s, smtp, caplog):
    caplog.set_level(logging.DEBUG, logger="idp")  # everything of ours, at every level
    email = new_email()
    reply = await start(browser, "email", email)
    code = await emailed_code(smtp, email)
    done = await submit_code(browser, reply.headers["location"], code)
    assert done.status_code == 303
    [user_id] = await accounts_with(s, "email", email)
    user = await s.db.run(lambda db: s.accounts.get(db, user_id))
    # Our own records (the test's SMTP server and database driver log what they carry).
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records
                       if r.name == "idp" or r.name.startswith("idp."))
    assert "account registered" in logged
    for secret in (code, PASSWORD, user.password_hash):
        assert secret not in logged


# ---- settings: a closed method is not offered and refused --------------------------------------

@pytest.fixture(scope="module")
async def closed_app(settings):
    application = create_app(settings.model_copy(update={"registration_email": False,
                                                         "registration_phone": False}))
    async with application.router.lifespan_context(application):
        yield application


async def test_with_both_methods_closed_registration_is_not_there(closed_app):
    async with new_browser(closed_app) as browser:
        page = await browser.get("/register")
        assert page.status_code == 404 and "not available" in page.text
        for method, field in (("email", "email"), ("phone", "phone")):
            refused = await browser.post("/register", data={
                "method": method, field: "x", "password": PASSWORD})
            assert refused.status_code == 404


@pytest.mark.parametrize("open_method, closed_method", [("email", "phone"), ("phone", "email")])
async def test_a_closed_method_is_not_offered_and_its_form_is_refused(closed_app, monkeypatch, open_method,
                                                                      closed_method):
    monkeypatch.setattr(closed_app.state.services.settings, f"registration_{open_method}", True)
    async with new_browser(closed_app) as browser:
        page = await browser.get("/register")
        assert page.status_code == 200
        assert f'value="{open_method}"' in page.text and f'value="{closed_method}"' not in page.text
        flows_before = await count(closed_app.state.services, RegistrationFlow)
        refused = await browser.post("/register", data={
            "method": closed_method, "csrf_token": form_field(page.text, "csrf_token"),
            "email": new_email(), "phone": new_mobile()[0], "password": PASSWORD})
        assert refused.status_code == 404
        assert await count(closed_app.state.services, RegistrationFlow) == flows_before


async def test_closing_a_method_stops_flows_already_started(browser, s, smtp, monkeypatch):
    email = new_email()
    reply = await start(browser, "email", email)
    code = await emailed_code(smtp, email)
    monkeypatch.setattr(s.settings, "registration_email", False)
    refused = await submit_code(browser, reply.headers["location"], code)
    assert refused.status_code == 404
    assert await accounts_with(s, "email", email) == []
