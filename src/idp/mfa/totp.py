"""TOTP (RFC 6238) factors: enrol with a QR code, confirm with a first code, verify once per step.

Replay protection is one conditional UPDATE (`last_used_step < :step`), the same single-use
pattern as authorization codes: of N parallel requests carrying one code, exactly one sees a row
updated, on SQLite (BEGIN IMMEDIATE serialises writers) and on PostgreSQL (READ COMMITTED
re-checks the WHERE clause on the row after waiting for the first writer's lock).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

import pyotp
import segno
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from idp.db import new_id, utcnow
from idp.keys.crypto import seal, unseal
from idp.mfa.models import TotpFactor

DIGITS = 6
PERIOD = 30  # seconds per step
# RFC 6238 §5.2 recommends at most one step of network delay / clock drift in each direction.
WINDOW = 1


@dataclass(frozen=True)
class TotpEnrolment:
    """What the enrolment page shows once: the secret (typed by hand), the URI and its QR code."""

    factor_id: str
    secret: str
    uri: str
    qr_svg: str


class TotpService:
    def __init__(self, key: bytes, *, issuer: str) -> None:
        if not issuer or ":" in issuer:
            # Key URI Format: the label is "issuer:account"; a colon in the issuer breaks it.
            raise ValueError("the TOTP issuer must be non-empty and contain no ':'")
        self._key = key  # derive_key(kek, "totp")
        self.issuer = issuer

    async def enrol(self, db: AsyncSession, *, user_id: str, account_name: str,
                    label: str | None = None) -> TotpEnrolment:
        """A new, unconfirmed factor. An earlier enrolment the person never confirmed is dropped."""
        await db.execute(delete(TotpFactor).where(TotpFactor.user_id == user_id,
                                                  TotpFactor.confirmed_at.is_(None)))
        secret = pyotp.random_base32(32)  # 160 bits, RFC 4226 §4 R6's recommended length
        factor = TotpFactor(id=new_id(), user_id=user_id, label=label)
        factor.secret_sealed = seal(self._key, secret.encode(), factor.id)
        db.add(factor)
        await db.flush()
        uri = self.provisioning_uri(secret, account_name)
        return TotpEnrolment(factor.id, secret, uri, segno.make(uri, error="m").svg_inline(scale=4))

    async def pending(self, db: AsyncSession, *, user_id: str, factor_id: str,
                      account_name: str) -> TotpEnrolment | None:
        """The enrolment page again (after a redirect, or a wrong first code): only while the
        factor is unconfirmed. A confirmed factor's secret is never shown again."""
        factor = await db.get(TotpFactor, factor_id)
        if factor is None or factor.user_id != user_id or factor.confirmed_at is not None:
            return None
        secret = unseal(self._key, factor.secret_sealed, factor.id).decode()
        uri = self.provisioning_uri(secret, account_name)
        return TotpEnrolment(factor.id, secret, uri, segno.make(uri, error="m").svg_inline(scale=4))

    def provisioning_uri(self, secret: str, account_name: str) -> str:
        """Key URI Format (google-authenticator wiki): otpauth://totp/Issuer:account?secret=…

        digits, period and algorithm are written out although they are the defaults, so an app
        never has to guess them.
        """
        label = quote(f"{self.issuer}:{account_name}", safe=":@")
        query = urlencode({"secret": secret, "issuer": self.issuer, "algorithm": "SHA1",
                           "digits": DIGITS, "period": PERIOD}, quote_via=quote)
        return f"otpauth://totp/{label}?{query}"

    async def confirm(self, db: AsyncSession, *, user_id: str, factor_id: str, code: str,
                      at: datetime | None = None) -> bool:
        """Turn an enrolment into a factor with its first valid code (which is then used up)."""
        factor = await db.get(TotpFactor, factor_id)
        if factor is None or factor.user_id != user_id or factor.confirmed_at is not None:
            return False
        step = self._matching_step(factor, code, at)
        if step is None:
            return False
        return await self._use_step(db, factor.id, step, confirm=True)

    async def verify(self, db: AsyncSession, *, user_id: str, code: str,
                     at: datetime | None = None) -> bool:
        """True once per code: a code of a confirmed factor, from a step later than any used."""
        for factor in await self.confirmed(db, user_id):
            step = self._matching_step(factor, code, at)
            if step is not None:
                return await self._use_step(db, factor.id, step, confirm=False)
        return False

    async def confirmed(self, db: AsyncSession, user_id: str) -> list[TotpFactor]:
        query = (select(TotpFactor)
                 .where(TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None))
                 .order_by(TotpFactor.created_at))
        return list((await db.execute(query)).scalars())

    async def remove(self, db: AsyncSession, *, user_id: str, factor_id: str) -> bool:
        """Delete one factor. The caller must have checked a recent login and notifies the user."""
        result = await db.execute(delete(TotpFactor).where(TotpFactor.id == factor_id,
                                                           TotpFactor.user_id == user_id))
        return result.rowcount == 1

    def _matching_step(self, factor: TotpFactor, code: str, at: datetime | None) -> int | None:
        code = "".join(code.split())  # apps show "123 456"
        if len(code) != DIGITS or not code.isascii() or not code.isdigit():
            return None
        totp = pyotp.TOTP(unseal(self._key, factor.secret_sealed, factor.id).decode(),
                          digits=DIGITS, interval=PERIOD)
        now = totp.timecode(at or utcnow())
        matched = None
        # Every step of the window is compared (no early exit), in constant time.
        for step in range(now - WINDOW, now + WINDOW + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                matched = step
        return matched

    async def _use_step(self, db: AsyncSession, factor_id: str, step: int, *, confirm: bool) -> bool:
        values: dict = {"last_used_step": step}
        condition = [TotpFactor.id == factor_id,
                     or_(TotpFactor.last_used_step.is_(None), TotpFactor.last_used_step < step)]
        if confirm:
            values["confirmed_at"] = utcnow()
            condition.append(TotpFactor.confirmed_at.is_(None))
        else:
            condition.append(TotpFactor.confirmed_at.is_not(None))
        result = await db.execute(update(TotpFactor).where(*condition).values(**values)
                                  .execution_options(synchronize_session=False))
        return result.rowcount == 1
