"""The password as a second factor (after a sign-in code, for a client asking for MFA) is hashed
outside the step's transaction like a first-factor password (flows/password_check.py)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from idp.audit.models import AuditEvent
from tests.conftest import delivering_fixtures
from tests.mail_sms import emailed_code
from tests.rp import PASSWORD
from tests.test_login_steps import MFA, fields, identify, post_on, start, tokens_of
from tests.test_password_off_transaction import SLOW_HASH, hashing, no_connection_held, set_password_hash

s, rp, browser = delivering_fixtures()


async def test_the_password_as_a_second_factor_is_hashed_with_no_connection_held(browser, rp, s, smtp):
    client = await rp.register()
    email, user_id = await rp.user()
    location, started = await start(browser, rp, client, acr_values=MFA)
    reply = await identify(browser, location, email)
    reply = await post_on(browser, reply.headers["location"], "/login/password", action="code")
    reply = await post_on(browser, reply.headers["location"], "/login/code", code=await emailed_code(smtp, email))
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/factor?flow="), reply.text
    factor = reply.headers["location"]

    wrong = await post_on(browser, factor, "/login/factor", answer="not the password of this account")
    assert wrong.status_code == 400 and "The password is not correct." in wrong.text

    await set_password_hash(s, user_id, SLOW_HASH)
    page = await browser.get(factor)
    right = asyncio.create_task(browser.post("/login/factor", data=fields(page, answer=PASSWORD)))
    await hashing(s)
    assert await no_connection_held(s, right), "a connection is held while hashing"
    claims = await tokens_of(browser, rp, client, started, await right)
    assert claims["sub"] == user_id and claims["amr"] == ["otp", "pwd", "mfa"] and claims["acr"] == MFA

    reasons = await s.db.run(lambda db: db.scalars(select(AuditEvent.after).where(
        AuditEvent.target_id == user_id, AuditEvent.action == "user.sign_in_failed")))
    assert [after["reason"] for after in reasons.all()] == ["wrong_second_factor"]
