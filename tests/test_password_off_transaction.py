"""A sign-in password is hashed with no transaction open (flows/password_check.py): other requests
go on while it is checked, and what it was checked against is read again before it counts.

The account's hash is a slow one (argon2id made with m = 8 MiB, t = 150: about 0.6 s to check on
our VMs; a hash is checked with the parameters it was made with), so each test has time to act
while the server hashes. The hash is a constant: making it would cost as much as checking it.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from sqlalchemy import func, select, update

from idp.accounts.models import User
from idp.app import create_app
from idp.audit.models import AuditEvent
from idp.flows.recovery import PasswordResetFlow, ResetState
from idp.sessions.models import BrowserSession
from tests.conftest import ISSUER
from tests.rp import PASSWORD, RegisteredClient, RelyingParty, form_field
from tests.test_account_pages import sign_in, submit
from tests.test_password_reset import start_reset, submit_password
from tests.token_support import refresh, signed_in

SLOW_HASH = "$argon2id$v=19$m=8192,t=150,p=1$bb4mnlgDCj7ehPIt7IkTdg$s9u88I/6kvA57Yc8NbrfSWuwQ+FhA/I9s2RFWsHS4mQ"
NEW_PASSWORD = "another long enough password"


async def _slow_user(rp: RelyingParty) -> tuple[str, str]:
    email, user_id = await rp.user()
    await set_password_hash(rp.services, user_id, SLOW_HASH)
    return email, user_id


async def set_password_hash(services, user_id: str, password_hash: str) -> None:
    async def work(db):
        (await db.get(User, user_id)).password_hash = password_hash

    await services.db.run(work)


async def _login_form(rp: RelyingParty, browser: httpx.AsyncClient, client: RegisteredClient) -> dict:
    reply = await rp.authorize(browser, client)
    page = await browser.get(reply.headers["location"])
    assert page.status_code == 200, page.text
    return {"flow": form_field(page.text, "flow"), "csrf_token": form_field(page.text, "csrf_token")}


async def hashing(services, limit: float = 10.0) -> None:
    """Until the server is checking a password: the step's first transaction has committed and
    the hash is running (it takes about 0.6 s more)."""
    deadline = asyncio.get_running_loop().time() + limit
    while not services.hasher.in_flight:
        assert asyncio.get_running_loop().time() < deadline, "no password is being hashed"
        await asyncio.sleep(0.005)


async def no_connection_held(services, step: asyncio.Task) -> bool:
    """True once the pool has no connection checked out while `step` is still hashing. An app
    with its courier worker in process lends one to each of its rounds (every 50 ms in tests), so
    a single look could catch one; a step that held its connection through the hash never lets
    the count reach 0 before it ends."""
    while not step.done():
        if services.db.engine.pool.checkedout() == 0:
            return True
        await asyncio.sleep(0.002)
    return False


def _post(browser: httpx.AsyncClient, form: dict, email: str, password: str) -> asyncio.Task:
    return asyncio.create_task(browser.post("/login", data={**form, "username": email, "password": password}))


async def _sign_ins(services, user_id: str) -> tuple[int, list[str]]:
    """(live sessions, reasons of sign_in_failed events) of the account."""
    async def work(db):
        sessions = await db.scalar(select(func.count()).select_from(BrowserSession)
                                   .where(BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None)))
        failed = (await db.scalars(select(AuditEvent.after).where(
            AuditEvent.target_id == user_id, AuditEvent.action == "user.sign_in_failed"))).all()
        return sessions, [after["reason"] for after in failed]

    return await services.db.run(work)


async def test_a_token_request_is_answered_while_a_password_is_hashed(http, rp, services):
    session = await signed_in(http, rp)
    email, user_id = await _slow_user(rp)
    async with rp.browser() as browser:
        login = _post(browser, await _login_form(rp, browser, session.client), email, PASSWORD)
        await hashing(services)

        # A refresh grant writes (on SQLite it needs the write lock the login step took before).
        reply = await refresh(http, rp, session.client, session.refresh_token)
        assert reply.status_code == 200, reply.text
        assert not login.done(), "the token request waited for the password hash"
        assert services.db.engine.pool.checkedout() == 0, "a connection is held while hashing"

        signed = await login
    assert signed.status_code == 303
    assert signed.headers["location"].startswith(session.client.redirect_uri + "?code=")
    assert await _sign_ins(services, user_id) == (1, [])


@pytest.mark.parametrize("typed, status, afterwards", [
    # The old password matched the hash it was checked against, which is gone: checked again
    # against the new one, it is a wrong password like any other.
    (PASSWORD, 401, (0, ["wrong_password"])),
    # The new one, typed while the old hash was being checked, is checked again and signs in.
    (NEW_PASSWORD, 303, (1, [])),
], ids=["old password refused", "new password signs in"])
async def test_a_password_changed_while_the_typed_one_was_hashed_is_checked_again(
        rp, services, typed, status, afterwards):
    client = await rp.register()
    email, user_id = await _slow_user(rp)
    new_hash = await services.hasher.hash(NEW_PASSWORD)
    async with rp.browser() as browser:
        login = _post(browser, await _login_form(rp, browser, client), email, typed)
        await hashing(services)
        await set_password_hash(services, user_id, new_hash)  # a reset, or an administrator, meanwhile
        reply = await login

    assert reply.status_code == status, reply.text
    if status == 303:
        assert reply.headers["location"].startswith(client.redirect_uri + "?code=")
    else:
        assert "Incorrect email, phone number or password." in reply.text
    assert await _sign_ins(services, user_id) == afterwards


async def test_a_double_submitted_password_signs_in_once(rp, services):
    """Both posts are hashed at once; the second to finish finds the step already done."""
    client = await rp.register()
    email, user_id = await _slow_user(rp)
    async with rp.browser() as browser:
        form = await _login_form(rp, browser, client)
        replies = await asyncio.gather(_post(browser, form, email, PASSWORD), _post(browser, form, email, PASSWORD))

    assert sorted(reply.status_code for reply in replies) == [303, 400]
    winner = next(reply for reply in replies if reply.status_code == 303)
    assert winner.headers["location"].startswith(client.redirect_uri + "?code=")
    loser = next(reply for reply in replies if reply.status_code == 400)
    assert "this step is already done" in loser.text
    assert await _sign_ins(services, user_id) == (1, [])


# ---- a new password, set by a reset --------------------------------------------------------------

@contextlib.asynccontextmanager
async def _slow_hashing_node(settings):
    """A node on the same database that makes new hashes slowly (about 0.6 s: the parameters of
    SLOW_HASH), so a test can act while it hashes a new password."""
    app = create_app(settings.model_copy(update={"argon2_memory_kib": 8192, "argon2_time_cost": 150}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as browser:
            yield app.state.services, browser


async def test_a_reset_hashes_the_new_password_with_no_transaction_open(rp, services, settings):
    """While the reset's new password is hashed, the account's row can be written (no row lock,
    and on SQLite no write lock, is held), and the reset still completes after."""
    email, user_id = await rp.user()
    async with _slow_hashing_node(settings) as (node, browser):
        started = await start_reset(browser, email)
        assert started.status_code == 303, started.text
        flow_id = started.headers["location"].split("flow=")[1]
        await _code_proved(services, flow_id)
        reset = asyncio.create_task(submit_password(browser, f"/reset/password?flow={flow_id}", NEW_PASSWORD))
        await hashing(node)

        async def touch(db):  # a write to the very row the reset changes
            await db.execute(update(User).where(User.id == user_id).values(locale="fi"))
        await asyncio.wait_for(services.db.run(touch), timeout=5)
        assert node.hasher.in_flight  # written while the new password was still being hashed

        done = await reset
    assert done.status_code == 200, done.text
    async with rp.browser() as other:
        client = await rp.register()
        assert "code" in (await rp.sign_in(other, client, email, password=NEW_PASSWORD)).params


async def test_a_password_change_on_the_account_page_hashes_with_no_transaction_open(rp, services, settings):
    """The current password is checked and the new one hashed between two transactions: the
    account's row can be written meanwhile, and the change is applied after."""
    email, user_id = await rp.user()
    async with _slow_hashing_node(settings) as (node, browser):
        await sign_in(rp, browser, email, page="/account/password")  # (rehashed at the node's cost)
        change = asyncio.create_task(submit(browser, "/account/password", "/account/password",
                                            current_password=PASSWORD, new_password=NEW_PASSWORD))
        await hashing(node)
        assert await no_connection_held(node, change), "a connection is held while hashing"

        async def touch(db):
            await db.execute(update(User).where(User.id == user_id).values(locale="fi"))
        await asyncio.wait_for(services.db.run(touch), timeout=5)
        assert node.hasher.in_flight  # written while the passwords were still being hashed

        done = await change
    assert done.status_code == 303 and done.headers["location"] == "/account/password?done=password", done.text
    async with rp.browser() as other:
        client = await rp.register()
        assert "code" in (await rp.sign_in(other, client, email, password=NEW_PASSWORD)).params


async def _code_proved(services, flow_id: str) -> None:
    """The flow as after a right code (sending and reading the code is test_password_reset's)."""
    async def work(db):
        await db.execute(update(PasswordResetFlow).where(PasswordResetFlow.id == flow_id)
                         .values(state=ResetState.CODE_VERIFIED.value))
    await services.db.run(work)
