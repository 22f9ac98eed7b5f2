"""The mail server and the SMS gateway are down when a person asks for a sign-in code: the page
answers as always (the code is on its way, ask for a new one), the outbox keeps each message and
retries it, and when the servers come back each message arrives exactly once, its code signs the
person in, and its row is marked sent (issue 6, "Faults").

A real uvicorn process (tests/server_process.py) with its courier worker in process sends to a
port where nothing listens yet; the real SMTP server (aiosmtpd) and SMS gateway of
tests/mail_sms.py then start listening on those very ports. Lower-level retry rules are in
tests/test_courier.py and tests/test_courier_worker.py. The outage test brings its own server and
database, so it runs once: in the SQLite run of `make test` (`only_in_sqlite_run`). The slow-send
test runs on the suite's database, both runs.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

import httpx
from sqlalchemy import delete, select

from idp.courier.models import CourierMessage
from idp.courier.providers import WebhookSmsProvider
from idp.courier.service import Courier
from tests.faults.conftest import migrated, only_in_sqlite_run
from tests.mail_sms import WEBHOOK_SECRET, SmsGateway, SmtpServer, emailed_code, texted_code, until
from tests.rp import AuthResult, RelyingParty
from tests.server_process import ServerProcess
from tests.test_login_steps import post_on

POLL = 0.1
ON_ITS_WAY_BY_EMAIL = "If this email address has an account, a code is on its way to it."
ON_ITS_WAY_BY_SMS = "If this phone number has an account, a code is on its way to it by text message."
RESEND = ">Send a new code</button>"


async def ask_for_a_code(browser: httpx.AsyncClient, rp: RelyingParty, client, login: str,
                         *, by_email: bool) -> tuple[str, httpx.Response]:
    """authorize → the identifier → (for an email: "Email me a code instead") → the code page."""
    started = await rp.authorize(browser, client)
    assert started.status_code == 303, started.text
    reply = await post_on(browser, started.headers["location"], "/login", username=login)
    if by_email:
        assert reply.headers["location"].startswith("/login/password?flow=")
        reply = await post_on(browser, reply.headers["location"], "/login/password", action="code")
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login/code?flow="), reply.text
    return reply.headers["location"], started


async def finish_with(browser: httpx.AsyncClient, rp: RelyingParty, client, code_location: str,
                      code: str, started: httpx.Response) -> dict:
    """The code on the code page → the client's redirect → tokens; the ID token's claims."""
    reply = await post_on(browser, code_location, "/login/code", code=code)
    location = reply.headers.get("location", "")
    assert reply.status_code == 303 and location.startswith(client.redirect_uri), reply.text
    result = AuthResult.of(started, location)
    tokens = await rp.exchange(browser, client, result)
    assert tokens.status_code == 200, tokens.text
    return await rp.verify(browser, tokens.json()["id_token"])


async def outbox_until(outbox, done, timeout: float = 10.0) -> dict[str, CourierMessage]:
    """The outbox rows by channel, once `done(rows)` (the worker runs in the server process)."""
    deadline = time.monotonic() + timeout
    while not done(rows := await outbox()):
        assert time.monotonic() < deadline, {c: (r.state, r.attempts, r.last_error) for c, r in rows.items()}
        await asyncio.sleep(POLL)
    return rows


@only_in_sqlite_run
async def test_codes_wait_in_the_outbox_while_mail_and_sms_are_down_then_arrive_once(tmp_path):
    smtp, gateway = SmtpServer(), SmsGateway()  # their ports chosen, nothing listening there yet
    server = ServerProcess(tmp_path, env={
        "IDP_EMAIL_PROVIDER": "smtp", "IDP_SMTP_HOST": "127.0.0.1", "IDP_SMTP_PORT": str(smtp.port),
        "IDP_SMTP_STARTTLS": "false", "IDP_MAIL_FROM": "idp <no-reply@idp.test>",
        "IDP_SMS_PROVIDER": "webhook", "IDP_SMS_WEBHOOK_URL": f"{gateway.url}/webhook",
        "IDP_SMS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        # Retries every few tenths of a second, and never given up on during the test.
        "IDP_COURIER_IN_PROCESS": "true", "IDP_COURIER_POLL_SECONDS": str(POLL),
        "IDP_COURIER_BACKOFF_SECONDS": str(POLL), "IDP_COURIER_BACKOFF_MAX_SECONDS": str(2 * POLL),
        "IDP_COURIER_MAX_ATTEMPTS": "1000", "IDP_WEBHOOKS_IN_PROCESS": "false",
    })
    services = await migrated(server)
    try:
        server.start(migrate=False)
        await _outage_and_recovery(server, services, smtp, gateway)
    finally:
        server.stop()
        await services.close()
        smtp.controller.stop(no_assert=True)  # also when the test failed before starting them
        if gateway.thread.is_alive():
            gateway.stop()
        else:
            gateway.server.server_close()


async def _outage_and_recovery(server: ServerProcess, services, smtp: SmtpServer,
                               gateway: SmsGateway) -> None:
    rp = RelyingParty(app=None, services=services)
    client = await rp.register()
    email, user_id = await rp.user()
    number = f"+35840{secrets.randbelow(10**7):07d}"

    async def add_phone(db):
        await services.accounts.add_identifier(db, await services.accounts.get(db, user_id), "phone",
                                               number, verified=True)
    await services.db.run(add_phone)

    async def outbox() -> dict[str, CourierMessage]:
        """The outbox by channel; each look also checks that no second message was queued."""
        async def read(db):
            return (await db.execute(select(CourierMessage))).scalars().all()
        rows = await services.db.run(read)
        assert len({row.channel for row in rows}) == len(rows), [(r.channel, r.state) for r in rows]
        return {row.channel: row for row in rows}

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as by_mail, \
            httpx.AsyncClient(base_url=server.url, timeout=10) as by_sms:
        # Both pages answer as always: the code is on its way, and a new one can be asked for.
        mail_page, mail_started = await ask_for_a_code(by_mail, rp, client, email, by_email=True)
        page = await by_mail.get(mail_page)
        assert page.status_code == 200 and ON_ITS_WAY_BY_EMAIL in page.text and RESEND in page.text
        sms_page, sms_started = await ask_for_a_code(by_sms, rp, client, number, by_email=False)
        page = await by_sms.get(sms_page)
        assert page.status_code == 200 and ON_ITS_WAY_BY_SMS in page.text and RESEND in page.text

        # The outbox keeps both and retries them, counting the attempts.
        rows = await outbox_until(outbox, lambda rows: len(rows) == 2 and
                                  min(row.attempts for row in rows.values()) >= 3)
        assert {(r.state, r.sent_at) for r in rows.values()} == {("queued", None)}
        assert rows["email"].last_error == "SMTP SMTPConnectError"
        assert rows["sms"].last_error == "HTTP ConnectError"

        # Asking again meanwhile queues nothing more: the email code is still within its resend
        # cooldown (the same page again), the SMS within its resend delay (429, wait and retry).
        again = await post_on(by_mail, mail_page, "/login/code", action="resend")
        assert again.status_code == 303 and again.headers["location"] == mail_page
        again = await post_on(by_sms, sms_page, "/login/code", action="resend")
        assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0
        assert "Too many attempts. Wait a while and try again." in again.text

        smtp.controller.start()
        gateway.start()
        mail_code = await emailed_code(smtp, email)
        sms_code = await texted_code(gateway, number)

        # Several more worker rounds: nothing arrives twice, and both rows are sent.
        rows = await outbox_until(outbox, lambda rows: {row.state for row in rows.values()} == {"sent"})
        await asyncio.sleep(5 * POLL)
        assert len(smtp.messages) == 1 and smtp.messages[0]["Message-ID"] == f"<{rows['email'].id}@idp>"
        assert gateway.requests == 1 and len(gateway.received) == 1
        assert gateway.received[0]["idempotency_key"] == rows["sms"].id
        assert all(row.sent_at is not None and row.last_error is None for row in rows.values())

        # Each code signs in.
        claims = await finish_with(by_mail, rp, client, mail_page, mail_code, mail_started)
        assert (claims["iss"], claims["sub"], claims["amr"]) == (server.url, user_id, ["otp"])
        claims = await finish_with(by_sms, rp, client, sms_page, sms_code, sms_started)
        assert (claims["iss"], claims["sub"], claims["amr"]) == (server.url, user_id, ["sms"])

    log = server.log.read_text()
    assert mail_code not in log and sms_code not in log


async def test_a_slow_send_does_not_let_the_next_messages_lease_run_out_unsent(services):
    """A message's lease starts when its own send starts, not when its worker's batch was read.

    Were the batch leased at once, a gateway that answers slowly (hanging until its timeout) would
    let the leases of the messages further down the batch run out before they were even tried:
    another worker (every node runs one) would claim and send them, and then the first worker
    would send them again. Here the gateway holds the first send; meanwhile the second message is
    still free, a second worker sends it, and each message arrives exactly once."""
    await services.db.run(lambda db: db.execute(delete(CourierMessage)))  # others' leftovers
    gateway = SmsGateway()
    gateway.start()
    held = threading.Event()
    gateway.hold = [held]
    try:
        key = secrets.token_bytes(32)
        first, second = (Courier(key, {"sms": WebhookSmsProvider(url=f"{gateway.url}/webhook",
                                                                 secret=WEBHOOK_SECRET)})
                         for _ in range(2))

        async def enqueue(db):
            return [await first.enqueue(db, channel="sms", recipient=f"+35840555000{n}", kind="login",
                                        locale="en", params={"code": secrets.token_hex(4)}) for n in range(2)]
        ids = await services.db.run(enqueue)
        slow_round = asyncio.create_task(first.deliver_due(services.db))
        await until(lambda: gateway.requests == 1, timeout=10)  # the first send is in the gateway

        assert (await second.deliver_due(services.db)).sent == 1
        held.set()
        assert (await slow_round).sent == 1
        assert sorted(m["idempotency_key"] for m in gateway.received) == sorted(ids)
        assert gateway.requests == 2
        async def states(db):
            query = select(CourierMessage.state, CourierMessage.attempts)
            return [tuple(row) for row in await db.execute(query)]
        assert await services.db.run(states) == [("sent", 1), ("sent", 1)]
    finally:
        held.set()
        gateway.stop()
