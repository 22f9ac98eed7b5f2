"""Account self-service pages (ui/account.py, accounts/self_service.py) through real HTTP, with the
messages really sent: email to an in-process SMTP server, SMS to a local signed-webhook gateway.

Sign-in gate and return; profile; emails and phones added, confirmed by a code and removed under
the rules; password change (current one required, other sessions ended on request, a notice);
TOTP enrolment confirmed by a first code with recovery codes shown once and stored hashed; the
code second factor; sessions; the recent-login gate (an old sign-in changes nothing); CSRF.

Ageing a session (moving its auth_time back) is done in the database: waiting `reauth_seconds`
is the only alternative.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import timedelta

import httpx
import pyotp
import pytest
from sqlalchemy import select, update

from idp.accounts.models import Identifier, User
from idp.db import utcnow
from idp.flows.models import AuthorizationFlow
from idp.mfa.models import RecoveryCode, TotpFactor
from idp.oauth.models import Grant
from idp.sessions.models import BrowserSession
from tests.conftest import COURIER_POLL as POLL, ISSUER
from tests.mail_sms import emailed_code, mail_to, texted_code, until
from tests.rp import PASSWORD, RelyingParty
from tests.token_support import OFFLINE, assert_error, refresh

NEW_PASSWORD = "another long passphrase here"


@pytest.fixture(scope="module")
def account_app(delivering_app):
    return delivering_app


@pytest.fixture
def s(account_app):
    return account_app.state.services


@pytest.fixture
def rp(account_app, s) -> RelyingParty:
    return RelyingParty(account_app, s)


def new_browser(app) -> httpx.AsyncClient:
    # Each browser its own address, so the per-IP SMS limits of one test do not spill into another.
    ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url=ISSUER)


@pytest.fixture
async def browser(account_app):
    async with new_browser(account_app) as client:
        yield client


def fi_mobile() -> tuple[str, str]:
    rest = f"{secrets.randbelow(10**7):07d}"
    return f"040{rest}", f"+35840{rest}"


def csrf_for(html: str, action: str) -> str:
    match = re.search(rf'action="{re.escape(action)}"[^>]*>\s*<input type="hidden" name="csrf_token" '
                      rf'value="([^"]+)"', html)
    assert match, f"no form posting to {action}"
    return match.group(1)


async def submit(browser, page: str, action: str, **fields) -> httpx.Response:
    """GET `page`, then POST the form whose action is `action` with its CSRF token and `fields`."""
    shown = await browser.get(page)
    assert shown.status_code == 200, shown.text
    return await browser.post(action, data={"csrf_token": csrf_for(shown.text, action), **fields})


async def sign_in(rp, browser, email: str, *, page: str = "/account", password: str = PASSWORD) -> None:
    """Open an account page signed out: the gate sends the browser to sign in and back."""
    gate = await browser.get(page)
    assert gate.status_code == 303 and gate.headers["location"].startswith("/login?flow="), gate.text
    back = await rp.login(browser, gate.headers["location"], email, password)
    assert back.status_code == 303 and back.headers["location"] == page, back.text
    assert (await browser.get(page)).status_code == 200


async def signed_in(rp, browser) -> tuple[str, str]:
    email, user_id = await rp.user()
    await sign_in(rp, browser, email)
    return email, user_id


async def user_row(s, user_id: str) -> User:
    return await s.db.run(lambda db: db.get(User, user_id))


async def identifiers_of(s, user_id: str) -> dict[str, bool]:
    rows = await s.db.run(lambda db: db.execute(select(Identifier.value, Identifier.verified)
                                                .where(Identifier.user_id == user_id)))
    return dict(rows.all())


async def age_sessions(s, user_id: str, seconds: int = 3600) -> None:
    """Every live session of the account signed in `seconds` ago (beyond reauth_seconds)."""
    await s.db.run(lambda db: db.execute(update(BrowserSession).where(
        BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None),
    ).values(auth_time=utcnow() - timedelta(seconds=seconds))))


async def live_sessions(s, user_id: str) -> set[str]:
    rows = await s.db.run(lambda db: db.execute(select(BrowserSession.id).where(
        BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None))))
    return set(rows.scalars())


async def assert_reauth(s, reply: httpx.Response, return_to: str) -> None:
    """A 303 to a sign-in that must be fresh (max_age=0) and comes back to `return_to`."""
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?flow="), reply.text
    flow_id = reply.headers["location"].split("flow=")[1]
    flow = await s.db.run(lambda db: db.get(AuthorizationFlow, flow_id))
    assert flow.client_id is None
    assert flow.request["max_age"] == 0 and flow.request["redirect_uri"] == return_to


async def add_email(s, smtp, browser, address: str) -> httpx.Response:
    reply = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="email", value=address)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/account/identifiers/confirm?id=")
    return await submit(browser, reply.headers["location"], "/account/identifiers/confirm",
                        id=reply.headers["location"].split("id=")[1], code=await emailed_code(smtp, address))


# ---- the sign-in gate ----------------------------------------------------------------------------

async def test_pages_ask_for_a_sign_in_and_come_back(browser, rp, s):
    email, user_id = await rp.user()
    for page in ("/account", "/account/identifiers", "/account/password", "/account/security",
                 "/account/sessions"):
        reply = await browser.get(page)
        assert reply.status_code == 303 and reply.headers["location"].startswith("/login?flow=")
        flow = await s.db.run(lambda db: db.get(AuthorizationFlow, reply.headers["location"].split("flow=")[1]))
        assert flow.client_id is None and flow.request["redirect_uri"] == page
    # A form posted without a session changes nothing and asks for a sign-in too.
    refused = await browser.post("/account", data={"given_name": "Eve"})
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login?flow=")

    await sign_in(rp, browser, email, page="/account/security")
    page = await browser.get("/account")
    assert page.status_code == 200 and 'aria-current="page"' in page.text
    assert 'href="/account/sessions"' in page.text  # the shared navigation
    assert (await user_row(s, user_id)).given_name == "Maija"


# ---- profile -------------------------------------------------------------------------------------

async def test_the_profile_is_saved_and_bad_input_changes_nothing(browser, rp, s):
    _, user_id = await signed_in(rp, browser)
    reply = await submit(browser, "/account", "/account", given_name=" Matti ", family_name="Virtanen",
                         name="", locale="fi")
    assert reply.status_code == 303 and reply.headers["location"] == "/account?done=profile"
    user = await user_row(s, user_id)
    assert (user.given_name, user.family_name, user.name, user.locale) == ("Matti", "Virtanen", "Matti Virtanen", "fi")
    page = await browser.get("/account?done=profile")
    assert 'value="Matti"' in page.text and 'role="status"' in page.text

    for fields, message in (({"given_name": "Ma\x00tti"}, "Names must be at most 100 characters"),
                            ({"name": "x" * 201}, "Names must be at most 200 characters"),
                            ({"locale": "xx"}, "Choose a language from the list."),
                            ({"locale": "../../etc"}, "Choose a language from the list."),
                            ({"family_name": "Vir\ntanen"}, "Names must be at most 100 characters")):
        refused = await submit(browser, "/account", "/account", **({"given_name": "Eve", "family_name": "",
                                                                    "name": "", "locale": ""} | fields))
        assert refused.status_code == 400 and 'role="alert"' in refused.text and message in refused.text, fields
    assert (await user_row(s, user_id)).given_name == "Matti"


# ---- identifiers ---------------------------------------------------------------------------------

async def test_an_email_is_added_confirmed_by_its_code_and_the_owner_is_told(browser, rp, s, smtp):
    email, user_id = await signed_in(rp, browser)
    second = f"second-{secrets.token_hex(4)}@example.com"
    reply = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="email",
                         value=second.upper())
    assert reply.status_code == 303
    confirm = reply.headers["location"]
    assert (await identifiers_of(s, user_id))[second] is False  # stored lower-cased, not yet verified
    code = await emailed_code(smtp, second)

    wrong = await submit(browser, confirm, "/account/identifiers/confirm", id=confirm.split("id=")[1],
                         code=f"{(int(code) + 1) % 1_000_000:06d}")
    assert wrong.status_code == 400 and "The code is not valid" in wrong.text
    done = await submit(browser, confirm, "/account/identifiers/confirm", id=confirm.split("id=")[1], code=code)
    assert done.status_code == 303 and done.headers["location"] == "/account/identifiers?done=verified"
    assert (await identifiers_of(s, user_id))[second] is True
    assert (await user_row(s, user_id)).email == email  # the main email stays
    notice = (await mail_to(smtp, email))[0]
    assert notice["Subject"] == "A contact detail was added to your account"
    # The confirmed address now signs in.
    async with new_browser(rp.app) as other:
        await sign_in(rp, other, second)
    # The confirm page of a confirmed address is gone.
    gone = await browser.get(confirm)
    assert gone.status_code == 400 and "This is already on your account." in gone.text


async def test_an_email_confirmed_on_another_account_is_refused_at_confirmation(browser, rp, s, smtp):
    owner_email, owner_id = await rp.user()
    _, user_id = await signed_in(rp, browser)
    # Adding says nothing about the other account: a code goes out as for any address.
    reply = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="email",
                         value=owner_email)
    assert reply.status_code == 303
    confirm = reply.headers["location"]
    taken = await submit(browser, confirm, "/account/identifiers/confirm", id=confirm.split("id=")[1],
                         code=await emailed_code(smtp, owner_email))
    assert taken.status_code == 409 and "already in use by another account" in taken.text
    assert (await identifiers_of(s, user_id))[owner_email] is False
    assert (await identifiers_of(s, owner_id))[owner_email] is True


async def test_a_phone_is_added_and_confirmed_by_sms(browser, rp, s, smtp, gateway):
    email, user_id = await signed_in(rp, browser)
    national, e164 = fi_mobile()
    reply = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="phone", value=national)
    assert reply.status_code == 303
    confirm = reply.headers["location"]
    done = await submit(browser, confirm, "/account/identifiers/confirm", id=confirm.split("id=")[1],
                        code=await texted_code(gateway, e164))
    assert done.status_code == 303
    assert (await identifiers_of(s, user_id))[e164] is True
    assert (await mail_to(smtp, email))[0]["Subject"] == "A contact detail was added to your account"
    # Typed again in international form, it is the same number.
    again = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="phone",
                         value=f"+358 {e164[4:6]} {e164[6:9]} {e164[9:]}")
    assert again.status_code == 400 and "already on your account" in again.text


async def test_a_number_outside_the_allowed_countries_is_refused_before_the_gateway(browser, rp, s, gateway):
    _, user_id = await signed_in(rp, browser)
    before = gateway.requests
    for typed in ("+232 76 123456", "+1 202 555 0143", "not a number", "0912345678"):  # last: a landline
        refused = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="phone", value=typed)
        assert refused.status_code == 400 and 'role="alert"' in refused.text, typed
    refused = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="email", value="nobody")
    assert refused.status_code == 400 and "valid email" in refused.text
    assert len(await identifiers_of(s, user_id)) == 1
    await asyncio.sleep(10 * POLL)
    assert gateway.requests == before


async def test_too_many_sms_for_one_account_answer_429_and_add_nothing(browser, rp, s, gateway):
    _, user_id = await signed_in(rp, browser)
    numbers = [fi_mobile()[1] for _ in range(4)]
    for number in numbers[:3]:
        reply = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="phone", value=number)
        assert reply.status_code == 303
    refused = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="phone", value=numbers[3])
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert numbers[3] not in await identifiers_of(s, user_id)
    await until(lambda: all(gateway.to(n) for n in numbers[:3]))
    assert gateway.to(numbers[3]) == []
    # "Send a new code" right away waits for the cooldown.
    confirm = f"/account/identifiers/confirm?id={(await s.db.run(lambda db: db.execute(select(Identifier.id).where(Identifier.user_id == user_id, Identifier.value == numbers[0])))).scalar_one()}"
    resend = await submit(browser, confirm, "/account/identifiers/resend", id=confirm.split("id=")[1])
    assert resend.status_code == 429 and int(resend.headers["retry-after"]) > 0
    assert "Wait a little" in resend.text and len(gateway.to(numbers[0])) == 1


async def test_removing_identifiers_follows_the_rules(browser, rp, s, smtp):
    email, user_id = await signed_in(rp, browser)
    ids = lambda: s.db.run(lambda db: db.execute(select(Identifier.value, Identifier.id).where(
        Identifier.user_id == user_id)))
    [(_, primary_id)] = (await ids()).all()
    # The only sign-in identifier stays.
    refused = await submit(browser, "/account/identifiers", "/account/identifiers/remove", id=primary_id)
    assert refused.status_code == 400 and "only email address or phone number" in refused.text

    second = f"second-{secrets.token_hex(4)}@example.com"
    assert (await add_email(s, smtp, browser, second)).status_code == 303
    # A pending address is cancelled without ceremony, even by an old sign-in.
    typo = f"typo-{secrets.token_hex(4)}@example.com"
    pending = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="email", value=typo)
    pending_id = pending.headers["location"].split("id=")[1]
    await age_sessions(s, user_id)
    assert (await submit(browser, "/account/identifiers", "/account/identifiers/remove", id=pending_id)).status_code == 303
    assert typo not in await identifiers_of(s, user_id)
    # A verified one needs a recent sign-in: nothing changes.
    old = await submit(browser, "/account/identifiers", "/account/identifiers/remove", id=primary_id)
    await assert_reauth(s, old, "/account/identifiers")
    assert email in await identifiers_of(s, user_id)

    # Fresh again: the main email goes, the other confirmed email becomes the main one.
    await age_sessions(s, user_id, seconds=0)
    done = await submit(browser, "/account/identifiers", "/account/identifiers/remove", id=primary_id)
    assert done.status_code == 303 and done.headers["location"] == "/account/identifiers?done=removed"
    assert set(await identifiers_of(s, user_id)) == {second}
    user = await user_row(s, user_id)
    assert (user.email, user.email_verified) == (second, True)
    # Both addresses hear of it: the removed one (it may not have been its owner) and the main one.
    assert (await mail_to(smtp, email, 2))[1]["Subject"] == "A contact detail was removed from your account"
    subjects = [m["Subject"] for m in await mail_to(smtp, second, 2)]
    assert "A contact detail was removed from your account" in subjects
    # Another account's identifier is not ours to remove.
    _, other_id = await rp.user()
    other_identifier = (await s.db.run(lambda db: db.execute(select(Identifier.id).where(
        Identifier.user_id == other_id)))).scalar_one()
    refused = await submit(browser, "/account/identifiers", "/account/identifiers/remove", id=other_identifier)
    assert refused.status_code == 404
    assert len(await identifiers_of(s, other_id)) == 1


# ---- password ------------------------------------------------------------------------------------

async def test_changing_the_password_needs_the_current_one_and_can_end_other_sessions(browser, rp, s, smtp):
    client = await rp.register()
    email, user_id = await signed_in(rp, browser)
    hash_before = (await user_row(s, user_id)).password_hash
    # Another browser: a session and an app's refresh token from it.
    async with rp.browser() as other, new_browser(rp.app) as third:
        result = await rp.sign_in(other, client, email, scope=OFFLINE)
        tokens = await rp.exchange(other, client, result)
        assert tokens.status_code == 200, tokens.text
        await sign_in(rp, third, email)

        wrong = await submit(browser, "/account/password", "/account/password", current_password="not it",
                             new_password=NEW_PASSWORD, end_other_sessions="yes")
        assert wrong.status_code == 400 and "current password is not correct" in wrong.text
        short = await submit(browser, "/account/password", "/account/password", current_password=PASSWORD,
                             new_password="short")
        assert short.status_code == 400 and "at least 15 characters" in short.text
        assert (await user_row(s, user_id)).password_hash == hash_before
        assert len(await live_sessions(s, user_id)) == 3

        # Without the option, the other sessions stay.
        kept = await submit(browser, "/account/password", "/account/password", current_password=PASSWORD,
                            new_password=NEW_PASSWORD)
        assert kept.status_code == 303 and kept.headers["location"] == "/account/password?done=password"
        assert len(await live_sessions(s, user_id)) == 3
        assert (await mail_to(smtp, email))[0]["Subject"] == "Your password was changed"

        done = await submit(browser, "/account/password", "/account/password", current_password=NEW_PASSWORD,
                            new_password=PASSWORD + " again", end_other_sessions="yes")
        assert done.status_code == 303 and done.headers["location"] == "/account/password?done=password_others"
        assert (await browser.get("/account")).status_code == 200  # this browser stays signed in
        assert len(await live_sessions(s, user_id)) == 1
        gate = await third.get("/account")
        assert gate.status_code == 303 and gate.headers["location"].startswith("/login?flow=")
        assert_error(await refresh(other, rp, client, tokens.json()["refresh_token"]), 400, "invalid_grant")
        await mail_to(smtp, email, 2)
    # The new password signs in; the old one no longer does.
    async with new_browser(rp.app) as later:
        gate = await later.get("/account")
        assert (await rp.login(later, gate.headers["location"], email, NEW_PASSWORD)).status_code == 401
        await sign_in(rp, later, email, password=PASSWORD + " again")


async def test_an_account_without_a_password_sets_one_after_a_recent_sign_in(browser, rp, s, gateway):
    _, e164 = fi_mobile()

    async def phone_only(db):
        user = User(email=None, email_verified=False, name="Pekka")
        db.add(user)
        await db.flush()
        await s.accounts.add_identifier(db, user, "phone", e164, verified=True)
        session, cookie = await s.sessions.start(db, user_id=user.id, amr=["sms"], acr=None)
        return user.id, cookie
    # Signed in by an SMS code (that sign-in step is not these pages'): a session as it leaves.
    user_id, cookie = await s.db.run(phone_only)
    browser.cookies.set("idp_session", cookie, domain="idp.test")
    page = await browser.get("/account/password")
    assert page.status_code == 200 and "current_password" not in page.text
    await age_sessions(s, user_id)
    old = await submit(browser, "/account/password", "/account/password", new_password=NEW_PASSWORD)
    await assert_reauth(s, old, "/account/password")
    assert (await user_row(s, user_id)).password_hash is None
    await age_sessions(s, user_id, seconds=0)
    done = await submit(browser, "/account/password", "/account/password", new_password=NEW_PASSWORD)
    assert done.status_code == 303 and done.headers["location"] == "/account/password?done=password"
    assert (await user_row(s, user_id)).password_hash is not None
    # The notice goes to the verified phone (the account has no email).
    await until(lambda: any("password" in m["text"] for m in gateway.to(e164)))
    async with new_browser(rp.app) as later:
        await sign_in(rp, later, e164, password=NEW_PASSWORD)


# ---- second factors ------------------------------------------------------------------------------

async def enrol_totp(browser) -> tuple[httpx.Response, str]:
    """Start an enrolment; (the confirmation's answer, the secret shown) after a right first code."""
    started = await submit(browser, "/account/security", "/account/security/totp")
    assert started.status_code == 303 and started.headers["location"].startswith("/account/security/totp?factor=")
    page = await browser.get(started.headers["location"])
    assert page.status_code == 200 and "<svg" in page.text
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.text).group(1).replace(" ", "")
    factor = started.headers["location"].split("factor=")[1]
    wrong = await browser.post("/account/security/totp/confirm", data={
        "csrf_token": csrf_for(page.text, "/account/security/totp/confirm"), "factor": factor, "code": "000000"
        if pyotp.TOTP(secret).now() != "000000" else "111111"})
    assert wrong.status_code == 400 and "<svg" in wrong.text  # the same enrolment, shown again
    assert "Check the time on your phone" in wrong.text
    reply = await browser.post("/account/security/totp/confirm", data={
        "csrf_token": csrf_for(page.text, "/account/security/totp/confirm"), "factor": factor,
        "code": pyotp.TOTP(secret).now()})
    return reply, secret


async def test_totp_enrolment_shows_recovery_codes_once_and_stores_them_hashed(browser, rp, s, smtp):
    email, user_id = await signed_in(rp, browser)
    reply, secret = await enrol_totp(browser)
    assert reply.status_code == 200 and reply.headers["cache-control"] == "no-store"
    codes = re.findall(r"<code>([0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4})</code>", reply.text)
    assert len(codes) == s.settings.recovery_code_count == len(set(codes))
    factors = await s.db.run(lambda db: db.execute(select(TotpFactor).where(TotpFactor.user_id == user_id)))
    [factor] = factors.scalars().all()
    assert factor.confirmed_at is not None and secret.encode() not in factor.secret_sealed
    hashes = (await s.db.run(lambda db: db.execute(select(RecoveryCode.code_hash).where(
        RecoveryCode.user_id == user_id)))).scalars().all()
    assert len(hashes) == len(codes) and not set(codes) & set(hashes)
    assert not any(code.replace("-", "") in h for code in codes for h in hashes)
    # Never shown again: the security page only counts them.
    page = await browser.get("/account/security")
    assert not any(code in page.text for code in codes) and "Recovery codes left: 10" in page.text
    assert secret not in page.text
    assert (await mail_to(smtp, email))[0]["Subject"] == "A sign-in method was added to your account"
    # A shown code works once (the sign-in page uses the same service).
    async with s.db.transaction() as db:
        assert await s.factors.recovery.consume(db, user_id, codes[0])
        assert not await s.factors.recovery.consume(db, user_id, codes[0])

    # A second app: no new codes (the account has some). New codes on request replace the old set.
    second, _ = await enrol_totp(browser)
    assert second.status_code == 303 and second.headers["location"] == "/account/security?done=totp"
    fresh = await submit(browser, "/account/security", "/account/security/recovery-codes")
    assert fresh.status_code == 200
    new_codes = re.findall(r"<code>([0-9a-z-]{14})</code>", fresh.text)
    assert len(new_codes) == 10 and not set(new_codes) & set(codes)
    async with s.db.transaction() as db:
        assert not await s.factors.recovery.consume(db, user_id, codes[1])
        assert await s.factors.recovery.remaining(db, user_id) == 10
    # A confirmed factor's enrolment page is gone (its secret is never shown again).
    assert (await browser.get(f"/account/security/totp?factor={factor.id}")).status_code == 404


async def test_removing_a_factor_needs_a_recent_sign_in_and_notifies(browser, rp, s, smtp):
    email, user_id = await signed_in(rp, browser)
    reply, _ = await enrol_totp(browser)
    assert reply.status_code == 200
    factor_id = (await s.db.run(lambda db: db.execute(select(TotpFactor.id).where(
        TotpFactor.user_id == user_id)))).scalar_one()
    await age_sessions(s, user_id)
    old = await submit(browser, "/account/security", "/account/security/totp/remove", factor=factor_id)
    await assert_reauth(s, old, "/account/security")
    assert await s.db.run(lambda db: db.get(TotpFactor, factor_id)) is not None
    # Recovery codes and new enrolments wait for the fresh sign-in too.
    await assert_reauth(s, await submit(browser, "/account/security", "/account/security/recovery-codes"),
                        "/account/security")
    await assert_reauth(s, await submit(browser, "/account/security", "/account/security/totp"),
                        "/account/security")
    assert len((await s.db.run(lambda db: db.execute(select(TotpFactor.id).where(
        TotpFactor.user_id == user_id)))).all()) == 1

    await age_sessions(s, user_id, seconds=0)
    done = await submit(browser, "/account/security", "/account/security/totp/remove", factor=factor_id)
    assert done.status_code == 303 and done.headers["location"] == "/account/security?done=totp_removed"
    assert await s.db.run(lambda db: db.get(TotpFactor, factor_id)) is None
    # The last factor gone, its recovery codes go too.
    async with s.db.transaction() as db:
        assert await s.factors.recovery.remaining(db, user_id) == 0
        assert not await s.factors.has_second_factor(db, user_id)
    subjects = [m["Subject"] for m in await mail_to(smtp, email, 2)]
    assert subjects[-1] == "A sign-in method was removed from your account"
    assert 'action="/account/security/totp/remove"' not in (await browser.get("/account/security")).text


async def test_a_code_by_sms_or_email_as_second_factor(browser, rp, s, smtp, gateway):
    email, user_id = await signed_in(rp, browser)
    refused = await submit(browser, "/account/security", "/account/security/code", channel="sms")
    assert refused.status_code == 400 and "Add and confirm a phone number first." in refused.text
    assert (await user_row(s, user_id)).code_second_factor is None

    on = await submit(browser, "/account/security", "/account/security/code", channel="email")
    assert on.status_code == 303 and on.headers["location"] == "/account/security?done=code_factor"
    assert (await user_row(s, user_id)).code_second_factor == "email"
    assert (await mail_to(smtp, email))[0]["Subject"] == "A sign-in method was added to your account"
    # The address its codes go to cannot be removed while it is the only email... it is also the
    # only identifier; with a phone added it still cannot, the codes go there.
    _, e164 = fi_mobile()
    reply = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="phone", value=e164)
    confirm = reply.headers["location"]
    await submit(browser, confirm, "/account/identifiers/confirm", id=confirm.split("id=")[1],
                 code=await texted_code(gateway, e164))
    primary = (await s.db.run(lambda db: db.execute(select(Identifier.id).where(
        Identifier.user_id == user_id, Identifier.value == email)))).scalar_one()
    kept = await submit(browser, "/account/identifiers", "/account/identifiers/remove", id=primary)
    assert kept.status_code == 400 and "codes are sent here" in kept.text

    await age_sessions(s, user_id)
    old = await submit(browser, "/account/security", "/account/security/code", channel="off")
    await assert_reauth(s, old, "/account/security")
    assert (await user_row(s, user_id)).code_second_factor == "email"
    await age_sessions(s, user_id, seconds=0)
    off = await submit(browser, "/account/security", "/account/security/code", channel="off")
    assert off.status_code == 303
    assert (await user_row(s, user_id)).code_second_factor is None
    subjects = [m["Subject"] for m in await mail_to(smtp, email, 3)]
    assert subjects[-1] == "A sign-in method was removed from your account"
    sms_on = await submit(browser, "/account/security", "/account/security/code", channel="sms")
    assert sms_on.status_code == 303 and (await user_row(s, user_id)).code_second_factor == "sms"


# ---- sessions ------------------------------------------------------------------------------------

async def test_sessions_are_listed_and_ended_one_or_all_others(browser, rp, s):
    email, user_id = await signed_in(rp, browser)
    async with new_browser(rp.app) as second, new_browser(rp.app) as third:
        await sign_in(rp, second, email)
        await sign_in(rp, third, email)
        page = await browser.get("/account/sessions")
        assert page.status_code == 200
        assert page.text.count('name="session"') == 3 and page.text.count("This browser") == 1
        assert page.text.count("python-httpx/") == 3  # the user agent each browser signed in with
        mine = (await s.db.run(lambda db: db.execute(select(BrowserSession.id).where(
            BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None)))))
        ids = set(mine.scalars())
        async def session_of(client):
            return (await s.db.run(lambda db: s.sessions.from_cookie(db, client.cookies.get("idp_session")))).id
        second_id, third_id, own_id = await session_of(second), await session_of(third), await session_of(browser)
        assert ids == {second_id, third_id, own_id}

        ended = await submit(browser, "/account/sessions", "/account/sessions/end", session=second_id)
        assert ended.status_code == 303 and ended.headers["location"] == "/account/sessions?done=ended"
        assert (await second.get("/account")).status_code == 303
        assert await live_sessions(s, user_id) == {third_id, own_id}
        # Somebody else's session is not listed and cannot be ended from here.
        _, other_id = await rp.user()
        foreign, _ = await s.db.run(lambda db: s.sessions.start(db, user_id=other_id, amr=["pwd"], acr=None))
        refused = await submit(browser, "/account/sessions", "/account/sessions/end", session=foreign.id)
        assert refused.status_code == 404 and "This session has already ended." in refused.text
        assert await live_sessions(s, other_id) == {foreign.id}

        others = await submit(browser, "/account/sessions", "/account/sessions/end-others")
        assert others.status_code == 303 and others.headers["location"] == "/account/sessions?done=ended_others"
        assert await live_sessions(s, user_id) == {own_id}
        assert (await third.get("/account")).status_code == 303
        assert (await browser.get("/account")).status_code == 200

        # Ending this browser's own session signs it out here.
        out = await submit(browser, "/account/sessions", "/account/sessions/end", session=own_id)
        assert out.status_code == 303 and out.headers["location"] == "/account/sessions"
        assert 'idp_session=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
        assert await live_sessions(s, user_id) == set()
        assert (await browser.get("/account")).status_code == 303


async def test_ending_a_session_ends_the_apps_it_signed_in(browser, rp, s):
    client = await rp.register()
    email, user_id = await signed_in(rp, browser)
    async with rp.browser() as other:
        result = await rp.sign_in(other, client, email, scope=OFFLINE)
        tokens = await rp.exchange(other, client, result)
        other_id = (await s.db.run(lambda db: s.sessions.from_cookie(db, other.cookies.get("idp_session")))).id
        assert (await submit(browser, "/account/sessions", "/account/sessions/end", session=other_id)).status_code == 303
        assert_error(await refresh(other, rp, client, tokens.json()["refresh_token"]), 400, "invalid_grant")
    revoked = await s.db.run(lambda db: db.execute(select(Grant.revoked_at).where(Grant.session_id == other_id)))
    assert all(value is not None for value in revoked.scalars())


# ---- CSRF ----------------------------------------------------------------------------------------

async def test_forms_without_the_right_csrf_token_are_refused(browser, rp, s):
    _, user_id = await signed_in(rp, browser)
    page = await browser.get("/account")
    profile_token = csrf_for(page.text, "/account")
    missing = await browser.post("/account", data={"given_name": "Eve"})
    assert missing.status_code == 403 and "The form expired." in missing.text
    assert (await browser.post("/account", data={"given_name": "Eve", "csrf_token": "forged"})).status_code == 403
    # A token is bound to its form: the profile's does not end sessions.
    assert (await browser.post("/account/sessions/end-others", data={"csrf_token": profile_token})).status_code == 403
    # ... and to the session: after a new sign-in in this browser the old token is dead.
    async with new_browser(rp.app) as other:
        email2, other_user = await signed_in(rp, other)
        other_page = await other.get("/account")
        other_token = csrf_for(other_page.text, "/account")
        browser.cookies.set("idp_csrf", other.cookies.get("idp_csrf"), domain="idp.test")  # its CSRF cookie too
        assert (await browser.post("/account", data={"given_name": "Eve", "csrf_token": other_token})).status_code == 403
    assert (await user_row(s, user_id)).given_name == "Maija"
    assert len(await live_sessions(s, user_id)) == 1


async def test_bad_input_gets_a_clear_answer_never_a_500(browser, rp, s):
    _, user_id = await signed_in(rp, browser)
    pages = {"/account": "/account", "/account/identifiers": "/account/identifiers/add",
             "/account/password": "/account/password", "/account/security": "/account/security/code",
             "/account/sessions": "/account/sessions/end"}
    tokens = {action: csrf_for((await browser.get(page)).text, action) for page, action in pages.items()}
    security = (await browser.get("/account/security")).text
    for action in ("/account/security/totp", "/account/security/totp/remove"):
        if f'action="{action}"' in security:
            tokens[action] = csrf_for(security, action)
    for action, token in tokens.items():
        for junk in ("\x00", "../../x", "x" * 5000, "é" * 70, ""):
            fields = {name: junk for name in ("id", "kind", "value", "code", "factor", "session", "channel",
                                              "given_name", "locale", "current_password", "new_password")}
            reply = await browser.post(action, data={"csrf_token": token, **fields})
            assert reply.status_code in (303, 400, 404, 409, 429), (action, junk, reply.status_code)
        # A file where a text field belongs.
        reply = await browser.post(action, data={"csrf_token": token}, files={"id": ("x", b"\x00\xff")})
        assert reply.status_code in (303, 400, 404), (action, reply.status_code)
    for path in ("/account/identifiers/confirm?id=%00", "/account/identifiers/confirm",
                 "/account/security/totp?factor=../x", "/account/security/totp"):
        assert (await browser.get(path)).status_code == 404, path
    for action in ("/account/identifiers/confirm", "/account/identifiers/resend", "/account/identifiers/remove",
                   "/account/security/totp/confirm", "/account/security/recovery-codes",
                   "/account/sessions/end-others"):
        assert (await browser.post(action, data={"csrf_token": "x", "id": "\x00"})).status_code == 403
    assert await live_sessions(s, user_id)  # still signed in: nothing ended by junk
