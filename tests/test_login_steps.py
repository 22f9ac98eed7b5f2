"""The sign-in steps through the pages, as a person and an outside client see them: identifier
first, password or a code by SMS or email, second factors (authenticator app, recovery code, SMS
and email codes, password after a code), step-up by acr_values, and the answers that must not
tell an unknown account from a known one. Codes are read from a real SMTP server and a real local
SMS gateway; ID tokens are checked with joserfc against the published keys.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select

from idp.courier.models import CourierMessage
from idp.db import utcnow
from idp.security import keyed_hash
from tests import secrets_registry
from tests.conftest import delivering_fixtures
from tests.mail_sms import emailed_code, mail_to, texted_code
from tests.rp import PASSWORD, AuthResult, RelyingParty, form_field, query_of

MFA = "urn:idp:acr:mfa"
ONE_FACTOR = "urn:idp:acr:1fa"


# s, rp and browser: this module's services, relying party and browser on the delivering app.
s, rp, browser = delivering_fixtures()


# ---- helpers -------------------------------------------------------------------------------------

def fields(page, **values) -> dict:
    return {"flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"), **values}


async def post_on(browser, location: str, to: str, **values):
    """Open the page at `location` and post its form (flow + CSRF token) with `values` to `to`."""
    page = await browser.get(location)
    assert page.status_code == 200, page.text
    return await browser.post(to, data=fields(page, **values))


async def start(browser, rp, client, **extra) -> tuple[str, dict]:
    reply = await rp.authorize(browser, client, **extra)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?flow="), reply.text
    return reply.headers["location"], reply


async def identify(browser, location: str, login: str):
    return await post_on(browser, location, "/login", username=login)


async def tokens_of(browser, rp, client, started, reply) -> dict:
    """The ID token claims after the RP got its redirect (verified with joserfc)."""
    location = reply.headers["location"]
    if location.startswith("/consent"):
        reply = await rp.consent(browser, location)
        location = reply.headers["location"]
    assert location.startswith(client.redirect_uri), location
    result = AuthResult.of(started, location)
    token_reply = await rp.exchange(browser, client, result)
    assert token_reply.status_code == 200, token_reply.text
    return await rp.verify(browser, token_reply.json()["id_token"])


async def user_with_phone(s, rp) -> tuple[str, str, str]:
    email, user_id = await rp.user()
    number = f"+35840{secrets.randbelow(10**7):07d}"

    async def add(db):
        await s.accounts.add_identifier(db, await s.accounts.get(db, user_id), "phone", number, verified=True)
    await s.db.run(add)
    return email, user_id, number


async def enrol_totp(s, user_id: str, email: str) -> pyotp.TOTP:
    async def work(db):
        enrolment = await s.factors.totp.enrol(db, user_id=user_id, account_name=email)
        totp = pyotp.TOTP(enrolment.secret)
        assert await s.factors.totp.confirm(db, user_id=user_id, factor_id=enrolment.factor_id, code=totp.now())
        return totp
    return await s.db.run(work)


def without_ids(page) -> str:
    """A page's body with what differs per flow (flow id, CSRF token) blanked."""
    text = page.text.replace(form_field(page.text, "flow"), "FLOW")
    return text.replace(form_field(page.text, "csrf_token"), "CSRF")


# ---- identifier first ----------------------------------------------------------------------------

async def test_identifier_then_password_signs_in_with_pwd(browser, rp):
    client = await rp.register()
    email, user_id = await rp.user()
    location, started = await start(browser, rp, client)
    reply = await identify(browser, location, email.upper())
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/password?flow=")
    page = await browser.get(reply.headers["location"])
    assert 'autocomplete="current-password"' in page.text and "Email me a code instead" in page.text
    reply = await browser.post("/login/password", data=fields(page, password=PASSWORD))
    claims = await tokens_of(browser, rp, client, started, reply)
    assert claims["sub"] == user_id and claims["amr"] == ["pwd"] and claims["acr"] == ONE_FACTOR


async def test_unknown_and_known_accounts_walk_identical_pages_and_fail_identically(browser, rp):
    client = await rp.register()
    email, _ = await rp.user()
    unknown = f"nobody-{secrets.token_hex(4)}@example.com"
    pages, failures = [], []
    for login in (email, unknown):
        location, _ = await start(browser, rp, client)
        reply = await identify(browser, location, login)
        assert reply.status_code == 303 and reply.headers["location"].startswith("/login/password?flow=")
        page = await browser.get(reply.headers["location"])
        pages.append(without_ids(page).replace(login, "LOGIN"))
        failed = await browser.post("/login/password", data=fields(page, password="wrong password here"))
        failures.append((failed.status_code, without_ids(failed).replace(login, "LOGIN")))
    assert pages[0] == pages[1]
    assert failures[0] == failures[1] and failures[0][0] == 401
    assert "Incorrect email, phone number or password." in failures[0][1]


async def test_the_one_form_login_answers_unknown_and_wrong_alike(browser, rp):
    client = await rp.register()
    email, _ = await rp.user()
    replies = []
    for login in (email, f"nobody-{secrets.token_hex(4)}@example.com"):
        location, _ = await start(browser, rp, client)
        reply = await post_on(browser, location, "/login", username=login, password="wrong password here")
        replies.append((reply.status_code, without_ids(reply).replace(login, "LOGIN")))
    assert replies[0] == replies[1] and replies[0][0] == 401


async def test_not_you_goes_back_to_the_identifier(browser, rp):
    client = await rp.register()
    email, user_id = await rp.user()
    location, started = await start(browser, rp, client)
    reply = await identify(browser, location, "someone-else@example.com")
    page = await browser.get(reply.headers["location"])
    assert f'href="{location}"' in page.text  # "Not you?"
    reply = await identify(browser, location, email)
    reply = await post_on(browser, reply.headers["location"], "/login/password", password=PASSWORD)
    assert (await tokens_of(browser, rp, client, started, reply))["sub"] == user_id


# ---- codes instead of a password -----------------------------------------------------------------

async def test_phone_login_by_sms_code(browser, rp, s, gateway):
    client = await rp.register()
    _, user_id, number = await user_with_phone(s, rp)
    location, started = await start(browser, rp, client)
    national = "0" + number.removeprefix("+358")  # typed in national form
    reply = await identify(browser, location, national)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/code?flow=")
    code_location = reply.headers["location"]
    reply = await post_on(browser, code_location, "/login/code", code=await texted_code(gateway, number))
    claims = await tokens_of(browser, rp, client, started, reply)
    assert claims["sub"] == user_id and claims["amr"] == ["sms"] and claims["acr"] == ONE_FACTOR


async def test_an_unknown_phone_gets_the_same_code_page_and_no_sms(browser, rp, s, gateway):
    client = await rp.register()
    _, _, number = await user_with_phone(s, rp)
    unknown = f"+35850{secrets.randbelow(10**7):07d}"
    bodies = []
    for login in (number, unknown):
        location, _ = await start(browser, rp, client)
        reply = await identify(browser, location, login)
        assert reply.status_code == 303 and reply.headers["location"].startswith("/login/code?flow=")
        page = await browser.get(reply.headers["location"])
        bodies.append(without_ids(page).replace(login, "LOGIN"))
        refused = await browser.post("/login/code", data=fields(page, code="123456"))
        assert refused.status_code == 400 and "The code is not valid" in refused.text
    assert bodies[0] == bodies[1]
    await texted_code(gateway, number)
    assert gateway.to(unknown) == []


async def test_email_code_instead_of_the_password(browser, rp, s, smtp):
    client = await rp.register()
    email, user_id = await rp.user()
    location, started = await start(browser, rp, client)
    reply = await identify(browser, location, email)
    reply = await post_on(browser, reply.headers["location"], "/login/password", action="code")
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/code?flow=")
    reply = await post_on(browser, reply.headers["location"], "/login/code", code=await emailed_code(smtp, email))
    claims = await tokens_of(browser, rp, client, started, reply)
    assert claims["sub"] == user_id and claims["amr"] == ["otp"]


async def test_five_wrong_login_codes_burn_the_code(browser, rp, s, gateway):
    client = await rp.register()
    _, _, number = await user_with_phone(s, rp)
    location, _ = await start(browser, rp, client)
    code_location = (await identify(browser, location, number)).headers["location"]
    code = await texted_code(gateway, number)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        reply = await post_on(browser, code_location, "/login/code", code=wrong)
        assert reply.status_code == 400
    reply = await post_on(browser, code_location, "/login/code", code=code)
    assert reply.status_code == 400 and "The code is not valid" in reply.text


async def test_a_login_code_posted_ten_times_in_parallel_signs_in_once(browser, rp, s, gateway):
    client = await rp.register()
    _, _, number = await user_with_phone(s, rp)
    location, _ = await start(browser, rp, client)
    code_location = (await identify(browser, location, number)).headers["location"]
    page = await browser.get(code_location)
    data = fields(page, code=await texted_code(gateway, number))
    replies = await asyncio.gather(*(browser.post("/login/code", data=data) for _ in range(10)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(303) == 1 and all(code in (303, 400) for code in statuses), statuses


# ---- second factors ------------------------------------------------------------------------------

async def test_totp_second_factor_with_mfa_in_the_id_token_and_no_replay(browser, rp, s):
    client = await rp.register()
    email, user_id = await rp.user()
    totp = await enrol_totp(s, user_id, email)
    location, started = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=email, password=PASSWORD)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/factor?flow=")
    assert "idp_session" not in reply.headers.get("set-cookie", "")  # no session before the factor
    factor_location = reply.headers["location"]
    wrong = await post_on(browser, factor_location, "/login/factor", answer="000000" if totp.now() != "000000" else "111111")
    assert wrong.status_code == 400 and "The code is not valid" in wrong.text
    # Used once at enrolment already: the next step's code (within the window) signs in.
    code = totp.at(int(time.time()) + 30)
    reply = await post_on(browser, factor_location, "/login/factor", answer=code)
    claims = await tokens_of(browser, rp, client, started, reply)
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == MFA

    # The same code again, in a new sign-in, is refused (RFC 6238 §5.2).
    async with rp.browser() as other:
        location, _ = await start(other, rp, client)
        reply = await post_on(other, location, "/login", username=email, password=PASSWORD)
        replay = await post_on(other, reply.headers["location"], "/login/factor", answer=code)
        assert replay.status_code == 400


async def test_recovery_code_instead_of_the_app_works_once(browser, rp, s):
    client = await rp.register()
    email, user_id = await rp.user()
    await enrol_totp(s, user_id, email)
    codes = await s.db.run(lambda db: s.factors.recovery.generate(db, user_id))
    location, started = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=email, password=PASSWORD)
    factor_location = reply.headers["location"]
    page = await browser.get(factor_location)
    assert "Use a recovery code" in page.text
    reply = await browser.post("/login/factor", data=fields(page, use="recovery"))
    reply = await post_on(browser, reply.headers["location"], "/login/factor", answer=codes[0].upper())
    claims = await tokens_of(browser, rp, client, started, reply)
    assert claims["amr"] == ["pwd", "otp", "mfa"]

    async with rp.browser() as other:
        location, _ = await start(other, rp, client)
        reply = await post_on(other, location, "/login", username=email, password=PASSWORD)
        page = await other.get(reply.headers["location"])
        reply = await other.post("/login/factor", data=fields(page, use="recovery"))
        again = await post_on(other, reply.headers["location"], "/login/factor", answer=codes[0])
        assert again.status_code == 400


async def test_sms_code_as_the_second_factor(browser, rp, s, gateway):
    client = await rp.register()
    _, user_id, number = await user_with_phone(s, rp)

    async def choose_sms(db):
        (await s.accounts.get(db, user_id)).code_second_factor = "sms"
    await s.db.run(choose_sms)
    email = (await s.db.run(lambda db: s.accounts.get(db, user_id))).email
    location, started = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=email, password=PASSWORD)
    assert reply.headers["location"].startswith("/login/factor?flow=")
    reply = await post_on(browser, reply.headers["location"], "/login/factor",
                          answer=await texted_code(gateway, number))
    claims = await tokens_of(browser, rp, client, started, reply)
    assert claims["amr"] == ["pwd", "sms", "mfa"] and claims["acr"] == MFA


async def test_an_sms_sign_in_asks_for_the_app_not_a_second_sms(browser, rp, s, gateway):
    client = await rp.register()
    email, user_id, number = await user_with_phone(s, rp)
    totp = await enrol_totp(s, user_id, email)
    location, started = await start(browser, rp, client)
    code_location = (await identify(browser, location, number)).headers["location"]
    reply = await post_on(browser, code_location, "/login/code", code=await texted_code(gateway, number))
    assert reply.headers["location"].startswith("/login/factor?flow=")
    page = await browser.get(reply.headers["location"])
    assert "authenticator app" in page.text and "Text me a code" not in page.text
    reply = await browser.post("/login/factor", data=fields(page, answer=totp.at(int(time.time()) + 30)))
    claims = await tokens_of(browser, rp, client, started, reply)
    assert claims["amr"] == ["sms", "otp", "mfa"]


# ---- step-up -------------------------------------------------------------------------------------

async def test_acr_values_mfa_steps_up_a_password_session_with_an_email_code(browser, rp, s, smtp):
    client = await rp.register()
    email, user_id = await rp.user()
    first = await rp.sign_in(browser, client, email)
    assert first.params["code"]
    # The same browser, now asked for a second factor: no password again, a code by email.
    location_reply = await rp.authorize(browser, client, acr_values=MFA)
    assert location_reply.status_code == 303
    assert location_reply.headers["location"].startswith("/login/factor?flow=")
    code = await emailed_code(smtp, email)
    reply = await post_on(browser, location_reply.headers["location"], "/login/factor", answer=code)
    claims = await tokens_of(browser, rp, client, location_reply, reply)
    assert claims["sub"] == user_id and claims["acr"] == MFA and claims["amr"] == ["pwd", "otp", "mfa"]
    # Now the session has it: the next request with acr_values gets a code at once.
    again = await rp.authorize(browser, client, acr_values=MFA)
    assert again.headers["location"].startswith(client.redirect_uri)


async def test_acr_values_mfa_on_a_fresh_login_asks_the_app(browser, rp, s):
    client = await rp.register()
    email, user_id = await rp.user()
    totp = await enrol_totp(s, user_id, email)
    location, started = await start(browser, rp, client, acr_values=f"{MFA}")
    reply = await post_on(browser, location, "/login", username=email, password=PASSWORD)
    assert reply.headers["location"].startswith("/login/factor?flow=")
    reply = await post_on(browser, reply.headers["location"], "/login/factor",
                          answer=totp.at(int(time.time()) + 30))
    assert (await tokens_of(browser, rp, client, started, reply))["acr"] == MFA


async def test_discovery_lists_the_acr_values(browser, rp):
    assert (await rp.discovery(browser))["acr_values_supported"] == [ONE_FACTOR, MFA]


# ---- policy switches and limits ------------------------------------------------------------------

@pytest.fixture(scope="module")
async def strict_app(settings, smtp, gateway):
    """The shipped limits (not the suite's relaxed per-IP ones), SMS resends 1 s apart, and
    email sign-in codes switched off."""
    from idp.app import create_app
    from tests.mail_sms import WEBHOOK_SECRET

    application = create_app(settings.model_copy(update={
        "rate_limits": {"sms_per_number": "10/hour", "login_per_account": "3/minute",
                        "sms_per_prefix": "100/minute", "sms_per_ip": "100/minute"},
        "sms_resend_delays": (1,), "otp_resend_cooldown": 0, "login_code_email": False,
        "email_provider": "smtp", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
        "smtp_starttls": False, "sms_provider": "webhook", "sms_webhook_url": f"{gateway.url}/webhook",
        "sms_webhook_secret": WEBHOOK_SECRET, "courier_in_process": True, "courier_poll_seconds": 0.05,
    }))
    async with application.router.lifespan_context(application):
        yield application


async def test_the_eleventh_sms_to_one_number_gets_429_with_retry_after(strict_app, gateway):
    strict = RelyingParty(strict_app, strict_app.state.services)
    client = await strict.register()
    number = f"+35841{secrets.randbelow(10**7):07d}"  # unknown: limits count every valid number
    async with strict.browser() as browser:
        for attempt in range(11):
            location, _ = await start(browser, strict, client)
            reply = await identify(browser, location, number)
            if attempt < 10:
                assert reply.status_code == 303, (attempt, reply.text)
                await asyncio.sleep(1.05)  # the shortest resend delay
        assert reply.status_code == 429 and int(reply.headers["retry-after"]) > 0
        assert "Too many attempts" in reply.text


async def test_a_number_outside_the_allowed_countries_gets_no_sms(browser, rp, s, gateway):
    client = await rp.register()
    _, user_id = await rp.user()
    number = "+12025550143"  # a US number: not in the EU/EEA allow-list, though verified here

    async def add_us_number(db):
        await s.accounts.add_identifier(db, await s.accounts.get(db, user_id), "phone", number, verified=True)
    await s.db.run(add_us_number)
    queued = lambda: s.db.run(lambda db: db.scalar(select(func.count()).select_from(CourierMessage)
                                                   .where(CourierMessage.channel == "sms")))
    before = await queued()
    location, _ = await start(browser, rp, client)
    reply = await identify(browser, location, number)
    # The same code page as for any number, and nothing queued for the gateway.
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/code?flow=")
    assert await queued() == before
    assert gateway.to(number) == []


async def test_wrong_passwords_for_one_account_are_slowed_down(strict_app):
    strict = RelyingParty(strict_app, strict_app.state.services)
    client = await strict.register()
    email, _ = await strict.user()
    async with strict.browser() as browser:
        statuses = []
        for _ in range(4):
            location, _ = await start(browser, strict, client)
            reply = await post_on(browser, location, "/login", username=email, password="wrong password here")
            statuses.append(reply.status_code)
        assert statuses == [401, 401, 401, 429] and int(reply.headers["retry-after"]) > 0


async def test_email_code_sign_in_switched_off(strict_app):
    strict = RelyingParty(strict_app, strict_app.state.services)
    client = await strict.register()
    email, _ = await strict.user()
    async with strict.browser() as browser:
        location, _ = await start(browser, strict, client)
        reply = await identify(browser, location, email)
        page = await browser.get(reply.headers["location"])
        assert "code instead" not in page.text
        refused = await browser.post("/login/password", data=fields(page, action="code"))
        assert refused.status_code == 400
        assert re.search(r"not available", refused.text)


async def test_steps_refuse_forms_without_csrf_and_flows_in_another_state(browser, rp):
    client = await rp.register()
    email, _ = await rp.user()
    location, _ = await start(browser, rp, client)
    flow = location.split("flow=")[1]
    assert (await browser.post("/login/password", data={"flow": flow, "password": PASSWORD})).status_code == 403
    page = await browser.get(location)
    wrong_state = await browser.post("/login/factor", data=fields(page, answer="123456"))
    assert wrong_state.status_code == 400 and "already done" in wrong_state.text


# ---- temporary passwords -------------------------------------------------------------------------

async def test_a_temporary_password_forces_a_new_one_before_anything_else(browser, rp, s, smtp):
    client = await rp.register()
    email, user_id = await rp.user()

    async def set_temporary(db):
        return await s.temporary_passwords.set(db, await s.accounts.get(db, user_id), via="email")
    await s.db.run(set_temporary)
    mail = (await mail_to(smtp, email))[-1]
    temporary = re.search(r"^\s+(\S.*\S)\s*$", smtp.body(mail), re.MULTILINE).group(1)
    secrets_registry.remember(temporary)

    location, started = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=email, password=temporary)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/new-password?flow=")
    assert "idp_session" not in reply.headers.get("set-cookie", "")  # nothing before the change
    change = reply.headers["location"]
    same = await post_on(browser, change, "/login/new-password", password=temporary)
    assert same.status_code == 400 and "not the temporary one" in same.text
    weak = await post_on(browser, change, "/login/new-password", password="short")
    assert weak.status_code == 400 and "at least 15 characters" in weak.text
    reply = await post_on(browser, change, "/login/new-password", password="my very own passphrase")
    claims = await tokens_of(browser, rp, client, started, reply)
    assert claims["sub"] == user_id and claims["amr"] == ["pwd"]
    user = await s.db.run(lambda db: s.accounts.get(db, user_id))
    assert not user.password_must_change and user.password_expires_at is None
    # The temporary one is gone; the new one works through the one-form login.
    async with rp.browser() as other:
        location, _ = await start(other, rp, client)
        assert (await post_on(other, location, "/login", username=email, password=temporary)).status_code == 401
        assert (await post_on(other, location, "/login", username=email,
                              password="my very own passphrase")).status_code == 303


async def test_an_expired_temporary_password_fails_like_a_wrong_one(browser, rp, s, smtp):
    client = await rp.register()
    email, user_id = await rp.user()

    async def set_expired(db):
        user = await s.accounts.get(db, user_id)
        password = await s.temporary_passwords.set(db, user, via="email")
        user.password_expires_at = utcnow() - timedelta(seconds=1)
        return password
    temporary = await s.db.run(set_expired)
    secrets_registry.remember(temporary)
    location, _ = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=email, password=temporary)
    assert reply.status_code == 401 and "Incorrect email, phone number or password." in reply.text


# ---- what the security review found ----------------------------------------------------------------

async def test_a_new_temporary_password_ends_a_sign_in_parked_at_the_change_step(browser, rp, s, smtp):
    client = await rp.register()
    email, user_id = await rp.user()

    async def set_temporary(db):
        return await s.temporary_passwords.set(db, await s.accounts.get(db, user_id), via="email")
    first = await s.db.run(set_temporary)
    location, _ = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=email, password=first)
    parked = reply.headers["location"]
    assert parked.startswith("/login/new-password?flow=")
    page = await browser.get(parked)
    await s.db.run(set_temporary)  # the administrator issues another one
    late = await browser.post("/login/new-password", data=fields(page, password="the intruder's passphrase"))
    assert late.status_code == 400 and "expired" in late.text
    user = await s.db.run(lambda db: s.accounts.get(db, user_id))
    assert user.password_must_change


async def test_a_reset_meanwhile_makes_the_change_step_expire_not_fail(browser, rp, s):
    client = await rp.register()
    email, user_id = await rp.user()
    temporary = await s.db.run(lambda db: _set_temporary(s, db, user_id))
    location, _ = await start(browser, rp, client)
    parked = (await post_on(browser, location, "/login", username=email, password=temporary)).headers["location"]
    page = await browser.get(parked)

    async def changed_elsewhere(db):  # as a password reset in another tab does
        user = await s.accounts.get(db, user_id)
        user.password_must_change, user.password_expires_at = False, None
    await s.db.run(changed_elsewhere)
    reply = await browser.post("/login/new-password", data=fields(page, password="my very own passphrase"))
    assert reply.status_code == 400 and "expired" in reply.text


async def _set_temporary(s, db, user_id):
    return await s.temporary_passwords.set(db, await s.accounts.get(db, user_id), via="email")


async def test_an_email_code_and_an_app_code_are_two_factors(browser, rp, s, smtp):
    client = await rp.register()
    email, user_id = await rp.user()
    totp = await enrol_totp(s, user_id, email)
    location, started = await start(browser, rp, client, acr_values=MFA)
    reply = await identify(browser, location, email)
    reply = await post_on(browser, reply.headers["location"], "/login/password", action="code")
    reply = await post_on(browser, reply.headers["location"], "/login/code", code=await emailed_code(smtp, email))
    assert reply.headers["location"].startswith("/login/factor?flow=")
    reply = await post_on(browser, reply.headers["location"], "/login/factor", answer=totp.at(int(time.time()) + 30))
    claims = await tokens_of(browser, rp, client, started, reply)
    assert claims["amr"] == ["otp", "mfa"] and claims["acr"] == MFA
    # The session remembers it: asking again for MFA is answered at once.
    again = await rp.authorize(browser, client, acr_values=MFA)
    assert again.headers["location"].startswith(client.redirect_uri)


async def test_prompt_none_cannot_step_up(browser, rp):
    client = await rp.register()
    email, _ = await rp.user()
    await rp.sign_in(browser, client, email)
    reply = await rp.authorize(browser, client, acr_values=MFA, prompt="none")
    assert reply.status_code == 302
    assert query_of(reply.headers["location"])["error"] == "interaction_required"


async def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out(strict_app):
    import httpx

    strict = RelyingParty(strict_app, strict_app.state.services)
    client = await strict.register()
    email, _ = await strict.user()

    def browser_at(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=strict_app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://idp.test")

    async with browser_at("203.0.113.7") as attacker, browser_at("198.51.100.20") as owner:
        for _ in range(4):
            location, _ = await start(attacker, strict, client)
            reply = await post_on(attacker, location, "/login", username=email, password="wrong password here")
        assert reply.status_code == 429
        location, _ = await start(owner, strict, client)
        reply = await post_on(owner, location, "/login", username=email, password=PASSWORD)
        assert reply.status_code == 303 and reply.headers["location"].startswith(client.redirect_uri)


async def test_a_sign_in_flow_belongs_to_the_browser_that_started_it(browser, rp):
    client = await rp.register()
    email, _ = await rp.user()
    location, _ = await start(browser, rp, client)
    async with rp.browser() as other:
        stolen = await other.get(location)
        assert stolen.status_code == 400 and "expired" in stolen.text
        await other.get("/reset")  # a CSRF cookie of its own; still not this flow's browser
        page = await browser.get(location)
        token = keyed_hash(rp.services.csrf_key, f"{other.cookies['idp_csrf']}|{form_field(page.text, 'flow')}")
        reply = await other.post("/login", data={"flow": form_field(page.text, "flow"), "csrf_token": token,
                                                 "username": email, "password": PASSWORD})
        assert reply.status_code == 400 and "idp_session" not in reply.headers.get("set-cookie", "")


async def test_a_verified_landline_is_not_offered_a_text_message(browser, rp, s, smtp):
    client = await rp.register()
    email, user_id = await rp.user()

    async def add_landline(db):
        await s.accounts.add_identifier(db, await s.accounts.get(db, user_id), "phone", "+35891234567",
                                        verified=True)
    await s.db.run(add_landline)
    location, started = await start(browser, rp, client, acr_values=MFA)
    reply = await post_on(browser, location, "/login", username=email, password=PASSWORD)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/factor?flow=")
    page = await browser.get(reply.headers["location"])
    assert "Text me a code" not in page.text
    reply = await browser.post("/login/factor", data=fields(page, answer=await emailed_code(smtp, email)))
    assert (await tokens_of(browser, rp, client, started, reply))["acr"] == MFA


async def test_the_sms_budget_breaker_writes_an_audit_event(settings):
    from idp.app import create_app

    application = create_app(settings.model_copy(update={"sms_hourly_budget": 1, "sms_budget_window": 3600}))
    async with application.router.lifespan_context(application):
        tiny = RelyingParty(application, application.state.services)
        client = await tiny.register()
        async with tiny.browser() as browser:
            statuses = []
            for _ in range(2):
                location, _ = await start(browser, tiny, client)
                reply = await identify(browser, location, f"+35842{secrets.randbelow(10**7):07d}")
                statuses.append(reply.status_code)
        assert statuses == [303, 429]
        s = application.state.services
        for _ in range(100):  # written in a transaction of its own, right after the refusal
            events = await s.db.run(lambda db: s.audit.events(db, action="sms.budget_breaker_tripped"))
            if events:
                break
            await asyncio.sleep(0.05)
        assert events and events[0].actor_type == "system" and events[0].after["budget"] == 1
