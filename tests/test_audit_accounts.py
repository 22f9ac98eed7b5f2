"""The audit log of account events, through the pages over real HTTP: sign-ins (and each way one
fails, recorded once although the request fails), codes sent, factors, passwords, registration and
the identifiers of the account pages. Each test reads the audit_events rows back and checks the
actor, client, address, target and before/after exactly, and that no password or code is in them.

Every browser here has an address of its own, so an event without a target (an unknown account)
is found by the address that caused it.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sqlite3
import time

import httpx
import pyotp
import pytest
from sqlalchemy import select

from idp.audit.models import AuditEvent
from idp.audit.service import Actor
from idp.mfa.models import TotpFactor
from tests import secrets_registry
from tests.conftest import ISSUER
from tests.mail_sms import emailed_code, mail_to, texted_code
from tests.rp import PASSWORD, RelyingParty, form_field
from tests.test_cli import _env, idp, ok

ONE_FACTOR, MFA = "urn:idp:acr:1fa", "urn:idp:acr:mfa"
NEW_PASSWORD = "another long passphrase here"


@pytest.fixture
def s(delivering_app):
    return delivering_app.state.services


@pytest.fixture
def rp(delivering_app, s) -> RelyingParty:
    return RelyingParty(delivering_app, s)


@pytest.fixture
def ip() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


@pytest.fixture
async def browser(delivering_app, ip):
    transport = httpx.ASGITransport(app=delivering_app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


# ---- helpers -------------------------------------------------------------------------------------

async def events(s, *, target: str | None = None, ip: str | None = None, action: str | None = None) -> list[dict]:
    """The audit events of an account (or caused from an address), oldest first, as dicts."""
    query = select(AuditEvent).order_by(AuditEvent.at, AuditEvent.id)
    if target is not None:
        query = query.where(AuditEvent.target_id == target)
    if ip is not None:
        query = query.where(AuditEvent.ip == ip)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    rows = (await s.db.run(lambda db: db.execute(query))).scalars()
    return [{"action": e.action, "actor_type": e.actor_type, "actor_id": e.actor_id, "client_id": e.client_id,
             "ip": e.ip, "org_id": e.org_id, "target_type": e.target_type, "target_id": e.target_id,
             "before": e.before, "after": e.after} for e in rows]


def event(action: str, *, actor: str | None, client: str | None, ip: str, target: str | None,
          before: dict | None = None, after: dict | None = None, org: str | None = None) -> dict:
    return {"action": action, "actor_type": "user", "actor_id": actor, "client_id": client, "ip": ip,
            "org_id": org, "target_type": "user" if target else None, "target_id": target,
            "before": before, "after": after}


def assert_no_secrets(found: list[dict], *values: str) -> None:
    """None of `values` (passwords, codes) appears anywhere in the events."""
    text = json.dumps(found)
    for value in values:
        assert value not in text


def fields(page, **values) -> dict:
    return {"flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"), **values}


async def post_on(browser, location: str, to: str, **values) -> httpx.Response:
    page = await browser.get(location)
    assert page.status_code == 200, page.text
    return await browser.post(to, data=fields(page, **values))


async def start(browser, rp, client, **extra) -> str:
    reply = await rp.authorize(browser, client, **extra)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?flow="), reply.text
    return reply.headers["location"]


def csrf_for(html: str, action: str) -> str:
    match = re.search(rf'action="{re.escape(action)}"[^>]*>\s*<input type="hidden" name="csrf_token" '
                      rf'value="([^"]+)"', html)
    assert match, f"no form posting to {action}"
    return match.group(1)


async def submit(browser, page: str, action: str, **values) -> httpx.Response:
    shown = await browser.get(page)
    assert shown.status_code == 200, shown.text
    return await browser.post(action, data={"csrf_token": csrf_for(shown.text, action), **values})


async def account_sign_in(rp, browser, email: str) -> None:
    gate = await browser.get("/account")
    assert gate.status_code == 303 and gate.headers["location"].startswith("/login?flow="), gate.text
    back = await rp.login(browser, gate.headers["location"], email)
    assert back.status_code == 303 and back.headers["location"] == "/account", back.text


async def user_with_phone(s, rp) -> tuple[str, str, str]:
    email, user_id = await rp.user()
    number = f"+35840{secrets.randbelow(10**7):07d}"

    async def add(db):
        await s.accounts.add_identifier(db, await s.accounts.get(db, user_id), "phone", number, verified=True)
    await s.db.run(add)
    return email, user_id, number


# ---- sign-in -------------------------------------------------------------------------------------

async def test_a_sign_in_is_one_event_with_its_methods_client_and_address(browser, rp, s, ip):
    client = await rp.register()
    email, user_id = await rp.user()
    location = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=email)
    reply = await post_on(browser, reply.headers["location"], "/login/password", password=PASSWORD)
    assert reply.status_code == 303
    assert await events(s, target=user_id) == [event(
        "user.signed_in", actor=user_id, client=client.client_id, ip=ip, target=user_id,
        after={"methods": ["pwd"], "acr": ONE_FACTOR, "client_id": client.client_id})]


async def test_a_wrong_password_is_one_failure_event_and_the_password_is_not_in_it(browser, rp, s, ip):
    client = await rp.register()
    email, user_id = await rp.user()
    wrong = "not the password at all"
    location = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=email, password=wrong)
    assert reply.status_code == 401 and "Incorrect email, phone number or password." in reply.text
    found = await events(s, target=user_id)
    # The request failed, yet the event is there (committed with the failure), and only once.
    assert found == [event("user.sign_in_failed", actor=None, client=client.client_id, ip=ip, target=user_id,
                           after={"reason": "wrong_password", "method": "pwd"})]
    assert_no_secrets(found, wrong, PASSWORD)
    # The same through the two-step pages.
    reply = await post_on(browser, location, "/login", username=email)
    reply = await post_on(browser, reply.headers["location"], "/login/password", password=wrong)
    assert reply.status_code == 401
    assert [e["action"] for e in await events(s, target=user_id)] == ["user.sign_in_failed"] * 2


async def test_ten_parallel_wrong_passwords_are_ten_events_each_once(browser, rp, s, ip):
    client = await rp.register()
    email, user_id = await rp.user()
    location = await start(browser, rp, client)
    page = await browser.get(location)
    replies = await asyncio.gather(*(
        browser.post("/login", data=fields(page, username=email, password=f"wrong {i} guess")) for i in range(10)))
    statuses = sorted(reply.status_code for reply in replies)
    assert set(statuses) <= {401, 429}, statuses
    found = await events(s, target=user_id)
    # One event per refused request: a wrong password each, or "locked" once the limit is reached.
    assert sorted(e["after"]["reason"] for e in found) == sorted(
        "wrong_password" if status == 401 else "locked" for status in statuses)
    assert all(e["action"] == "user.sign_in_failed" and e["ip"] == ip for e in found)


async def test_an_unknown_account_fails_with_no_target_and_nothing_typed_stored(browser, rp, s, ip):
    client = await rp.register()
    unknown = f"nobody-{secrets.token_hex(6)}@example.com"
    typed = "a password for nobody"
    location = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=unknown, password=typed)
    assert reply.status_code == 401
    found = await events(s, ip=ip)
    assert found == [event("user.sign_in_failed", actor=None, client=client.client_id, ip=ip, target=None,
                           after={"reason": "unknown_account", "method": "pwd"})]
    assert_no_secrets(found, unknown, unknown.split("@")[0], typed)


async def test_a_locked_account_records_the_refusal_as_locked(browser, rp, s, ip):
    client = await rp.register()
    email, user_id = await rp.user()
    location = await start(browser, rp, client)
    replies = []
    for _ in range(20):  # login_per_account: 10 a minute
        replies.append(await post_on(browser, location, "/login", username=email, password="wrong wrong wrong"))
        if replies[-1].status_code == 429:
            break
    assert replies[-1].status_code == 429, [r.status_code for r in replies]
    found = await events(s, target=user_id)
    reasons = [e["after"]["reason"] for e in found]
    assert reasons == ["wrong_password"] * (len(replies) - 1) + ["locked"]
    assert found[-1] == event("user.sign_in_failed", actor=None, client=client.client_id, ip=ip, target=user_id,
                              after={"reason": "locked", "method": "pwd"})


async def test_a_sign_in_code_is_audited_when_sent_failed_and_used_but_never_stored(browser, rp, s, ip, gateway):
    client = await rp.register()
    _, user_id, number = await user_with_phone(s, rp)
    location = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=number)
    code_location = reply.headers["location"]
    assert code_location.startswith("/login/code?flow=")
    code = await texted_code(gateway, number)
    wrong = "000000" if code != "000000" else "111111"
    refused = await post_on(browser, code_location, "/login/code", code=wrong)
    assert refused.status_code == 400
    reply = await post_on(browser, code_location, "/login/code", code=code)
    assert reply.status_code == 303
    found = await events(s, target=user_id)
    assert found == [
        event("code.sent", actor=None, client=client.client_id, ip=ip, target=user_id,
              after={"channel": "sms", "purpose": "login"}),
        event("user.sign_in_failed", actor=None, client=client.client_id, ip=ip, target=user_id,
              after={"reason": "wrong_code", "method": "sms"}),
        event("user.signed_in", actor=user_id, client=client.client_id, ip=ip, target=user_id,
              after={"methods": ["sms"], "acr": ONE_FACTOR, "client_id": client.client_id}),
    ]
    assert_no_secrets(found, code, number)


async def test_a_code_for_an_unknown_number_is_not_sent_and_not_audited_as_sent(browser, rp, s, ip):
    client = await rp.register()
    unknown = f"+35850{secrets.randbelow(10**7):07d}"
    location = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=unknown)
    refused = await post_on(browser, reply.headers["location"], "/login/code", code="123456")
    assert refused.status_code == 400
    found = await events(s, ip=ip)
    assert found == [event("user.sign_in_failed", actor=None, client=client.client_id, ip=ip, target=None,
                           after={"reason": "unknown_account", "method": "sms"})]
    assert_no_secrets(found, unknown, unknown[4:])


async def test_a_wrong_second_factor_then_the_right_one(browser, rp, s, ip):
    client = await rp.register()
    email, user_id = await rp.user()

    async def enrol(db):
        enrolment = await s.factors.totp.enrol(db, user_id=user_id, account_name=email)
        totp = pyotp.TOTP(enrolment.secret)
        assert await s.factors.totp.confirm(db, user_id=user_id, factor_id=enrolment.factor_id,
                                            code=totp.at(int(time.time()) - 30))  # the step before: now's stays free
        return totp
    totp = await s.db.run(enrol)
    location = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=email, password=PASSWORD)
    factor = reply.headers["location"]
    assert factor.startswith("/login/factor?flow=")
    wrong = "000000" if totp.now() != "000000" else "111111"
    refused = await post_on(browser, factor, "/login/factor", answer=wrong)
    assert refused.status_code == 400
    right = totp.now()
    reply = await post_on(browser, factor, "/login/factor", answer=right)
    assert reply.status_code == 303, reply.text
    found = await events(s, target=user_id)
    assert found == [
        event("user.sign_in_failed", actor=None, client=client.client_id, ip=ip, target=user_id,
              after={"reason": "wrong_second_factor", "method": "totp"}),
        event("user.signed_in", actor=user_id, client=client.client_id, ip=ip, target=user_id,
              after={"methods": ["pwd", "totp"], "acr": MFA, "client_id": client.client_id}),
    ]
    assert_no_secrets(found, right, PASSWORD)


async def test_a_step_up_is_its_own_event(browser, rp, s, ip, smtp):
    client = await rp.register()
    email, user_id = await rp.user()
    location = await start(browser, rp, client)
    assert (await post_on(browser, location, "/login", username=email, password=PASSWORD)).status_code == 303
    # The client now asks for a second factor: the account has none, so an emailed code is offered.
    reply = await rp.authorize(browser, client, acr_values=MFA)
    assert reply.headers["location"].startswith("/login/factor?flow="), reply.headers["location"]
    code = await emailed_code(smtp, email)
    reply = await post_on(browser, reply.headers["location"], "/login/factor", answer=code)
    assert reply.status_code == 303
    found = await events(s, target=user_id)
    assert [e["action"] for e in found] == ["user.signed_in", "code.sent", "user.step_up"]
    assert found[1] == event("code.sent", actor=None, client=client.client_id, ip=ip, target=user_id,
                             after={"channel": "email", "purpose": "second_factor"})
    assert found[2] == event("user.step_up", actor=user_id, client=client.client_id, ip=ip, target=user_id,
                             after={"methods": ["pwd", "email"], "acr": MFA, "client_id": client.client_id})
    assert_no_secrets(found, code)


# ---- passwords -----------------------------------------------------------------------------------

async def test_a_temporary_password_and_its_forced_change(browser, rp, s, ip, smtp):
    client = await rp.register()
    email, user_id = await rp.user()

    async def set_temporary(db):
        return await s.temporary_passwords.set(db, await s.accounts.get(db, user_id), via="email",
                                               actor=Actor.operator("ops"))
    temporary = await s.db.run(set_temporary)
    secrets_registry.remember(temporary)
    [set_event] = await events(s, target=user_id)
    user = await s.db.run(lambda db: s.accounts.get(db, user_id))
    assert set_event == {**event("password.temporary_set", actor="ops", client=None, ip=None, target=user_id,
                                 after={"via": "email", "expires_at": user.password_expires_at.isoformat()}),
                         "actor_type": "operator"}

    location = await start(browser, rp, client)
    reply = await post_on(browser, location, "/login", username=email, password=temporary)
    assert reply.headers["location"].startswith("/login/new-password?flow=")
    reply = await post_on(browser, reply.headers["location"], "/login/new-password", password=NEW_PASSWORD)
    assert reply.status_code == 303
    found = await events(s, target=user_id)
    assert found[1:] == [
        event("password.changed", actor=user_id, client=client.client_id, ip=ip, target=user_id,
              after={"reason": "temporary_replaced"}),
        event("user.signed_in", actor=user_id, client=client.client_id, ip=ip, target=user_id,
              after={"methods": ["pwd"], "acr": ONE_FACTOR, "client_id": client.client_id}),
    ]
    assert_no_secrets(found, temporary, NEW_PASSWORD)


async def test_the_default_actor_of_a_temporary_password_is_the_system(s, rp):
    _, user_id = await rp.user()
    await s.db.run(lambda db: _set(s, db, user_id))
    [found] = await events(s, target=user_id)
    assert (found["action"], found["actor_type"], found["actor_id"]) == ("password.temporary_set", "system", None)


def test_the_cli_sets_a_temporary_password_as_the_operator(tmp_path):
    env = _env(tmp_path)
    ok(idp(env, "migrate"))
    email = f"cli-{secrets.token_hex(4)}@example.com"
    sub = json.loads(ok(idp(env, "users", "add", "--email", email, "--password", PASSWORD, "--json")).stdout)["sub"]
    ok(idp(env, "users", "temp-password", email, "--via", "email"))
    with sqlite3.connect(tmp_path / "idp.db") as db:
        rows = db.execute("SELECT actor_type, actor_id, client_id, ip, target_type, target_id, before, after "
                          "FROM audit_events WHERE action = 'password.temporary_set'").fetchall()
    [(actor_type, actor_id, client_id, ip, target_type, target_id, before, after)] = rows
    assert (actor_type, actor_id, client_id, ip, target_type, target_id, json.loads(before)) == (
        "operator", None, None, None, "user", sub, None)
    assert json.loads(after)["via"] == "email" and set(json.loads(after)) == {"via", "expires_at"}


async def _set(s, db, user_id):
    return await s.temporary_passwords.set(db, await s.accounts.get(db, user_id), via="email")


# ---- the account pages ---------------------------------------------------------------------------

async def test_the_account_pages_audit_identifiers_passwords_and_factors(browser, rp, s, ip, smtp):
    email, user_id = await rp.user()
    await account_sign_in(rp, browser, email)
    me = {"actor": user_id, "client": None, "ip": ip, "target": user_id}
    seen = len(await events(s, target=user_id))  # the sign-in

    async def new_events() -> list[dict]:
        nonlocal seen
        found = await events(s, target=user_id)
        fresh, seen = found[seen:], len(found)
        return fresh

    # An email: added (a code sent), confirmed, removed.
    other = f"other-{secrets.token_hex(6)}@example.com"
    reply = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="email", value=other)
    confirm = reply.headers["location"]
    code = await emailed_code(smtp, other)
    reply = await submit(browser, confirm, "/account/identifiers/confirm", id=confirm.split("id=")[1], code=code)
    assert reply.status_code == 303, reply.text
    fresh = await new_events()
    described = {"identifier_id": confirm.split("id=")[1], "kind": "email", "value": other}
    assert fresh == [
        event("identifier.added", **me, after={**described, "verified": False}),
        event("code.sent", **me, after={"channel": "email", "purpose": "verify_email"}),
        event("identifier.verified", **me, before={"verified": False}, after={**described, "verified": True}),
    ]
    assert_no_secrets(fresh, code)
    reply = await submit(browser, "/account/identifiers", "/account/identifiers/remove", id=described["identifier_id"])
    assert reply.status_code == 303
    assert await new_events() == [event("identifier.removed", **me, before={**described, "verified": True})]

    # An address never confirmed, cancelled: removed too, as unverified.
    reply = await submit(browser, "/account/identifiers", "/account/identifiers/add", kind="email",
                         value=f"typo-{other}")
    pending = reply.headers["location"].split("id=")[1]
    reply = await submit(browser, "/account/identifiers", "/account/identifiers/remove", id=pending)
    assert reply.status_code == 303
    typo = {"identifier_id": pending, "kind": "email", "value": f"typo-{other}", "verified": False}
    assert await new_events() == [
        event("identifier.added", **me, after=typo),
        event("code.sent", **me, after={"channel": "email", "purpose": "verify_email"}),
        event("identifier.removed", **me, before=typo)]

    # The password.
    reply = await submit(browser, "/account/password", "/account/password", current_password=PASSWORD,
                         new_password=NEW_PASSWORD)
    assert reply.status_code == 303
    fresh = await new_events()
    assert fresh == [event("password.changed", **me,
                           after={"reason": "self_service", "other_sessions_ended": False})]
    assert_no_secrets(fresh, PASSWORD, NEW_PASSWORD)

    # An authenticator app, with recovery codes; a new set; then removed (the codes go with it).
    started = await submit(browser, "/account/security", "/account/security/totp")
    page = await browser.get(started.headers["location"])
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.text).group(1).replace(" ", "")
    factor = started.headers["location"].split("factor=")[1]
    reply = await browser.post("/account/security/totp/confirm", data={
        "csrf_token": csrf_for(page.text, "/account/security/totp/confirm"), "factor": factor,
        "code": pyotp.TOTP(secret).now()})
    assert reply.status_code == 200  # the recovery codes, shown once
    codes = re.findall(r"\b[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}\b", reply.text)
    assert codes
    fresh = await new_events()
    assert fresh == [event("factor.added", **me, after={"factor": "totp"}),
                     event("factor.added", **me, after={"factor": "recovery_codes"})]
    reply = await submit(browser, "/account/security", "/account/security/recovery-codes")
    assert reply.status_code == 200
    new_codes = re.findall(r"\b[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}\b", reply.text)
    assert await new_events() == [event("recovery_codes.regenerated", **me)]
    factor_id = await s.db.run(lambda db: db.scalar(select(TotpFactor.id).where(TotpFactor.user_id == user_id)))
    reply = await submit(browser, "/account/security", "/account/security/totp/remove", factor=factor_id)
    assert reply.status_code == 303
    fresh = await new_events()
    assert fresh == [event("factor.removed", **me, before={"factor": "totp"}),
                     event("factor.removed", **me, before={"factor": "recovery_codes"})]

    # The code second factor: on by email, then off.
    for channel, expected in (("email", [event("factor.added", **me, after={"factor": "email"})]),
                              ("", [event("factor.removed", **me, before={"factor": "email"})])):
        reply = await submit(browser, "/account/security", "/account/security/code", channel=channel)
        assert reply.status_code == 303
        assert await new_events() == expected

    everything = await events(s, target=user_id)
    assert_no_secrets(everything, PASSWORD, NEW_PASSWORD, secret, code, *codes, *new_codes)


# ---- registration --------------------------------------------------------------------------------

async def test_a_registration_is_audited_with_its_client(browser, rp, s, ip, smtp):
    client = await rp.register()
    authorize = await rp.authorize(browser, client)
    login_flow = authorize.headers["location"].split("flow=")[1]
    page = await browser.get(f"/register?flow={login_flow}")
    email = f"new-{secrets.token_hex(6)}@example.com"
    reply = await browser.post("/register", data={
        "method": "email", "csrf_token": form_field(page.text, "csrf_token"),
        "login_flow": form_field(page.text, "login_flow"), "email": email, "password": PASSWORD, "name": ""})
    assert reply.status_code == 303, reply.text
    code = await emailed_code(smtp, email)
    page = await browser.get(reply.headers["location"])
    done = await browser.post("/register/code", data={
        "flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"), "code": code})
    assert done.status_code == 303, done.text
    user_id = (await s.db.run(lambda db: s.accounts.find_by_login(db, email))).id
    assert await events(s, ip=ip) == [
        event("code.sent", actor=None, client=client.client_id, ip=ip, target=None,
              after={"channel": "email", "purpose": "verify_email"}),
        event("user.registered", actor=user_id, client=client.client_id, ip=ip, target=user_id,
              after={"method": "email"}),
        event("user.signed_in", actor=user_id, client=client.client_id, ip=ip, target=user_id,
              after={"methods": ["pwd"], "acr": ONE_FACTOR, "client_id": client.client_id}),
    ]
    assert_no_secrets(await events(s, ip=ip), code, PASSWORD)
    assert len(await mail_to(smtp, email)) == 1
