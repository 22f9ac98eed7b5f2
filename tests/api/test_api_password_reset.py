"""POST /api/v1/users/{id}/password-reset: an integrator has a single-use reset link sent to the
person, who opens it in a browser and chooses a new password (flows/reset_links.py,
ui/recovery.py). Real HTTP on an app whose courier really sends: mail to a local SMTP server, SMS to
a local gateway.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from idp.accounts.models import User
from idp.audit.models import AuditEvent
from idp.db import utcnow
from idp.flows.recovery import PasswordResetFlow
from idp.sessions.models import BrowserSession
from tests import secrets_registry
from tests.api_support import assert_problem, integrator
from tests.conftest import delivering_fixtures
from tests.mail_sms import emailed_code, mail_to, until
from tests.org_support import organisation
from tests.rp import PASSWORD, form_field
from tests.test_password_reset import start_reset, submit_code, submit_password
from tests.test_account_pages import sign_in, submit
from tests.token_support import OFFLINE, assert_error, refresh

s, rp, browser = delivering_fixtures()

NEW_PASSWORD = "a brand new long passphrase"
_LINK = re.compile(r"https?://\S+?(/reset/link/idprst_[A-Za-z0-9_-]+)")


@pytest.fixture
async def api(delivering_app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=delivering_app),
                                 base_url="http://idp.test") as client:
        yield client


@pytest.fixture
async def desk(api, rp):
    """A help desk system: a platform client allowed to write users."""
    return await integrator(api, rp, scopes=["idp:users:write", "idp:users:read"])


def link_in(text: str) -> str:
    """The path of the reset link in a message (remembered: it must never reach a log)."""
    match = _LINK.search(text)
    assert match, text
    secrets_registry.remember(match.group(1).rsplit("/", 1)[1])
    return match.group(1)


async def ask(api, desk, user_id: str, via: str = "email", **headers) -> httpx.Response:
    return await api.post(f"/api/v1/users/{user_id}/password-reset", json={"via": via},
                          headers={**desk.key(), **headers})


async def open_link(browser, path: str) -> httpx.Response:
    page = await browser.get(path)
    assert page.status_code == 200, page.text
    return await browser.post(path, data={"csrf_token": form_field(page.text, "csrf_token")})


async def flows_of(s, user_id: str) -> list[str]:
    rows = await s.db.run(lambda db: db.execute(select(PasswordResetFlow.state).where(
        PasswordResetFlow.user_id == user_id).order_by(PasswordResetFlow.created_at)))
    return list(rows.scalars())


async def audit_of(s, user_id: str) -> list[tuple]:
    rows = await s.db.run(lambda db: db.execute(select(AuditEvent).where(
        AuditEvent.target_id == user_id, AuditEvent.action.like("password.%")).order_by(AuditEvent.at)))
    return [(e.action, e.actor_type, e.actor_id, e.client_id, e.target_type, e.before, e.after)
            for e in rows.scalars()]


async def test_an_emailed_link_lets_the_person_choose_a_password_once(api, desk, browser, rp, s, smtp):
    client = await rp.register()
    email, user_id = await rp.user()
    async with rp.browser() as other:  # before: a signed-in browser holding a refresh token
        result = await rp.sign_in(other, client, email, scope=OFFLINE)
        old_refresh = (await rp.exchange(other, client, result)).json()["refresh_token"]

        reply = await ask(api, desk, user_id)
        assert reply.status_code == 202, reply.text
        body = reply.json()
        assert set(body) == {"sent_to", "channel", "expires_at"}
        assert body["sent_to"] == "u***@example.com" and body["channel"] == "email"
        expires_at = datetime.fromisoformat(body["expires_at"])
        assert abs(expires_at - (utcnow() + timedelta(hours=24))) < timedelta(minutes=1)

        [mail] = await mail_to(smtp, email)
        assert mail["Subject"] == "Choose a new password"
        path = link_in(smtp.body(mail))
        assert path.split("/")[-1] not in reply.text  # the API never shows the link

        # Fetching the link (a mail scanner does) only shows the button: it spends nothing.
        for _ in range(2):
            page = await browser.get(path)
            assert page.status_code == 200 and 'method="post"' in page.text
        assert await flows_of(s, user_id) == ["link_sent"]

        opened = await browser.post(path, data={"csrf_token": form_field(page.text, "csrf_token")})
        assert opened.status_code == 303 and opened.headers["location"].startswith("/reset/password?flow=")
        assert await flows_of(s, user_id) == ["link_opened"]
        done = await submit_password(browser, opened.headers["location"], NEW_PASSWORD)
        assert done.status_code == 200 and "Your password was changed" in done.text
        assert await flows_of(s, user_id) == ["completed"]

        # Whoever held a session or a token of the account is out.
        assert_error(await refresh(other, rp, client, old_refresh), 400, "invalid_grant")
    live = await s.db.run(lambda db: db.execute(select(BrowserSession.id).where(
        BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None))))
    assert live.all() == []

    # The old password fails, the new one works; the person is told.
    login = (await rp.authorize(browser, client)).headers["location"]
    assert (await rp.login(browser, login, email, PASSWORD)).status_code == 401
    assert (await rp.login(browser, login, email, NEW_PASSWORD)).status_code == 303
    assert (await mail_to(smtp, email, 2))[1]["Subject"] == "Your password was changed"

    # The link a second time: refused, in any browser, and nothing changes.
    async with rp.browser() as again:
        refused = await again.get(path)
        assert refused.status_code == 410 and "no longer works" in refused.text
        page = await again.get("/reset")  # a CSRF cookie, and the token of another form
        forged = await again.post(path, data={"csrf_token": form_field(page.text, "csrf_token")})
        assert forged.status_code == 403
    assert await flows_of(s, user_id) == ["completed"]

    assert await audit_of(s, user_id) == [
        ("password.reset_requested", "client", desk.client_id, desk.client_id, "user", None, {"channel": "email"}),
        ("password.reset", "user", user_id, None, "user", None, {"via": "link"}),
    ]


async def test_a_spent_link_posted_again_from_its_own_browser_is_410(api, desk, browser, rp, s, smtp):
    email, user_id = await rp.user()
    assert (await ask(api, desk, user_id)).status_code == 202
    path = link_in(smtp.body((await mail_to(smtp, email))[0]))
    page = await browser.get(path)
    fields = {"csrf_token": form_field(page.text, "csrf_token")}
    assert (await browser.post(path, data=fields)).status_code == 303
    again = await browser.post(path, data=fields)
    assert again.status_code == 410 and "no longer works" in again.text
    assert await flows_of(s, user_id) == ["link_opened"]


async def test_a_new_request_voids_the_earlier_link(api, desk, browser, rp, s, smtp):
    email, user_id = await rp.user()
    assert (await ask(api, desk, user_id)).status_code == 202
    first = link_in(smtp.body((await mail_to(smtp, email))[0]))
    assert (await ask(api, desk, user_id)).status_code == 202
    second = link_in(smtp.body((await mail_to(smtp, email, 2))[1]))
    assert first != second
    assert await flows_of(s, user_id) == ["voided", "link_sent"]

    assert (await browser.get(first)).status_code == 410
    assert (await open_link(browser, second)).status_code == 303
    assert await flows_of(s, user_id) == ["voided", "link_opened"]


async def test_a_reset_by_code_or_a_disabled_account_voids_an_unopened_link(api, desk, browser, rp, s, smtp):
    email, user_id = await rp.user()
    assert (await ask(api, desk, user_id)).status_code == 202
    path = link_in(smtp.body((await mail_to(smtp, email))[0]))
    reply = await start_reset(browser, email)  # the person resets by code meanwhile
    reply = await submit_code(browser, reply.headers["location"], await emailed_code(smtp, email, 2))
    assert (await submit_password(browser, reply.headers["location"], NEW_PASSWORD)).status_code == 200
    assert (await browser.get(path)).status_code == 410
    assert await flows_of(s, user_id) == ["voided", "completed"]

    other_email, other_id = await rp.user()
    assert (await ask(api, desk, other_id)).status_code == 202
    path = link_in(smtp.body((await mail_to(smtp, other_email))[0]))
    page = await browser.get(path)
    assert page.status_code == 200
    await s.db.run(lambda db: db.execute(update(User).where(User.id == other_id).values(disabled_at=utcnow())))
    assert (await browser.get(path)).status_code == 410
    refused = await browser.post(path, data={"csrf_token": form_field(page.text, "csrf_token")})
    assert refused.status_code == 410
    assert await flows_of(s, other_id) == ["link_sent"]


async def test_ten_parallel_opens_of_one_link_start_one_flow(api, desk, rp, s, smtp):
    email, user_id = await rp.user()
    assert (await ask(api, desk, user_id)).status_code == 202
    path = link_in(smtp.body((await mail_to(smtp, email))[0]))
    browsers = [rp.browser() for _ in range(10)]
    try:
        forms = []
        for b in browsers:
            page = await b.get(path)
            forms.append({"csrf_token": form_field(page.text, "csrf_token")})
        replies = await asyncio.gather(*(b.post(path, data=f) for b, f in zip(browsers, forms)))
        assert sorted(r.status_code for r in replies) == [303] + [410] * 9
        winner = next(b for b, r in zip(browsers, replies) if r.status_code == 303)
        location = next(r.headers["location"] for r in replies if r.status_code == 303)
        # Only the browser that won may go on; the others' flow is no flow.
        for b in browsers:
            if b is not winner:
                assert (await b.get(location)).status_code == 400
        assert (await submit_password(winner, location, NEW_PASSWORD)).status_code == 200
    finally:
        for b in browsers:
            await b.aclose()
    assert await flows_of(s, user_id) == ["completed"]


async def test_a_link_by_sms_to_the_verified_phone(api, desk, browser, rp, s, smtp, gateway):
    email, user_id = await rp.user()
    number = f"+35840{secrets.randbelow(10**7):07d}"

    async def add_phone(db):
        user = await s.accounts.get(db, user_id)
        await s.accounts.add_identifier(db, user, "phone", number, verified=True)
    await s.db.run(add_phone)

    reply = await ask(api, desk, user_id, via="sms")
    assert reply.status_code == 202, reply.text
    assert reply.json()["sent_to"] == f"+358 40 *** **{number[-2:]}" and reply.json()["channel"] == "sms"
    [sms] = await until(lambda: gateway.to(number))
    path = link_in(sms["text"])
    opened = await open_link(browser, path)
    assert opened.status_code == 303
    assert (await submit_password(browser, opened.headers["location"], NEW_PASSWORD)).status_code == 200
    # Told on the primary email and on the phone the link went to.
    await until(lambda: len(gateway.to(number)) >= 2)
    assert "changed" in gateway.to(number)[1]["text"]
    assert (await mail_to(smtp, email))[0]["Subject"] == "Your password was changed"
    assert [(a, after) for a, *_, after in await audit_of(s, user_id)] == [
        ("password.reset_requested", {"channel": "sms"}), ("password.reset", {"via": "link"})]


async def test_refusals_change_nothing(api, desk, rp, s, smtp):
    email, user_id = await rp.user()
    assert_problem(await ask(api, desk, "no-such-user"), 404, "not-found")
    assert_problem(await ask(api, desk, user_id, via="sms"), 409, "conflict")  # no verified phone
    assert_problem(await api.post(f"/api/v1/users/{user_id}/password-reset", json={"via": "fax"},
                                  headers=desk.key()), 422, "validation-error")
    reader = await integrator(api, rp, scopes=["idp:users:read"])
    body = assert_problem(await ask(api, reader, user_id), 403, "insufficient-scope")
    assert body["missing_scope"] == "idp:users:write"
    owner_id = (await rp.user())[1]
    org = await organisation(s, owner_id, name=f"Org {secrets.token_hex(3)}")
    bound = await integrator(api, rp, scopes=["idp:users:write"], org=org.id)
    assert_problem(await ask(api, bound, user_id), 404, "not-found")

    await s.db.run(lambda db: db.execute(update(User).where(User.id == user_id).values(disabled_at=utcnow())))
    assert_problem(await ask(api, desk, user_id), 409, "conflict")

    assert await flows_of(s, user_id) == []
    assert await audit_of(s, user_id) == []
    await asyncio.sleep(0.3)
    assert smtp.to(email) == []


async def test_a_retried_request_sends_one_link(api, desk, rp, s, smtp):
    email, user_id = await rp.user()
    headers = desk.key()
    first = await api.post(f"/api/v1/users/{user_id}/password-reset", json={"via": "email"}, headers=headers)
    again = await api.post(f"/api/v1/users/{user_id}/password-reset", json={"via": "email"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert await flows_of(s, user_id) == ["link_sent"]
    await mail_to(smtp, email)
    await asyncio.sleep(0.3)
    assert len(smtp.to(email)) == 1


async def test_parallel_requests_leave_one_live_link(api, desk, rp, s, smtp):
    email, user_id = await rp.user()
    url, headers = f"/api/v1/users/{user_id}/password-reset", desk.key()
    same_key = await asyncio.gather(*(api.post(url, json={}, headers=headers) for _ in range(10)))
    assert [r.status_code for r in same_key] == [202] * 10
    assert len({r.text for r in same_key}) == 1
    assert await flows_of(s, user_id) == ["link_sent"]

    other_keys = await asyncio.gather(*(api.post(url, json={}, headers=desk.key()) for _ in range(10)))
    assert [r.status_code for r in other_keys] == [202] * 10
    assert sorted(await flows_of(s, user_id)) == ["link_sent"] + ["voided"] * 10
    await mail_to(smtp, email, 11)


async def test_an_expired_link_is_refused(api, desk, browser, rp, s, smtp):
    email, user_id = await rp.user()
    assert (await ask(api, desk, user_id)).status_code == 202
    path = link_in(smtp.body((await mail_to(smtp, email))[0]))
    page = await browser.get(path)
    await s.db.run(lambda db: db.execute(update(PasswordResetFlow).where(
        PasswordResetFlow.user_id == user_id).values(expires_at=utcnow() - timedelta(seconds=1))))
    refused = await browser.post(path, data={"csrf_token": form_field(page.text, "csrf_token")})
    assert refused.status_code == 410
    assert await flows_of(s, user_id) == ["link_sent"]
    # A made-up or cut-short token is "not valid" (404), in the person's language.
    browser.headers["Accept-Language"] = "fi"
    unknown = await browser.get("/reset/link/idprst_" + secrets.token_urlsafe(32))
    assert unknown.status_code == 404 and "Linkki ei kelpaa" in unknown.text


async def test_the_access_log_shows_no_link_token(api, desk, browser, rp, smtp, caplog):
    caplog.set_level(logging.INFO, logger="idp.access")
    email, user_id = await rp.user()
    assert (await ask(api, desk, user_id)).status_code == 202
    path = link_in(smtp.body((await mail_to(smtp, email))[0]))
    assert (await open_link(browser, path)).status_code == 303
    logged = [record.fields["path"] for record in caplog.records if record.name == "idp.access"]
    assert logged.count("/reset/link/idprst_…") == 2  # the page and its button
    assert path.rsplit("/", 1)[1] not in caplog.text + repr(logged)


async def test_a_reset_by_code_is_audited_as_via_code(browser, rp, s, smtp):
    email, user_id = await rp.user()
    reply = await start_reset(browser, email)
    reply = await submit_code(browser, reply.headers["location"], await emailed_code(smtp, email))
    assert (await submit_password(browser, reply.headers["location"], NEW_PASSWORD)).status_code == 200
    assert await audit_of(s, user_id) == [("password.reset", "user", user_id, None, "user", None, {"via": "code"})]


# ---- an opened link does not outlive a newer password or a disabled account ---------------------


async def opened_form(api, desk, browser, smtp, s, email: str, user_id: str, count: int = 1) -> dict:
    """Ask for a link, open it and fetch the new-password form, as whoever intercepted the link
    would: the fields to post later. The flow is then LINK_OPENED."""
    assert (await ask(api, desk, user_id)).status_code == 202
    opened = await open_link(browser, link_in(smtp.body((await mail_to(smtp, email, count))[count - 1])))
    assert opened.status_code == 303
    page = await browser.get(opened.headers["location"])
    assert page.status_code == 200 and 'autocomplete="new-password"' in page.text
    assert (await flows_of(s, user_id))[-1] == "link_opened"
    return {"flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
            "password": "an attacker's long passphrase"}


async def password_hash_of(s, user_id: str) -> str:
    return await s.db.run(lambda db: db.scalar(select(User.password_hash).where(User.id == user_id)))


async def test_an_opened_link_is_dead_once_the_account_is_disabled(api, desk, browser, rp, s, smtp):
    email, user_id = await rp.user()
    form = await opened_form(api, desk, browser, smtp, s, email, user_id)
    before = await password_hash_of(s, user_id)
    assert (await api.post(f"/api/v1/users/{user_id}/disable", headers=desk.key())).status_code == 200
    assert await flows_of(s, user_id) == ["voided"]

    refused = await browser.post("/reset/password", data=form)
    assert refused.status_code == 400 and "has expired" in refused.text
    assert await password_hash_of(s, user_id) == before
    assert await flows_of(s, user_id) == ["voided"]
    assert [action for action, *_ in await audit_of(s, user_id)] == ["password.reset_requested"]


async def test_an_opened_link_is_dead_once_a_password_is_set_another_way(api, desk, browser, rp, s, smtp):
    # A temporary password from the help desk.
    email, user_id = await rp.user()
    form = await opened_form(api, desk, browser, smtp, s, email, user_id)
    reply = await api.post(f"/api/v1/users/{user_id}/temporary-password", json={"via": "email"},
                           headers=desk.key())
    assert reply.status_code == 202, reply.text
    temporary = await password_hash_of(s, user_id)
    refused = await browser.post("/reset/password", data=form)
    assert refused.status_code == 400 and "has expired" in refused.text
    assert await password_hash_of(s, user_id) == temporary
    assert await flows_of(s, user_id) == ["voided"]

    # The person resets the password by code in a browser of their own.
    email, user_id = await rp.user()
    form = await opened_form(api, desk, browser, smtp, s, email, user_id)
    async with rp.browser() as own:
        reply = await start_reset(own, email)
        reply = await submit_code(own, reply.headers["location"], await emailed_code(smtp, email, 2))
        assert (await submit_password(own, reply.headers["location"], NEW_PASSWORD)).status_code == 200
    chosen = await password_hash_of(s, user_id)
    refused = await browser.post("/reset/password", data=form)
    assert refused.status_code == 400 and "has expired" in refused.text
    assert await password_hash_of(s, user_id) == chosen
    assert await flows_of(s, user_id) == ["voided", "completed"]
    assert [(a, after) for a, *_, after in await audit_of(s, user_id)] == [
        ("password.reset_requested", {"channel": "email"}), ("password.reset", {"via": "code"})]

    # The person changes it on the account page.
    email, user_id = await rp.user()
    form = await opened_form(api, desk, browser, smtp, s, email, user_id)
    async with rp.browser() as own:
        await sign_in(rp, own, email, page="/account/password")
        changed = await submit(own, "/account/password", "/account/password", current_password=PASSWORD,
                               new_password=NEW_PASSWORD)
        assert changed.status_code == 303, changed.text
    chosen = await password_hash_of(s, user_id)
    refused = await browser.post("/reset/password", data=form)
    assert refused.status_code == 400 and "has expired" in refused.text
    assert await password_hash_of(s, user_id) == chosen
    assert await flows_of(s, user_id) == ["voided"]

    # A newer link: the opened older one ends with it.
    email, user_id = await rp.user()
    form = await opened_form(api, desk, browser, smtp, s, email, user_id)
    assert (await ask(api, desk, user_id)).status_code == 202
    assert await flows_of(s, user_id) == ["voided", "link_sent"]
    refused = await browser.post("/reset/password", data=form)
    assert refused.status_code == 400 and "has expired" in refused.text
    assert await flows_of(s, user_id) == ["voided", "link_sent"]


async def test_racing_resets_and_disabling_end_with_one_winner(api, desk, browser, rp, s, smtp):
    """A password set by an opened link at the same moment as one set by code, or as the account
    is disabled: one of them wins, the other is refused (never a deadlock's 503)."""
    for _ in range(3):
        email, user_id = await rp.user()
        form = await opened_form(api, desk, browser, smtp, s, email, user_id)
        async with rp.browser() as own:
            reply = await start_reset(own, email)
            reply = await submit_code(own, reply.headers["location"], await emailed_code(smtp, email, 2))
            page = await own.get(reply.headers["location"])
            own_form = {"flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token"),
                        "password": NEW_PASSWORD}
            replies = await asyncio.gather(browser.post("/reset/password", data=form),
                                           own.post("/reset/password", data=own_form))
        assert sorted(r.status_code for r in replies) == [200, 400], [r.status_code for r in replies]
        assert sorted(await flows_of(s, user_id)) == ["completed", "voided"]

        email, user_id = await rp.user()
        form = await opened_form(api, desk, browser, smtp, s, email, user_id)
        reset, disabled = await asyncio.gather(
            browser.post("/reset/password", data=form),
            api.post(f"/api/v1/users/{user_id}/disable", headers=desk.key()))
        assert disabled.status_code == 200 and reset.status_code in (200, 400), reset.status_code
        assert await flows_of(s, user_id) == (["completed"] if reset.status_code == 200 else ["voided"])
