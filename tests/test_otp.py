"""One-time codes: purpose binding, lifetime, single use, wrong-try caps, resend cooldown, and the
atomic rules under parallel requests (each request in its own transaction on the real database)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from idp.db import utcnow
from idp.otp import (
    CodeExpired, CodeInvalid, CodeProblem, OtpService, Purpose, ResendTooSoon, TooManyAttempts,
)
from idp.otp.models import OneTimeCode, OtpSubject


def _address() -> str:
    return f"person-{secrets.token_hex(4)}@example.com"


def _otp(**overrides) -> OtpService:
    options = {"resend_cooldown": 0, **overrides}
    return OtpService(secrets.token_bytes(32), **options)


async def _issue(services, otp, purpose, destination):
    return await services.db.run(lambda db: otp.issue(db, purpose, destination))


async def _verify(services, otp, purpose, destination, code):
    return await services.db.run(lambda db: otp.verify(db, purpose, destination, code))


async def _outcome(services, otp, purpose, destination, code) -> str:
    try:
        await _verify(services, otp, purpose, destination, code)
    except CodeProblem as problem:
        return type(problem).__name__
    return "ok"


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


async def _all_at_once(count: int, work):
    start = asyncio.Event()

    async def one():
        await start.wait()
        return await work()

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    await asyncio.sleep(0)
    start.set()
    return await asyncio.gather(*tasks)


async def test_a_code_is_six_digits_and_works_once(services):
    otp, address = _otp(), _address()
    issued = await _issue(services, otp, Purpose.VERIFY_EMAIL, address)
    assert len(issued.code) == 6 and issued.code.isdigit()
    assert issued.code not in repr(issued)
    assert issued.expires_at - issued.expires_at.now(issued.expires_at.tzinfo) <= timedelta(minutes=10)

    await _verify(services, otp, Purpose.VERIFY_EMAIL, address, issued.code)
    with pytest.raises(CodeInvalid):
        await _verify(services, otp, Purpose.VERIFY_EMAIL, address, issued.code)


async def test_more_digits_can_be_configured_but_never_fewer_than_six(services):
    otp, address = _otp(digits=8), _address()
    assert len((await _issue(services, otp, "login", address)).code) == 8
    with pytest.raises(ValueError):
        _otp(digits=5)


async def test_a_code_is_bound_to_its_purpose_and_destination(services):
    otp, address = _otp(), _address()
    issued = await _issue(services, otp, Purpose.PASSWORD_RESET, address)

    assert await _outcome(services, otp, Purpose.LOGIN, address, issued.code) == "CodeInvalid"
    assert await _outcome(services, otp, Purpose.PASSWORD_RESET, _address(), issued.code) == "CodeInvalid"
    # Another service key (another KEK) does not accept it either.
    assert await _outcome(services, _otp(), Purpose.PASSWORD_RESET, address, issued.code) == "CodeInvalid"
    assert await _outcome(services, otp, Purpose.PASSWORD_RESET, address, issued.code) == "ok"


async def test_an_expired_code_is_refused(services):
    otp, address = _otp(), _address()
    issued = await _issue(services, otp, Purpose.LOGIN, address)

    async def age(db):
        await db.execute(update(OneTimeCode).where(OneTimeCode.id == issued.id).values(
            expires_at=utcnow() - timedelta(seconds=1)))
    await services.db.run(age)

    assert await _outcome(services, otp, Purpose.LOGIN, address, issued.code) == "CodeExpired"


async def test_five_wrong_tries_burn_the_code(services):
    otp, address = _otp(), _address()
    issued = await _issue(services, otp, Purpose.SECOND_FACTOR, address)
    for _ in range(5):
        assert await _outcome(services, otp, "second_factor", address, _wrong(issued.code)) == "CodeInvalid"

    assert await _outcome(services, otp, "second_factor", address, issued.code) == "TooManyAttempts"
    row = await services.db.run(lambda db: db.get(OneTimeCode, issued.id))
    assert row.attempts == 5 and row.consumed_at is None


async def test_a_new_code_voids_the_previous_one(services):
    otp, address = _otp(), _address()
    first = await _issue(services, otp, Purpose.VERIFY_PHONE, address)
    second = await _issue(services, otp, Purpose.VERIFY_PHONE, address)

    if first.code != second.code:  # one in a million they are equal
        assert await _outcome(services, otp, "verify_phone", address, first.code) == "CodeInvalid"
    assert await _outcome(services, otp, "verify_phone", address, second.code) == "ok"
    row = await services.db.run(lambda db: db.get(OneTimeCode, first.id))
    assert row.voided_at is not None


async def test_a_resend_within_the_cooldown_is_refused_with_retry_after(services):
    otp, address = _otp(resend_cooldown=30), _address()
    await _issue(services, otp, Purpose.LOGIN, address)
    with pytest.raises(ResendTooSoon) as refused:
        await _issue(services, otp, Purpose.LOGIN, address)
    assert 1 <= refused.value.retry_after <= 30
    # The cooldown is per purpose: a reset code for the same address is not held back.
    await _issue(services, otp, Purpose.PASSWORD_RESET, address)


async def test_parallel_resends_issue_exactly_one_code(services):
    otp, address = _otp(resend_cooldown=30), _address()

    async def ask():
        try:
            await _issue(services, otp, Purpose.LOGIN, address)
        except ResendTooSoon:
            return "refused"
        return "issued"

    assert Counter(await _all_at_once(10, ask)) == {"issued": 1, "refused": 9}


async def test_failures_across_codes_lock_the_destination_until_a_success_resets_them(services):
    otp, address = _otp(max_failures=7, lockout_seconds=900), _address()
    for _ in range(3):  # three codes, a new one after each pair of wrong tries...
        issued = await _issue(services, otp, Purpose.LOGIN, address)
        for _ in range(2):
            await _outcome(services, otp, "login", address, _wrong(issued.code))
    # ... does not reset the count (NIST SP 800-63B): 6 failures so far.
    assert await services.db.run(lambda db: otp.failures(db, "login", address)) == 6
    issued = await _issue(services, otp, Purpose.LOGIN, address)
    assert await _outcome(services, otp, "login", address, issued.code) == "ok"
    assert await services.db.run(lambda db: otp.failures(db, "login", address)) == 0

    issued = await _issue(services, otp, Purpose.LOGIN, address)
    for _ in range(4):
        await _outcome(services, otp, "login", address, _wrong(issued.code))
    issued = await _issue(services, otp, Purpose.LOGIN, address)
    for _ in range(3):
        await _outcome(services, otp, "login", address, _wrong(issued.code))
    # Locked: even the right code is refused, and no new code is issued.
    assert await _outcome(services, otp, "login", address, issued.code) == "TooManyAttempts"
    with pytest.raises(TooManyAttempts) as locked:
        await _issue(services, otp, Purpose.LOGIN, address)
    assert 850 <= locked.value.retry_after <= 900

    # When the lockout has passed, codes work again.
    async def later(db):
        await db.execute(update(OtpSubject).values(
            last_failure_at=utcnow() - timedelta(seconds=901)
        ).where(OtpSubject.subject == otp._subject(Purpose.LOGIN, address)))
    await services.db.run(later)
    issued = await _issue(services, otp, Purpose.LOGIN, address)
    assert await _outcome(services, otp, "login", address, issued.code) == "ok"


@pytest.mark.parametrize("round_", range(3))
async def test_a_correct_code_used_in_ten_parallel_requests_succeeds_once(services, round_):
    otp, address = _otp(), _address()
    issued = await _issue(services, otp, Purpose.PASSWORD_RESET, address)
    outcomes = await _all_at_once(
        10, lambda: _outcome(services, otp, "password_reset", address, issued.code))
    assert Counter(outcomes)["ok"] == 1, outcomes
    assert set(outcomes) <= {"ok", "CodeInvalid"}


async def test_fifty_parallel_wrong_tries_are_each_counted_once(services):
    otp, address = _otp(max_attempts=100, max_failures=1000), _address()
    issued = await _issue(services, otp, Purpose.LOGIN, address)
    outcomes = await _all_at_once(
        50, lambda: _outcome(services, otp, "login", address, _wrong(issued.code)))

    assert Counter(outcomes) == {"CodeInvalid": 50}
    row = await services.db.run(lambda db: db.get(OneTimeCode, issued.id))
    assert row.attempts == 50
    assert await services.db.run(lambda db: otp.failures(db, "login", address)) == 50
    assert await _outcome(services, otp, "login", address, issued.code) == "ok"


async def test_fifty_parallel_wrong_tries_burn_the_code_at_exactly_five(services):
    otp, address = _otp(), _address()
    issued = await _issue(services, otp, Purpose.LOGIN, address)
    outcomes = await _all_at_once(
        50, lambda: _outcome(services, otp, "login", address, _wrong(issued.code)))

    assert Counter(outcomes) == {"CodeInvalid": 5, "TooManyAttempts": 45}
    row = await services.db.run(lambda db: db.get(OneTimeCode, issued.id))
    assert row.attempts == 5
    assert await services.db.run(lambda db: otp.failures(db, "login", address)) == 5
    assert await _outcome(services, otp, "login", address, issued.code) == "TooManyAttempts"


async def test_every_refusal_shows_the_same_message(services):
    messages = {cls.public_message for cls in (CodeInvalid, CodeExpired, TooManyAttempts)}
    assert len(messages) == 1


async def test_the_code_is_never_stored_or_logged(services, caplog):
    caplog.set_level(logging.DEBUG, logger="idp")
    otp, address = _otp(), _address()
    issued = await _issue(services, otp, Purpose.VERIFY_EMAIL, address)
    await _outcome(services, otp, "verify_email", address, _wrong(issued.code))
    await _verify(services, otp, Purpose.VERIFY_EMAIL, address, issued.code)

    async def rows(db):
        codes = (await db.execute(select(OneTimeCode))).scalars().all()
        subjects = (await db.execute(select(OtpSubject))).scalars().all()
        return [str(vars(row)) for row in [*codes, *subjects]]
    stored = " ".join(await services.db.run(rows))
    assert address not in stored
    row = await services.db.run(lambda db: db.get(OneTimeCode, issued.id))
    assert issued.code not in str(vars(row))
    assert issued.code not in caplog.text
