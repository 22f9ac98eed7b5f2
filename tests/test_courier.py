"""The courier outbox against the real outside world: an SMTP server (aiosmtpd) and a local HTTP
SMS gateway, both reached over real sockets. Codes are read from what they received."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from idp.courier import Courier, DevOutbox, SmtpProvider, TwilioSmsProvider, WebhookSmsProvider
from idp.courier.models import CourierMessage
from idp.courier.providers import providers_from_settings
from idp.courier.templates import KINDS, LOCALES, NOTICE_KINDS, render
from idp.db import utcnow
from idp.keys.crypto import unseal
from idp.otp import OtpService, Purpose
from idp.settings import Settings
from tests.mail_sms import (
    TWILIO_SID, TWILIO_TOKEN, WEBHOOK_SECRET, SmsGateway, code_in,
)


@pytest.fixture
def gateway():
    server = SmsGateway()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
async def empty_outbox(services):
    """Each test sees only its own messages (the outbox table belongs to these tests alone)."""
    async def empty(db):
        await db.execute(delete(CourierMessage))
    await services.db.run(empty)


def _courier(smtp=None, gateway=None, *, sms="webhook", key=None, **options) -> Courier:
    providers = {}
    if smtp is not None:
        providers["email"] = SmtpProvider(host="127.0.0.1", port=smtp.port, starttls=False,
                                          username=None, password=None,
                                          mail_from="idp <no-reply@idp.test>")
    if gateway is not None:
        providers["sms"] = (
            WebhookSmsProvider(url=f"{gateway.url}/webhook", secret=WEBHOOK_SECRET) if sms == "webhook"
            else TwilioSmsProvider(base_url=gateway.url, account_sid=TWILIO_SID,
                                   auth_token=TWILIO_TOKEN, sender="+358400000000"))
    return Courier(key or secrets.token_bytes(32), providers, **{"backoff_seconds": 60, **options})


def _otp() -> OtpService:
    return OtpService(secrets.token_bytes(32), resend_cooldown=0)


async def _send_code(services, otp, courier, *, purpose, channel, recipient, locale="en"):
    """What a flow step will do: issue a code and queue its message in one transaction."""
    async def work(db):
        issued = await otp.issue(db, purpose, recipient)
        return issued, await courier.enqueue(
            db, channel=channel, recipient=recipient, kind=purpose, locale=locale,
            params={"code": issued.code, "minutes": issued.ttl_seconds // 60})
    return await services.db.run(work)


async def _row(services, message_id) -> CourierMessage:
    return await services.db.run(lambda db: db.get(CourierMessage, message_id))


async def test_a_password_reset_code_arrives_by_email_and_works(services, smtp):
    otp, courier = _otp(), _courier(smtp)
    address = f"maija-{secrets.token_hex(3)}@example.com"
    _, message_id = await _send_code(services, otp, courier, purpose=Purpose.PASSWORD_RESET,
                                     channel="email", recipient=address, locale="fi-FI")
    assert (await courier.deliver_due(services.db)).sent == 1

    [mail] = smtp.to(address)
    assert mail["Subject"] == "Salasanan vaihtokoodi"
    body = smtp.body(mail)
    assert "ei ole salasana" in body and "10 minuuttia" in body
    await services.db.run(lambda db: otp.verify(db, Purpose.PASSWORD_RESET, address, code_in(body)))
    row = await _row(services, message_id)
    assert (row.state, row.attempts, row.locale) == ("sent", 1, "fi") and row.sent_at is not None


async def test_a_login_code_arrives_by_signed_webhook_sms_and_works(services, gateway):
    otp, courier = _otp(), _courier(gateway=gateway)
    number = f"+35840{secrets.randbelow(10 ** 7):07d}"
    _, message_id = await _send_code(services, otp, courier, purpose=Purpose.LOGIN, channel="sms",
                                     recipient=number, locale="hu")
    assert (await courier.deliver_due(services.db)).sent == 1

    [sms] = gateway.to(number)
    assert sms["text"].startswith("A kódja: ") and "nem jelszó" in sms["text"]
    assert sms["idempotency_key"] == message_id and gateway.bad_signatures == 0
    await services.db.run(lambda db: otp.verify(db, Purpose.LOGIN, number, code_in(sms["text"])))


async def test_a_forged_signature_is_refused_by_the_gateway_and_the_message_fails(services, gateway):
    courier = Courier(secrets.token_bytes(32), {
        "sms": WebhookSmsProvider(url=f"{gateway.url}/webhook", secret="not-the-shared-secret")})
    async def work(db):
        return await courier.enqueue(db, channel="sms", recipient="+358401234567", kind="login",
                                     locale="en", params={"code": "123456"})
    message_id = await services.db.run(work)
    await courier.deliver_due(services.db)
    assert gateway.bad_signatures == 1 and gateway.received == []
    row = await _row(services, message_id)
    assert (row.state, row.last_error) == ("failed", "HTTP 401")  # a 4xx is not retried


async def test_a_verification_code_arrives_through_the_twilio_api_shape(services, gateway):
    otp, courier = _otp(), _courier(gateway=gateway, sms="twilio")
    number = f"+46701{secrets.randbelow(10 ** 6):06d}"
    await _send_code(services, otp, courier, purpose=Purpose.VERIFY_PHONE, channel="sms",
                     recipient=number, locale="sv")
    assert (await courier.deliver_due(services.db)).sent == 1

    [sms] = gateway.to(number)
    assert sms["shape"] == "twilio" and sms["from"] == "+358400000000"
    assert sms["text"].startswith("Din kod är ") and "inte ett lösenord" in sms["text"]
    await services.db.run(lambda db: otp.verify(db, Purpose.VERIFY_PHONE, number, code_in(sms["text"])))


async def test_two_server_errors_then_delivery_on_the_third_attempt_with_backoff(services, gateway):
    otp, courier = _otp(), _courier(gateway=gateway, backoff_seconds=60)
    gateway.script = [500, 500]
    number = "+358401110001"
    _, message_id = await _send_code(services, otp, courier, purpose=Purpose.LOGIN, channel="sms",
                                     recipient=number)

    report = await courier.deliver_due(services.db)
    assert report.retried == 1
    row = await _row(services, message_id)
    first_delay = (row.next_attempt_at - utcnow()).total_seconds()
    assert (row.state, row.attempts, row.last_error) == ("queued", 1, "HTTP 500")
    assert 55 < first_delay <= 60
    # Not due yet: nothing is sent.
    assert (await courier.deliver_due(services.db)) == type(report)()

    await courier.deliver_due(services.db, now=utcnow() + timedelta(seconds=61))
    row = await _row(services, message_id)
    assert row.attempts == 2 and 115 < (row.next_attempt_at - utcnow()).total_seconds() <= 120

    report = await courier.deliver_due(services.db, now=utcnow() + timedelta(seconds=121))
    assert report.sent == 1
    row = await _row(services, message_id)
    assert (row.state, row.attempts, row.last_error) == ("sent", 3, None)
    assert gateway.requests == 3 and len(gateway.to(number)) == 1


async def test_a_gateway_that_keeps_failing_leaves_the_message_failed_after_max_attempts(services, gateway):
    courier = _courier(gateway=gateway, max_attempts=3, backoff_seconds=1)
    gateway.always = 503
    async def work(db):
        return await courier.enqueue(db, channel="sms", recipient="+358401110002", kind="login",
                                     locale="en", params={"code": "654321"})
    message_id = await services.db.run(work)
    later = utcnow()
    for _ in range(5):
        later += timedelta(hours=1)
        await courier.deliver_due(services.db, now=later)

    row = await _row(services, message_id)
    assert (row.state, row.attempts, row.last_error, row.sent_at) == ("failed", 3, "HTTP 503", None)
    assert gateway.requests == 3


async def test_an_unreachable_smtp_server_is_retried_and_the_error_names_no_secret(services):
    dead = SmtpProvider(host="127.0.0.1", port=1, starttls=False, username=None, password=None,
                        mail_from="idp@idp.test", timeout=2)
    courier = Courier(secrets.token_bytes(32), {"email": dead}, backoff_seconds=1)
    async def work(db):
        return await courier.enqueue(db, channel="email", recipient="x@example.com",
                                     kind="verify_email", locale="en", params={"code": "246810"})
    message_id = await services.db.run(work)
    assert (await courier.deliver_due(services.db)).retried == 1
    row = await _row(services, message_id)
    assert row.state == "queued" and row.last_error.startswith("SMTP ")
    assert "246810" not in row.last_error


async def test_parallel_workers_send_every_message_exactly_once(services, gateway, smtp):
    courier = _courier(smtp, gateway)
    numbers = [f"+35850{index:07d}" for index in range(15)]
    addresses = [f"crowd-{index}-{secrets.token_hex(2)}@example.com" for index in range(15)]

    async def work(db):
        for recipient in numbers:
            await courier.enqueue(db, channel="sms", recipient=recipient, kind="login", locale="en",
                                  params={"code": "111111"})
        for recipient in addresses:
            await courier.enqueue(db, channel="email", recipient=recipient, kind="login",
                                  locale="en", params={"code": "111111"})
    await services.db.run(work)

    reports = await asyncio.gather(*(courier.deliver_due(services.db) for _ in range(6)))
    assert sum(report.sent for report in reports) == 30
    assert sorted(m["to"] for m in gateway.received) == numbers
    assert sorted(m["To"] for m in smtp.messages if m["To"] in addresses) == sorted(addresses)
    states = await services.db.run(
        lambda db: _scalars(db, select(CourierMessage.state, CourierMessage.attempts)))
    assert set(states) == {("sent", 1)}


async def _scalars(db, query):
    return [tuple(row) for row in (await db.execute(query)).all()]


async def test_the_code_is_sealed_at_rest_and_never_logged(services, gateway, caplog):
    caplog.set_level(logging.DEBUG, logger="idp")
    key = secrets.token_bytes(32)
    otp, courier = _otp(), _courier(gateway=gateway, key=key, max_attempts=2)
    gateway.script = [500]
    number = "+358401110003"
    issued, message_id = await _send_code(services, otp, courier, purpose=Purpose.SECOND_FACTOR,
                                          channel="sms", recipient=number)
    for step in range(3):
        await courier.deliver_due(services.db, now=utcnow() + timedelta(hours=step))
    assert code_in(gateway.to(number)[0]["text"]) == issued.code

    row = await _row(services, message_id)
    columns = {name: getattr(row, name) for name in CourierMessage.__table__.columns.keys()}  # noqa: SIM118
    assert issued.code not in repr(columns)
    assert issued.code.encode() not in row.payload
    assert json.loads(unseal(key, row.payload, f"courier:{message_id}"))["code"] == issued.code
    assert issued.code not in caplog.text and number not in caplog.text


async def test_the_dev_outbox_prints_and_files_the_message_but_logs_no_code(services, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="idp")
    console, path = io.StringIO(), tmp_path / "var" / "outbox.log"
    outbox = DevOutbox(path, stream=console)
    courier = Courier(secrets.token_bytes(32), {"email": outbox, "sms": outbox})
    otp = _otp()
    issued, _ = await _send_code(services, otp, courier, purpose=Purpose.VERIFY_EMAIL,
                                 channel="email", recipient="dev@example.com")
    assert (await courier.deliver_due(services.db)).sent == 1

    assert issued.code in console.getvalue() and issued.code in path.read_text()
    assert "Subject: Confirm your email address" in path.read_text()
    assert "message queued for d***@example.com" in caplog.text
    assert issued.code not in caplog.text and "dev@example.com" not in caplog.text


def test_settings_choose_the_providers(tmp_path):
    default = providers_from_settings(Settings(dev_key_dir=tmp_path))
    assert isinstance(default["email"], DevOutbox) and isinstance(default["sms"], DevOutbox)

    chosen = providers_from_settings(Settings(
        dev_key_dir=tmp_path, email_provider="smtp", smtp_host="mail.example", smtp_port=2525,
        sms_provider="twilio", twilio_base_url="http://127.0.0.1:9", twilio_account_sid="AC1",
        twilio_auth_token="t", twilio_from="+3584000"))
    assert isinstance(chosen["email"], SmtpProvider) and chosen["email"].port == 2525
    assert chosen["sms"].url == "http://127.0.0.1:9/2010-04-01/Accounts/AC1/Messages.json"
    with pytest.raises(RuntimeError):
        providers_from_settings(Settings(dev_key_dir=tmp_path, sms_provider="webhook"))


def test_every_kind_has_a_text_in_every_language_that_warns_it_is_not_a_password():
    warning = {"en": "not a password", "fi": "ei ole salasana", "sv": "inte ett lösenord",
               "hu": "nem jelszó"}
    for kind in KINDS:
        for locale in LOCALES:
            for channel in ("email", "sms"):
                text = render(channel, kind, locale, {"code": "123456", "minutes": 10})
                assert "123456" in text.body and warning[locale] in text.body, (kind, locale)
                assert (text.subject is None) == (channel == "sms")
    assert render("sms", "login", "de-DE", {"code": "1"}).body.startswith("Your code is")


NOTICE_PARAMS = {"temporary_password": {"password": "7K3M-Q9XD-2RFA-W8NP", "hours": 24}}
# Organisation links (orgs/invitations.py, orgs/ownership.py).
NOTICE_PARAMS["org_invitation"] = NOTICE_PARAMS["ownership_offer"] = {
    "org": "Acme Oy", "url": "https://idp.example/orgs/invitations/idpinv_x", "expires": "2030-01-31 12:00 UTC"}
# Organisation usernames (orgs/usernames.py).
NOTICE_PARAMS["org_username"] = {"organisation": "Acme Oy", "username": "maija.meikalainen@acme-oy",
                                 "password": "7K3M-Q9XD-2RFA-W8NP", "hours": 168}
# Password reset links an integrator asks for (flows/reset_links.py).
NOTICE_PARAMS["password_reset_link"] = {"url": "https://idp.example/reset/link/idprst_x",
                                        "expires": "2030-01-31 12:00 UTC"}

# Contact-change requests (orgs/contacts.py): the same sample values that module's tests use.
from tests.test_org_contacts import CONTACT_NOTICE_PARAMS  # noqa: E402

NOTICE_PARAMS |= CONTACT_NOTICE_PARAMS


def test_every_notice_has_a_subject_a_body_and_an_sms_in_every_language():
    expected = {"registration_exists", "factor_added", "factor_removed", "identifier_added",
                "identifier_removed", "temporary_password", "password_changed"}
    assert expected <= set(NOTICE_KINDS)
    for kind in NOTICE_KINDS:
        params = NOTICE_PARAMS.get(kind, {})
        english = render("email", kind, "en", params)
        for locale in LOCALES:
            email, sms = render("email", kind, locale, params), render("sms", kind, locale, params)
            assert email.subject and email.body.endswith("\n") and sms.subject is None, (kind, locale)
            assert "{" not in email.body + sms.body, (kind, locale)  # no placeholder left over
            assert len(sms.body) <= 320, (kind, locale)  # at most three SMS parts
            if locale != "en":  # translated, not English left behind
                assert email.subject != english.subject and email.body != english.body, (kind, locale)


def test_security_notices_say_what_to_do_if_it_was_not_you():
    advice = {"en": "reset your password", "fi": "vaihda salasanasi", "sv": "återställ lösenordet",
              "hu": "állítsa vissza a jelszavát"}
    for kind in ("factor_added", "factor_removed", "identifier_added", "identifier_removed"):
        for locale in LOCALES:
            for channel in ("email", "sms"):
                assert advice[locale] in render(channel, kind, locale, {}).body, (kind, locale, channel)
    assert "email address" in render("email", "registration_exists", "en", {}).body
    assert "phone number" in render("sms", "registration_exists", "en", {}).body


def test_the_temporary_password_notice_carries_the_password_and_its_lifetime():
    words = {"en": "24 hours", "fi": "24 tunnin", "sv": "24 timmar", "hu": "24 órán"}
    for locale in LOCALES:
        for channel in ("email", "sms"):
            body = render(channel, "temporary_password", locale, NOTICE_PARAMS["temporary_password"]).body
            assert "7K3M-Q9XD-2RFA-W8NP" in body and words[locale] in body, (locale, channel)
    assert "for 1 hour," in render("sms", "temporary_password", "en", {"password": "x", "hours": 1}).body
    assert "1 timme." in render("sms", "temporary_password", "sv", {"password": "x", "hours": 1}).body
    with pytest.raises(ValueError, match="hours"):
        render("email", "temporary_password", "en", {"password": "x"})


async def test_an_unknown_kind_fails_the_callers_transaction(services):
    courier = Courier(secrets.token_bytes(32), {})
    with pytest.raises(ValueError):
        await services.db.run(lambda db: courier.enqueue(
            db, channel="email", recipient="a@example.com", kind="no_such_kind", locale="en",
            params={}))
