"""Disabled accounts (users.disabled_at) through real HTTP: the right password or code is refused
with a clear, translated message (and audited), a wrong one gets the ordinary answer, and nothing
issued before the account was disabled still works: a code not yet exchanged, a refresh token,
a browser session (at /authorize and on the account pages).

Disabling is written to the database directly here, without ending sessions or grants (the API
that disables does that too): these tests show the refusals hold on their own.
"""

from __future__ import annotations

import secrets

import httpx
import pytest
from sqlalchemy import func, select, update

from idp.accounts.models import Identifier, User
from idp.audit.models import AuditEvent
from idp.db import utcnow
from tests.conftest import ISSUER
from tests.mail_sms import mail_to, texted_code
from tests.rp import PASSWORD, RelyingParty, form_field, query_of
from tests.token_support import OFFLINE, assert_error, authorized, refresh, signed_in

DISABLED = "This account is disabled. Contact your administrator."
TRANSLATED = {"fi": "Tämä tili on poistettu käytöstä. Ota yhteyttä ylläpitäjään.",
              "sv": "Det här kontot är inaktiverat. Kontakta din administratör.",
              "hu": "Ez a fiók le van tiltva. Forduljon a rendszergazdához."}
LOGIN_FAILED = "Incorrect email, phone number or password."


@pytest.fixture
def s(delivering_app):
    return delivering_app.state.services


@pytest.fixture
def rp(delivering_app, s) -> RelyingParty:
    return RelyingParty(delivering_app, s)


@pytest.fixture
async def browser(delivering_app):
    ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
    transport = httpx.ASGITransport(app=delivering_app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


async def disable(s, user_id: str) -> None:
    await s.db.run(lambda db: db.execute(update(User).where(User.id == user_id).values(disabled_at=utcnow())))


async def failures(s, user_id: str) -> list[dict]:
    rows = await s.db.run(lambda db: db.execute(select(AuditEvent.after).where(
        AuditEvent.target_id == user_id, AuditEvent.action == "user.sign_in_failed").order_by(AuditEvent.at)))
    return list(rows.scalars())


async def sessions_started(s, user_id: str) -> int:
    return await s.db.run(lambda db: db.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.target_id == user_id, AuditEvent.action == "user.signed_in")))


def fields(page, **values) -> dict:
    return {"flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"), **values}


async def post_on(browser, location: str, to: str, headers: dict | None = None, **values) -> httpx.Response:
    page = await browser.get(location, headers=headers)
    assert page.status_code == 200, page.text
    return await browser.post(to, data=fields(page, **values), headers=headers)


async def login_location(browser, rp, client, **extra) -> str:
    reply = await rp.authorize(browser, client, **extra)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?flow="), reply.text
    return reply.headers["location"]


# ---- sign-in -------------------------------------------------------------------------------------

async def test_the_right_password_hears_the_account_is_disabled_a_wrong_one_does_not(browser, rp, s):
    client = await rp.register()
    email, user_id = await rp.user()
    await disable(s, user_id)
    location = await login_location(browser, rp, client)

    wrong = await post_on(browser, location, "/login", username=email, password="not the password at all")
    assert wrong.status_code == 401 and LOGIN_FAILED in wrong.text and DISABLED not in wrong.text

    right = await post_on(browser, location, "/login", username=email, password=PASSWORD)
    assert right.status_code == 403 and DISABLED in right.text
    assert "idp_session" not in right.headers.get("set-cookie", "")
    # The two-step pages alike.
    reply = await post_on(browser, location, "/login", username=email)
    right = await post_on(browser, reply.headers["location"], "/login/password", password=PASSWORD)
    assert right.status_code == 403 and DISABLED in right.text

    assert await failures(s, user_id) == [{"reason": "wrong_password", "method": "pwd"},
                                          {"reason": "disabled", "method": "pwd"},
                                          {"reason": "disabled", "method": "pwd"}]
    assert await sessions_started(s, user_id) == 0


@pytest.mark.parametrize("language", sorted(TRANSLATED))
async def test_the_message_is_translated(browser, rp, s, language):
    client = await rp.register()
    email, user_id = await rp.user()
    await disable(s, user_id)
    location = await login_location(browser, rp, client)
    reply = await post_on(browser, location, "/login", headers={"Accept-Language": language},
                          username=email, password=PASSWORD)
    assert reply.status_code == 403 and TRANSLATED[language] in reply.text


async def test_a_sign_in_code_of_a_disabled_account_is_refused(browser, rp, s, gateway):
    client = await rp.register()
    _, user_id = await rp.user()
    number = f"+35840{secrets.randbelow(10**7):07d}"

    async def add(db):
        await s.accounts.add_identifier(db, await s.accounts.get(db, user_id), "phone", number, verified=True)
    await s.db.run(add)
    await disable(s, user_id)
    location = await login_location(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=number)
    assert reply.headers["location"].startswith("/login/code?flow=")
    refused = await post_on(browser, reply.headers["location"], "/login/code", code=await texted_code(gateway, number))
    assert refused.status_code == 403 and DISABLED in refused.text
    assert await failures(s, user_id) == [{"reason": "disabled", "method": "sms"}]
    assert await sessions_started(s, user_id) == 0


async def test_disabled_at_the_new_password_step_changes_nothing(browser, rp, s):
    client = await rp.register()
    email, user_id = await rp.user()

    async def set_temporary(db):
        return await s.temporary_passwords.set(db, await s.accounts.get(db, user_id), via="email")
    temporary = await s.db.run(set_temporary)
    location = await login_location(browser, rp, client)
    parked = (await post_on(browser, location, "/login", username=email, password=temporary)).headers["location"]
    assert parked.startswith("/login/new-password?flow=")
    await disable(s, user_id)
    refused = await post_on(browser, parked, "/login/new-password", password="my very own passphrase")
    assert refused.status_code == 403 and DISABLED in refused.text
    user = await s.db.run(lambda db: db.get(User, user_id))
    assert user.password_must_change  # the temporary password was not replaced
    assert await failures(s, user_id) == [{"reason": "disabled", "method": "pwd"}]


async def test_registering_with_a_disabled_accounts_email_creates_nothing(browser, rp, s, smtp):
    email, user_id = await rp.user()
    await disable(s, user_id)
    page = await browser.get("/register")
    reply = await browser.post("/register", data={
        "method": "email", "csrf_token": form_field(page.text, "csrf_token"),
        "login_flow": form_field(page.text, "login_flow"), "email": email, "password": PASSWORD, "name": ""})
    assert reply.status_code == 303
    [notice] = await mail_to(smtp, email)
    assert "already belongs to an account" in smtp.body(notice)  # no code is sent
    page = await browser.get(reply.headers["location"])
    guessed = await browser.post("/register/code", data=fields(page, code="123456"))
    assert guessed.status_code == 400
    owners = await s.db.run(lambda db: db.execute(select(Identifier.user_id).where(Identifier.value == email)))
    assert list(owners.scalars()) == [user_id]


# ---- what was issued before ----------------------------------------------------------------------

async def test_a_code_issued_before_disabling_is_refused_at_the_token_endpoint(http, rp, s):
    client, _, user_id, result = await authorized(http, rp)
    await disable(s, user_id)
    assert_error(await rp.exchange(http, client, result), 400, "invalid_grant")


async def test_a_refresh_token_of_a_disabled_account_is_refused(http, rp, s):
    session = await signed_in(http, rp, scope=OFFLINE)
    await disable(s, session.sub)
    assert_error(await refresh(http, rp, session.client, session.refresh_token), 400, "invalid_grant")


async def test_a_disabled_accounts_browser_session_no_longer_skips_the_login_page(browser, rp, s):
    client = await rp.register()
    email, user_id = await rp.user()
    result = await rp.sign_in(browser, client, email)
    assert "code" in result.params
    again = await rp.authorize(browser, client)  # the session is enough: straight back with a code
    assert again.status_code == 302 and "code=" in again.headers["location"]

    await disable(s, user_id)
    again = await rp.authorize(browser, client)
    assert again.status_code == 303 and again.headers["location"].startswith("/login?flow="), again.text
    silent = await rp.authorize(browser, client, prompt="none")
    assert query_of(silent.headers["location"])["error"] == "login_required"
    account = await browser.get("/account")
    assert account.status_code == 303 and account.headers["location"].startswith("/login?flow=")
