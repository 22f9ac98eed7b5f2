"""Temporary passwords (accounts/temporary.py, `idp users temp-password`): set by an administrator,
delivered for real (an SMTP server and an SMS gateway on 127.0.0.1), ending every session and
token family, and replaced by the person's own at the next sign-in."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from idp.accounts.models import User
from idp.accounts.password_policy import PasswordRejected
from idp.accounts.temporary import (
    CROCKFORD, NoChangePending, NoVerifiedDestination, SameAsTemporary, TemporaryPasswordExpired,
    generate, masked,
)
from idp.courier.models import CourierMessage
from idp.db import utcnow
from idp.flows.password_check import PasswordCheck, run_pausing_for_hashes
from idp.services import Services
from idp.sessions.models import BrowserSession
from idp.settings import Settings
from tests import secrets_registry
from tests.conftest import ISSUER
from tests.mail_sms import emailed_code, mail_to, until
from tests.rp import PASSWORD, RelyingParty
from tests.test_cli import _env, failed, idp, ok
from tests.token_support import OFFLINE, assert_error, refresh
from tests.password_support import password_owner

TEMPORARY = re.compile(rf"[{CROCKFORD}]{{4}}(?:-[{CROCKFORD}]{{4}}){{3}}")
OWN_PASSWORD = "my very own new passphrase"
secrets_registry.remember(OWN_PASSWORD)


@pytest.fixture
def s(delivering_app):
    return delivering_app.state.services


@pytest.fixture
def rp(delivering_app, s) -> RelyingParty:
    return RelyingParty(delivering_app, s)


async def _user(s, rp, *, phone: str | None = None, phone_verified: bool = True,
                email_verified: bool = True) -> User:
    email = f"maija-{secrets.token_hex(5)}@example.com"

    async def create(db):
        user = await s.accounts.create_user(db, email=email, password=PASSWORD, name="Maija",
                                            email_verified=email_verified)
        if phone:
            await s.accounts.add_identifier(db, user, "phone", phone, verified=phone_verified)
        return user
    return await s.db.run(create)


def _number() -> str:
    return f"+35840{secrets.randbelow(10**7):07d}"


async def _set(s, user_id: str, **options) -> str:
    async def work(db):
        return await s.temporary_passwords.set(db, await db.get(User, user_id), **options)
    return await s.db.run(work)


async def _load(s, user_id: str) -> User:
    return await s.db.run(lambda db: db.get(User, user_id))


async def _live_sessions(s, user_id: str) -> list:
    rows = await s.db.run(lambda db: db.execute(select(BrowserSession.id).where(
        BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None))))
    return rows.all()


async def _messages_to(s, recipient: str) -> list[str]:
    rows = await s.db.run(lambda db: db.execute(select(CourierMessage.kind).where(
        CourierMessage.recipient == recipient)))
    return list(rows.scalars())


# ---- the service --------------------------------------------------------------------------------

async def test_a_generated_password_is_emailed_and_ends_every_session_and_token_family(s, rp, smtp):
    user = await _user(s, rp)
    client = await rp.register()
    async with rp.browser() as other:
        tokens = await rp.exchange(other, client, await rp.sign_in(other, client, user.email, scope=OFFLINE))
        assert tokens.status_code == 200, tokens.text
        assert await _live_sessions(s, user.id)

        before = utcnow()
        password = await _set(s, user.id, via="email")
        assert TEMPORARY.fullmatch(password)

        stored = await _load(s, user.id)
        assert stored.password_must_change is True
        ttl = timedelta(seconds=s.settings.temporary_password_ttl)
        assert before + ttl <= stored.password_expires_at <= utcnow() + ttl
        assert not s.temporary_passwords.expired(stored)
        # Everyone who was signed in is out: browsers and token families alike.
        assert await _live_sessions(s, user.id) == []
        assert_error(await refresh(other, rp, client, tokens.json()["refresh_token"]), 400, "invalid_grant")
        assert (await other.post("/userinfo", headers={
            "Authorization": f"Bearer {tokens.json()['access_token']}"})).status_code == 401

    mail = (await mail_to(smtp, user.email))[0]
    body = smtp.body(mail)
    assert mail["Subject"] == "Your temporary password"
    assert f"\n    {password}\r\n" in body and "168 hours" in body and "never" in body
    # The temporary password is the password now; the old one is not.
    assert await s.db.run(lambda db: password_owner(s, db, user.email, password))
    assert not await s.db.run(lambda db: password_owner(s, db, user.email, PASSWORD))


async def test_a_chosen_password_is_texted_to_the_verified_phone_in_the_persons_language(s, rp, gateway):
    number = _number()
    user = await _user(s, rp, phone=number)
    chosen = "a chosen temporary passphrase 42"
    secrets_registry.remember(chosen)
    assert await _set(s, user.id, via="sms", password=chosen, locale="fi-FI") == chosen

    text = (await until(lambda: gateway.to(number)))[0]["text"]
    assert text.startswith(f"Väliaikainen salasanasi on {chosen}.") and "168 tunnin" in text
    assert await s.db.run(lambda db: password_owner(s, db, number, chosen))


async def test_an_unverified_or_missing_destination_is_refused_and_nothing_changes(s, rp):
    number = _number()
    user = await _user(s, rp, phone=number, phone_verified=False, email_verified=False)
    before = await _load(s, user.id)
    session, _ = await s.db.run(lambda db: s.sessions.start(db, user_id=user.id, amr=["pwd"], acr=None))

    for via in ("email", "sms"):
        with pytest.raises(NoVerifiedDestination) as refused:
            await _set(s, user.id, via=via)
        assert refused.value.reason == "no_verified_destination"
    after = await _load(s, user.id)
    assert (after.password_hash, after.password_must_change, after.password_expires_at) == (
        before.password_hash, False, None)
    assert await _live_sessions(s, user.id) == [(session.id,)]
    assert await _messages_to(s, user.email) == [] and await _messages_to(s, number) == []
    with pytest.raises(ValueError):
        await _set(s, user.id, via="carrier pigeon")


async def test_a_chosen_password_must_pass_the_policy(s, rp):
    user = await _user(s, rp)
    for weak in ("short", "password password", user.email.split("@")[0] + "-2024-x"):
        with pytest.raises(PasswordRejected):
            await _set(s, user.id, via="email", password=weak)
    stored = await _load(s, user.id)
    assert not stored.password_must_change and await _messages_to(s, user.email) == []


def test_generated_passwords_are_readable_strong_and_pass_the_policy(s):
    seen = {generate() for _ in range(200)}
    assert len(seen) == 200
    for password in seen:
        assert TEMPORARY.fullmatch(password) and len(password) == 19  # 16 symbols of 32: 80 bits
    # About one in 20,000 random draws is mostly digits, which the policy calls guessable: the
    # service draws again until the policy accepts.
    for _ in range(200):
        password = s.temporary_passwords.new_password(())
        assert TEMPORARY.fullmatch(password) and s.password_policy.check(password) == password


def test_destinations_are_masked_for_the_operator():
    assert masked("maija.meikalainen@example.com") == "m***@example.com"
    assert masked("+358401234567") == "+358 40 *** **67"
    assert masked("+36301234567") == "+36 30 *** **67"
    assert masked("+14155552671") == "+1 415 *** **71"


async def test_expired_is_true_only_after_the_lifetime_of_a_temporary_password(s, rp):
    user = await _user(s, rp)
    assert not s.temporary_passwords.expired(await _load(s, user.id))  # an own password never expires
    await _set(s, user.id, via="email")
    stored = await _load(s, user.id)
    assert not s.temporary_passwords.expired(stored)
    stored.password_expires_at = utcnow() - timedelta(seconds=1)
    assert s.temporary_passwords.expired(stored)


# ---- the forced change at sign-in ---------------------------------------------------------------

async def _complete(s, user_id: str, new_password: str) -> None:
    """As the sign-in step does it: the policy, then (with no transaction open) the new password
    checked against the temporary one and hashed, then the change."""
    user = await _load(s, user_id)
    checked = await s.db.run(lambda db: s.temporary_passwords.check_new(db, user, new_password))
    verdict = await PasswordCheck(user.password_hash, checked, resume=None, replace=True).run(s.hasher)

    async def work(db):
        await s.temporary_passwords.complete_change(db, await db.get(User, user_id), new_password, verdict=verdict)
    await s.db.run(work)


async def test_complete_change_replaces_the_temporary_password_and_tells_the_person(s, rp, smtp):
    user = await _user(s, rp)
    temporary = await _set(s, user.id, via="email")

    with pytest.raises(PasswordRejected):
        await _complete(s, user.id, "too short")
    with pytest.raises(SameAsTemporary):
        await _complete(s, user.id, temporary)
    await _complete(s, user.id, OWN_PASSWORD)

    stored = await _load(s, user.id)
    assert (stored.password_must_change, stored.password_expires_at) == (False, None)
    assert await s.db.run(lambda db: password_owner(s, db, user.email, OWN_PASSWORD))
    assert not await s.db.run(lambda db: password_owner(s, db, user.email, temporary))
    notice = (await mail_to(smtp, user.email, 2))[1]
    assert notice["Subject"] == "Your password was changed"
    # Done once: there is nothing left to change.
    with pytest.raises(NoChangePending):
        await _complete(s, user.id, OWN_PASSWORD + " again")


async def test_an_expired_temporary_password_cannot_be_changed(s, rp):
    user = await _user(s, rp)
    await _set(s, user.id, via="email")

    async def age(db):
        (await db.get(User, user.id)).password_expires_at = utcnow() - timedelta(minutes=1)
    await s.db.run(age)
    with pytest.raises(TemporaryPasswordExpired):
        await _complete(s, user.id, OWN_PASSWORD)


async def test_a_password_reset_replaces_a_pending_temporary_password(s, rp, smtp):
    user = await _user(s, rp)
    await _set(s, user.id, via="email")
    flow = await s.db.run(lambda db: s.recovery.start(db, user.email, ip="203.0.113.7", locale="en",
                                                      browser="one browser"))
    code = await emailed_code(smtp, user.email, 2)  # the first mail is the temporary password
    await s.db.run(lambda db: s.recovery.verify_code(db, flow.id, code, browser="one browser"))
    await run_pausing_for_hashes(s.db, s.hasher, lambda db: s.recovery.set_password(
        db, flow.id, OWN_PASSWORD, browser="one browser"))

    stored = await _load(s, user.id)
    assert (stored.password_must_change, stored.password_expires_at) == (False, None)
    assert not s.temporary_passwords.expired(stored)


# ---- the CLI ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("temp-cli")
    env = _env(root)
    ok(idp(env, "migrate"))
    return env


async def _deliver(cli, smtp, gateway) -> None:
    """What the courier worker of a deployment does: send what the CLI queued, for real."""
    from tests.mail_sms import WEBHOOK_SECRET

    settings = Settings(
        issuer=ISSUER, database_url=cli["IDP_DATABASE_URL"], dev_key_dir=Path(cli["IDP_DEV_KEY_DIR"]),
        argon2_memory_kib=1024, argon2_time_cost=1, email_provider="smtp", smtp_host="127.0.0.1",
        smtp_port=smtp.port, smtp_starttls=False, sms_provider="webhook",
        sms_webhook_url=f"{gateway.url}/webhook", sms_webhook_secret=WEBHOOK_SECRET)
    services = Services(settings)
    try:
        report = await services.courier.deliver_due(services.db)
        assert report.sent >= 1 and report.failed == 0, report
    finally:
        await services.close()


async def test_cli_sends_a_temporary_password_by_email_and_prints_only_where_it_went(cli, smtp, gateway):
    email = f"cli-temp-{secrets.token_hex(4)}@example.com"
    ok(idp(cli, "users", "add", "--email", email, "--password", PASSWORD))

    shown = ok(idp(cli, "users", "temp-password", email.upper(), "--via", "email"))
    assert shown.stdout.strip() == "temporary password sent to c***@example.com"
    await _deliver(cli, smtp, gateway)
    body = smtp.body((await mail_to(smtp, email))[0])
    password = TEMPORARY.search(body).group(0)
    assert password not in shown.stdout + shown.stderr


async def test_cli_texts_a_chosen_password_and_shows_it_only_when_asked(cli, smtp, gateway):
    email, number = f"cli-temp-{secrets.token_hex(4)}@example.com", _number()
    ok(idp(cli, "users", "add", "--email", email, "--password", PASSWORD, "--phone", number))
    chosen = "an operator chosen passphrase"
    secrets_registry.remember(chosen)

    shown = ok(idp(cli, "users", "temp-password", number, "--via", "sms", "--password", chosen, "--show"))
    assert f"temporary password sent to +358 40 *** **{number[-2:]}" in shown.stdout
    assert f"temporary password: {chosen}" in shown.stdout
    await _deliver(cli, smtp, gateway)
    assert chosen in (await until(lambda: gateway.to(number)))[0]["text"]


def test_cli_refuses_an_unknown_login_a_missing_destination_and_a_weak_password(cli):
    failed(idp(cli, "users", "temp-password", "nobody@example.com", "--via", "email"), "no account")
    email = f"cli-temp-{secrets.token_hex(4)}@example.com"
    ok(idp(cli, "users", "add", "--email", email, "--password", PASSWORD))
    failed(idp(cli, "users", "temp-password", email, "--via", "sms"), "no verified phone number")
    failed(idp(cli, "users", "temp-password", email, "--via", "email", "--password", "short"),
           "at least")
    failed(idp(cli, "users", "temp-password", email, "--via", "fax"), "fax")
