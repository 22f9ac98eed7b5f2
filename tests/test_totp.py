"""TOTP second factor (RFC 6238; SECURITY-CHECKLIST 65, 66): enrolment with an otpauth URI and
QR code, confirmation by a first code, a ±1 step window, and a step that can never be used twice,
even by parallel requests."""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlparse

import pyotp
from sqlalchemy import text

from idp.db import utcnow
from idp.keys.crypto import unseal
from idp.services import derive_key


async def _enrolled(services, rp, *, confirm: bool = True):
    email, user_id = await rp.user()
    async with services.db.transaction() as db:
        enrolment = await services.factors.totp.enrol(db, user_id=user_id, account_name=email, label="phone")
    at = utcnow()
    if confirm:
        async with services.db.transaction() as db:
            assert await services.factors.totp.confirm(
                db, user_id=user_id, factor_id=enrolment.factor_id,
                code=pyotp.TOTP(enrolment.secret).at(at), at=at)
    return email, user_id, enrolment, at


async def _verify(services, user_id: str, code: str, at=None) -> bool:
    async with services.db.transaction() as db:
        return await services.factors.totp.verify(db, user_id=user_id, code=code, at=at)


async def _has_factor(services, user_id: str) -> bool:
    async with services.db.transaction() as db:
        return await services.factors.has_second_factor(db, user_id)


async def test_enrolment_gives_an_otpauth_uri_and_a_qr_code(services, rp):
    email, _, enrolment, _ = await _enrolled(services, rp, confirm=False)
    uri = urlparse(enrolment.uri)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == f"/{services.settings.totp_issuer}:{email}"
    params = {k: v[0] for k, v in parse_qs(uri.query).items()}
    assert params == {"secret": enrolment.secret, "issuer": services.settings.totp_issuer,
                      "algorithm": "SHA1", "digits": "6", "period": "30"}
    assert len(enrolment.secret) == 32  # base32: 160 bits
    # pyotp reads the URI back to the same generator.
    parsed = pyotp.parse_uri(enrolment.uri)
    assert parsed.secret == enrolment.secret and parsed.digits == 6 and parsed.interval == 30
    assert enrolment.qr_svg.startswith("<svg") and "<path" in enrolment.qr_svg


async def test_an_unconfirmed_factor_does_not_count_and_verifies_nothing(services, rp):
    _, user_id, enrolment, at = await _enrolled(services, rp, confirm=False)
    assert not await _has_factor(services, user_id)
    assert not await _verify(services, user_id, pyotp.TOTP(enrolment.secret).at(at), at)


async def test_confirmation_needs_a_valid_code_and_then_the_factor_counts(services, rp):
    _, user_id, enrolment, at = await _enrolled(services, rp, confirm=False)
    totp = pyotp.TOTP(enrolment.secret)
    wrong = f"{(int(totp.at(at)) + 1) % 1_000_000:06d}"
    async with services.db.transaction() as db:
        assert not await services.factors.totp.confirm(db, user_id=user_id, factor_id=enrolment.factor_id,
                                                       code=wrong, at=at)
    _, other_user = await rp.user()
    async with services.db.transaction() as db:  # someone else's enrolment
        assert not await services.factors.totp.confirm(db, user_id=other_user, factor_id=enrolment.factor_id,
                                                       code=totp.at(at), at=at)
    assert not await _has_factor(services, user_id)
    async with services.db.transaction() as db:
        assert await services.factors.totp.confirm(db, user_id=user_id, factor_id=enrolment.factor_id,
                                                   code=totp.at(at), at=at)
    assert await _has_factor(services, user_id)
    # The confirming code is used up, and a confirmed factor cannot be confirmed again.
    assert not await _verify(services, user_id, totp.at(at), at)
    later = at + timedelta(seconds=30)
    async with services.db.transaction() as db:
        assert not await services.factors.totp.confirm(db, user_id=user_id, factor_id=enrolment.factor_id,
                                                       code=totp.at(later), at=later)


async def test_a_new_enrolment_replaces_an_unconfirmed_one(services, rp):
    email, user_id, first, at = await _enrolled(services, rp, confirm=False)
    async with services.db.transaction() as db:
        second = await services.factors.totp.enrol(db, user_id=user_id, account_name=email)
    assert second.secret != first.secret
    async with services.db.transaction() as db:
        assert not await services.factors.totp.confirm(db, user_id=user_id, factor_id=first.factor_id,
                                                       code=pyotp.TOTP(first.secret).at(at), at=at)


async def test_verify_accepts_one_step_either_side_and_each_step_once(services, rp):
    _, user_id, enrolment, at = await _enrolled(services, rp)  # confirmation used step(at)
    totp = pyotp.TOTP(enrolment.secret)
    base = at + timedelta(minutes=5)  # well clear of the confirming step
    step = timedelta(seconds=30)
    assert not await _verify(services, user_id, totp.at(base - 2 * step), base)
    assert not await _verify(services, user_id, totp.at(base + 2 * step), base)
    assert await _verify(services, user_id, totp.at(base - step), base)
    assert not await _verify(services, user_id, totp.at(base - step), base), "replayed step"
    assert await _verify(services, user_id, totp.at(base), base)
    assert not await _verify(services, user_id, totp.at(base), base), "replayed step"
    assert await _verify(services, user_id, totp.at(base + step), base)
    # Once a later step is used, earlier codes in the window are refused too.
    assert not await _verify(services, user_id, totp.at(base), base + step)


async def test_codes_at_the_real_clock_and_with_spaces(services, rp):
    _, user_id, enrolment, _ = await _enrolled(services, rp)
    totp = pyotp.TOTP(enrolment.secret)
    code = totp.at(utcnow() + timedelta(seconds=30))  # next step: not the confirming one
    assert await _verify(services, user_id, f"{code[:3]} {code[3:]}")
    for junk in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦"):
        assert not await _verify(services, user_id, junk)


async def test_a_wrong_code_is_refused(services, rp):
    _, user_id, enrolment, at = await _enrolled(services, rp)
    later = at + timedelta(minutes=2)
    valid = {pyotp.TOTP(enrolment.secret).at(later + timedelta(seconds=s)) for s in (-30, 0, 30)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in valid)
    assert not await _verify(services, user_id, wrong, later)


async def test_ten_parallel_uses_of_one_code_succeed_once(services, rp):
    _, user_id, enrolment, at = await _enrolled(services, rp)
    later = at + timedelta(minutes=3)
    code = pyotp.TOTP(enrolment.secret).at(later)
    results = await asyncio.gather(*(_verify(services, user_id, code, later) for _ in range(10)))
    assert sorted(results) == [False] * 9 + [True]


async def test_the_secret_is_sealed_in_the_database(services, rp):
    _, _, enrolment, _ = await _enrolled(services, rp)
    async with services.db.transaction() as db:
        row = (await db.execute(text("SELECT * FROM totp_factors WHERE id = :id"),
                                {"id": enrolment.factor_id})).mappings().one()
    stored = b"".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for v in row.values())
    assert enrolment.secret.encode() not in stored
    assert enrolment.secret.lower().encode() not in stored
    assert base64.b32decode(enrolment.secret) not in stored
    key = derive_key(services.settings.key_encryption_key(), "totp")
    assert unseal(key, bytes(row["secret_sealed"]), enrolment.factor_id).decode() == enrolment.secret


async def test_removing_the_factor_stops_it_and_drops_recovery_codes(services, rp):
    _, user_id, enrolment, at = await _enrolled(services, rp)
    async with services.db.transaction() as db:
        await services.factors.recovery.generate(db, user_id)
    _, stranger = await rp.user()
    async with services.db.transaction() as db:
        assert not await services.factors.remove_totp(db, user_id=stranger, factor_id=enrolment.factor_id)
    assert await _has_factor(services, user_id)
    async with services.db.transaction() as db:
        assert await services.factors.remove_totp(db, user_id=user_id, factor_id=enrolment.factor_id)
    assert not await _has_factor(services, user_id)
    later = at + timedelta(minutes=4)
    assert not await _verify(services, user_id, pyotp.TOTP(enrolment.secret).at(later), later)
    async with services.db.transaction() as db:
        assert await services.factors.recovery.remaining(db, user_id) == 0
