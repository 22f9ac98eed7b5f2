"""Password reset (flows/recovery.py, ui/recovery.py) through the pages, with the messages really
sent: an app whose email provider is a real SMTP server (aiosmtpd) and whose SMS provider is a
local signed-webhook gateway, its courier worker running in process.
"""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
from sqlalchemy import select

from idp.sessions.models import BrowserSession
from tests.conftest import COURIER_POLL as POLL, ISSUER
from tests.mail_sms import code_in, emailed_code, mail_to, until
from tests.rp import PASSWORD, RelyingParty, form_field
from tests.token_support import OFFLINE, assert_error, refresh

NEW_PASSWORD = "a brand new long passphrase"


@pytest.fixture(scope="module")
def reset_app(delivering_app):
    return delivering_app


@pytest.fixture
def s(reset_app):
    return reset_app.state.services


@pytest.fixture
def rp(reset_app, s) -> RelyingParty:
    return RelyingParty(reset_app, s)


@pytest.fixture
async def browser(reset_app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=reset_app), base_url=ISSUER) as client:
        yield client


async def start_reset(browser, identifier: str, *, login_flow: str | None = None) -> httpx.Response:
    page = await browser.get("/reset" + (f"?flow={login_flow}" if login_flow else ""))
    assert page.status_code == 200, page.text
    assert 'autocomplete="username"' in page.text
    return await browser.post("/reset", data={
        "csrf_token": form_field(page.text, "csrf_token"), "identifier": identifier,
        "login_flow": form_field(page.text, "login_flow"),
    })


async def submit_code(browser, code_location: str, code: str) -> httpx.Response:
    page = await browser.get(code_location)
    assert page.status_code == 200, page.text
    assert 'autocomplete="one-time-code"' in page.text and 'inputmode="numeric"' in page.text
    return await browser.post("/reset/code", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
        "code": code,
    })


async def submit_password(browser, password_location: str, password: str) -> httpx.Response:
    page = await browser.get(password_location)
    assert page.status_code == 200, page.text
    assert 'autocomplete="new-password"' in page.text
    return await browser.post("/reset/password", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
        "password": password,
    })


async def test_reset_by_email_end_to_end_ends_sessions_and_token_families(browser, rp, s, smtp):
    client = await rp.register()
    email, user_id = await rp.user()
    # Before the reset: a signed-in browser holding a refresh token.
    async with rp.browser() as other:
        result = await rp.sign_in(other, client, email, scope=OFFLINE)
        tokens = await rp.exchange(other, client, result)
        assert tokens.status_code == 200, tokens.text
        old_refresh = tokens.json()["refresh_token"]

        # The reset starts from a login page: its link passes the flow along.
        login = await rp.authorize(browser, client)
        login_location = login.headers["location"]
        login_page = await browser.get(login_location)
        login_flow = login_location.split("flow=")[1]
        assert f'href="/reset?flow={login_flow}"' in login_page.text

        reply = await start_reset(browser, email, login_flow=login_flow)
        assert reply.status_code == 303 and reply.headers["location"].startswith("/reset/code?flow=")
        reply = await submit_code(browser, reply.headers["location"], await emailed_code(smtp, email))
        assert reply.status_code == 303 and reply.headers["location"].startswith("/reset/password?flow=")
        done = await submit_password(browser, reply.headers["location"], NEW_PASSWORD)
        assert done.status_code == 200, done.text
        assert f'href="/login?flow={login_flow}"' in done.text
        assert "idp_session" not in browser.cookies  # the reset signs nobody in

        # Every token family and every browser session of the account is ended.
        assert_error(await refresh(other, rp, client, old_refresh), 400, "invalid_grant")
        again = await rp.authorize(other, client)
        assert again.headers["location"].startswith("/login?flow=")
    live = await s.db.run(lambda db: db.execute(select(BrowserSession.id).where(
        BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None))))
    assert live.all() == []

    # The old password fails, the new one signs in through the normal login form.
    assert (await rp.login(browser, login_location, email, PASSWORD)).status_code == 401
    signed = await rp.login(browser, login_location, email, NEW_PASSWORD)
    assert signed.status_code == 303 and signed.headers["location"].startswith(client.redirect_uri)

    # The person is told, without a code.
    notice = (await mail_to(smtp, email, 2))[1]
    assert notice["Subject"] == "Your password was changed"


async def test_an_unknown_email_gets_the_same_answer_and_no_mail(browser, rp, smtp):
    email, _ = await rp.user()
    unknown = f"nobody-{secrets.token_hex(4)}@example.com"
    known_reply = await start_reset(browser, email)
    unknown_reply = await start_reset(browser, unknown)
    assert known_reply.status_code == unknown_reply.status_code == 303
    known_page = await browser.get(known_reply.headers["location"])
    unknown_page = await browser.get(unknown_reply.headers["location"])
    assert known_page.status_code == unknown_page.status_code == 200
    flow_of = lambda r: r.headers["location"].split("flow=")[1]
    assert (known_page.text.replace(flow_of(known_reply), "F").replace(form_field(known_page.text, "csrf_token"), "T")
            == unknown_page.text.replace(flow_of(unknown_reply), "F").replace(form_field(unknown_page.text, "csrf_token"), "T"))
    await mail_to(smtp, email)
    # Any code on the unknown flow gets the generic refusal.
    reply = await submit_code(browser, unknown_reply.headers["location"], "123456")
    assert reply.status_code == 400 and "The code is not valid" in reply.text
    await asyncio.sleep(10 * POLL)
    assert smtp.to(unknown) == []


async def test_five_wrong_codes_burn_it(browser, rp, smtp):
    email, _ = await rp.user()
    reply = await start_reset(browser, email)
    location = reply.headers["location"]
    code = await emailed_code(smtp, email)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        refused = await submit_code(browser, location, wrong)
        assert refused.status_code == 400 and "The code is not valid" in refused.text
    refused = await submit_code(browser, location, code)  # the right one, too late
    assert refused.status_code == 400 and "The code is not valid" in refused.text


async def test_a_code_works_once(browser, rp, smtp):
    email, _ = await rp.user()
    reply = await start_reset(browser, email)
    location = reply.headers["location"]
    page = await browser.get(location)
    fields = {"flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
              "code": await emailed_code(smtp, email)}
    first = await browser.post("/reset/code", data=fields)
    assert first.status_code == 303
    second = await browser.post("/reset/code", data=fields)
    assert second.status_code == 400 and "already done" in second.text
    # A second flow for the same address (within the resend cooldown) cannot reuse it either.
    other = await start_reset(browser, email)
    refused = await submit_code(browser, other.headers["location"], fields["code"])
    assert refused.status_code == 400 and "The code is not valid" in refused.text


async def test_a_weak_new_password_is_refused_with_the_policy_message(browser, rp, smtp):
    email, _ = await rp.user()
    reply = await start_reset(browser, email)
    reply = await submit_code(browser, reply.headers["location"], await emailed_code(smtp, email))
    location = reply.headers["location"]
    refused = await submit_password(browser, location, "short")
    assert refused.status_code == 400
    assert "The password must be at least 15 characters long." in refused.text
    done = await submit_password(browser, location, NEW_PASSWORD)  # the flow is still there
    assert done.status_code == 200


async def test_forms_without_csrf_are_refused(browser, rp, smtp):
    email, _ = await rp.user()
    await browser.get("/reset")  # the browser has a CSRF cookie, the form no token
    assert (await browser.post("/reset", data={"identifier": email})).status_code == 403
    reply = await start_reset(browser, email)
    flow = reply.headers["location"].split("flow=")[1]
    code = await emailed_code(smtp, email)
    assert (await browser.post("/reset/code", data={"flow": flow, "code": code})).status_code == 403
    assert (await browser.post("/reset/code", data={"flow": flow, "code": code,
                                                    "csrf_token": "forged"})).status_code == 403
    assert (await browser.post("/reset/password", data={"flow": flow, "password": NEW_PASSWORD})).status_code == 403


async def test_another_browser_cannot_continue_the_flow(browser, rp, smtp, reset_app):
    email, _ = await rp.user()
    reply = await start_reset(browser, email)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=reset_app), base_url=ISSUER) as thief:
        page = await thief.get(reply.headers["location"])
        assert page.status_code == 400 and "expired" in page.text


async def test_reset_by_sms_and_the_resend_limit(browser, rp, s, gateway):
    _, user_id = await rp.user()
    number = f"+35840{secrets.randbelow(10**7):07d}"

    async def add_phone(db):
        user = await s.accounts.get(db, user_id)
        await s.accounts.add_identifier(db, user, "phone", number, verified=True)
    await s.db.run(add_phone)

    reply = await start_reset(browser, number)
    assert reply.status_code == 303
    [sms] = await until(lambda: gateway.to(number))
    assert "not a password" in sms["text"]
    reply = await submit_code(browser, reply.headers["location"], code_in(sms["text"]))
    done = await submit_password(browser, reply.headers["location"], NEW_PASSWORD)
    assert done.status_code == 200
    await until(lambda: len(gateway.to(number)) >= 2)  # "your password was changed"
    assert "changed" in gateway.to(number)[1]["text"]

    # A second SMS to the number right away waits (429 + Retry-After), as for an unknown number.
    again = await start_reset(browser, number)
    assert again.status_code == 429 and int(again.headers["retry-after"]) > 0
    unknown = f"+35850{secrets.randbelow(10**7):07d}"
    assert (await start_reset(browser, unknown)).status_code == 303
    refused = await start_reset(browser, unknown)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert gateway.to(unknown) == []


async def test_the_reset_pages_speak_finnish(browser, rp, smtp):
    browser.headers["Accept-Language"] = "fi"
    email, _ = await rp.user()
    page = await browser.get("/reset")
    assert "<h1>Vaihda unohtunut salasana</h1>" in page.text and "Reset" not in page.text
    reply = await start_reset(browser, email)
    # The code email is in the language of the page that asked for it.
    code = await emailed_code(smtp, email, warning="ei ole salasana")
    reply = await submit_code(browser, reply.headers["location"], code)
    refused = await submit_password(browser, reply.headers["location"], "short")
    assert "Salasanassa on oltava vähintään 15 merkkiä." in refused.text


async def test_an_account_with_only_a_phone_number_resets_by_sms(browser, s, gateway):
    number = f"+35840{secrets.randbelow(10**7):07d}"
    await s.db.run(lambda db: s.accounts.create_registered_user(
        db, kind="phone", value=number, password_hash=None, name=None, locale="en"))

    reply = await start_reset(browser, number)
    [sms] = await until(lambda: gateway.to(number))
    reply = await submit_code(browser, reply.headers["location"], code_in(sms["text"]))
    done = await submit_password(browser, reply.headers["location"], NEW_PASSWORD)
    assert done.status_code == 200, done.text
    await until(lambda: len(gateway.to(number)) >= 2)  # "changed", by SMS: there is no email
    assert "changed" in gateway.to(number)[1]["text"]


async def test_a_disabled_account_gets_no_new_password_by_code(browser, rp, s, smtp):
    """Disabling ends every reset under way (tests/api/test_api_password_reset.py); one begun
    afterwards is refused at the last step, in the person's language, and changes nothing."""
    from sqlalchemy import update

    from idp.accounts.models import User
    from idp.db import utcnow
    from idp.flows.recovery import PasswordResetFlow

    email, user_id = await rp.user()
    await s.db.run(lambda db: db.execute(update(User).where(User.id == user_id).values(disabled_at=utcnow())))
    before = await s.db.run(lambda db: db.scalar(select(User.password_hash).where(User.id == user_id)))
    browser.headers["Accept-Language"] = "fi"
    reply = await start_reset(browser, email)
    code = await emailed_code(smtp, email, warning="ei ole salasana")
    reply = await submit_code(browser, reply.headers["location"], code)
    refused = await submit_password(browser, reply.headers["location"], NEW_PASSWORD)
    assert refused.status_code == 400 and "Tämä tili on poistettu käytöstä." in refused.text
    assert await s.db.run(lambda db: db.scalar(select(User.password_hash).where(User.id == user_id))) == before
    states = await s.db.run(lambda db: db.scalars(select(PasswordResetFlow.state).where(
        PasswordResetFlow.user_id == user_id)))
    assert list(states) == ["code_verified"]
    await asyncio.sleep(0.3)
    assert len(smtp.to(email)) == 1  # the code; no "your password was changed"
