"""Issue and verify one-time codes: purpose-bound, short-lived, single use, stored as HMACs.

Every rule that must hold under parallel requests is one conditional UPDATE, never a read and a
write: the resend cooldown (`last_issued_at` moves only if the cooldown has passed), a wrong try
(`attempts = attempts + 1` only while the code is still live and under the cap) and consumption
(`consumed_at` set only while NULL, not voided, not expired, under the cap). Exactly one of N
parallel requests sees a row updated.

The service never commits. A wrong try must stay counted although verification fails, so the
errors raised after counting say `keeps_changes` and `Database.run` commits them.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from idp.db import utcnow
from idp.otp.models import OneTimeCode, OtpSubject
from idp.security import keyed_hash, same


class Purpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    VERIFY_PHONE = "verify_phone"
    LOGIN = "login"
    SECOND_FACTOR = "second_factor"
    PASSWORD_RESET = "password_reset"
    MOBILE_ACTIVATION = "mobile_activation"


class CodeProblem(Exception):
    """Base of every code error. `public_message` is the same whatever the cause, so a page that
    shows it never tells an attacker whether a code exists, expired or was simply wrong."""

    public_message = "The code is not valid. Check it or ask for a new one."
    keeps_changes = False


class CodeInvalid(CodeProblem):
    """No live code for this purpose and destination, or the code given is not it."""


class CodeExpired(CodeProblem):
    """The code was right once but its lifetime has passed."""


class TooManyAttempts(CodeProblem):
    """Too many wrong tries: on this code (it is burned) or on this destination (locked out)."""

    def __init__(self, retry_after: int | None = None) -> None:
        super().__init__("too many attempts")
        self.retry_after = retry_after


class ResendTooSoon(CodeProblem):
    """A code for this purpose and destination was sent less than the cooldown ago."""

    public_message = "A code was sent a moment ago. Wait a little before asking for another."

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class IssuedCode:
    """The code in clear: hand it to the courier and forget it."""

    id: str
    code: str
    purpose: Purpose
    expires_at: datetime
    ttl_seconds: int

    def __repr__(self) -> str:  # never print the code by accident
        return f"IssuedCode(id={self.id!r}, purpose={self.purpose.value!r}, code=<redacted>)"


class OtpService:
    def __init__(self, key: bytes, *, digits: int = 6, ttl_seconds: int = 600,
                 resend_cooldown: int = 30, max_attempts: int = 5, max_failures: int = 10,
                 lockout_seconds: int = 900) -> None:
        if digits < 6:
            raise ValueError("one-time codes have at least 6 digits")
        self.key = key
        self.digits = digits
        self.ttl = timedelta(seconds=ttl_seconds)
        self.resend_cooldown = timedelta(seconds=resend_cooldown)
        self.max_attempts = max_attempts
        self.max_failures = max_failures
        self.lockout = timedelta(seconds=lockout_seconds)

    # ---- hashing: the purpose and destination are bound into every hash -------------------------

    def _subject(self, purpose: Purpose, destination: str) -> str:
        return keyed_hash(self.key, f"subject\x00{purpose.value}\x00{destination}")

    def _code_hash(self, purpose: Purpose, destination: str, code: str) -> str:
        return keyed_hash(self.key, f"code\x00{purpose.value}\x00{destination}\x00{code}")

    def _new_code(self) -> str:
        return f"{secrets.randbelow(10 ** self.digits):0{self.digits}d}"

    # ---- issue ----------------------------------------------------------------------------------

    async def issue(self, db: AsyncSession, purpose: Purpose | str, destination: str) -> IssuedCode:
        """A new code for `destination` (an email address or E.164 number, already normalised by
        the caller). Voids the previous one. Raises ResendTooSoon or TooManyAttempts."""
        purpose = Purpose(purpose)
        subject = self._subject(purpose, destination)
        now = utcnow()
        await self._ensure_subject(db, subject, purpose)
        await self._refuse_if_locked(db, subject, now)

        # The cooldown as one conditional UPDATE: of two parallel requests only one moves it.
        moved = await db.execute(update(OtpSubject).where(
            OtpSubject.subject == subject,
            (OtpSubject.last_issued_at.is_(None))
            | (OtpSubject.last_issued_at <= now - self.resend_cooldown),
        ).values(last_issued_at=now))
        if moved.rowcount != 1:
            last = (await db.execute(select(OtpSubject.last_issued_at).where(
                OtpSubject.subject == subject))).scalar_one()
            raise ResendTooSoon(_seconds_until(last + self.resend_cooldown, now))

        await db.execute(update(OneTimeCode).where(
            OneTimeCode.subject == subject, OneTimeCode.consumed_at.is_(None),
            OneTimeCode.voided_at.is_(None),
        ).values(voided_at=now))
        code = self._new_code()
        row = OneTimeCode(purpose=purpose.value, subject=subject, attempts=0, created_at=now,
                          code_hash=self._code_hash(purpose, destination, code),
                          expires_at=now + self.ttl)
        db.add(row)
        await db.flush()
        return IssuedCode(id=row.id, code=code, purpose=purpose, expires_at=row.expires_at,
                          ttl_seconds=int(self.ttl.total_seconds()))

    # ---- verify ---------------------------------------------------------------------------------

    async def verify(self, db: AsyncSession, purpose: Purpose | str, destination: str,
                     code: str) -> None:
        """Consume the code or raise a CodeProblem. Returns only when this request, and no other,
        consumed it."""
        purpose = Purpose(purpose)
        subject = self._subject(purpose, destination)
        now = utcnow()
        await self._refuse_if_locked(db, subject, now)
        row = (await db.execute(select(OneTimeCode).where(
            OneTimeCode.subject == subject, OneTimeCode.consumed_at.is_(None),
            OneTimeCode.voided_at.is_(None),
        ).order_by(OneTimeCode.created_at.desc()).limit(1))).scalar_one_or_none()
        if row is None:
            raise CodeInvalid("no live code")
        if row.expires_at <= now:
            raise CodeExpired("expired")
        if row.attempts >= self.max_attempts:
            raise TooManyAttempts()

        candidate = code.strip().replace(" ", "")
        if same(row.code_hash, self._code_hash(purpose, destination, candidate)):
            consumed = await db.execute(update(OneTimeCode).where(
                OneTimeCode.id == row.id, OneTimeCode.consumed_at.is_(None),
                OneTimeCode.voided_at.is_(None), OneTimeCode.expires_at > now,
                OneTimeCode.attempts < self.max_attempts,
            ).values(consumed_at=now))
            if consumed.rowcount != 1:
                raise CodeInvalid("consumed by a parallel request")
            await db.execute(update(OtpSubject).where(OtpSubject.subject == subject)
                             .values(failures=0, last_failure_at=None))
            return

        await self._count_failure(db, row.id, subject, now)

    async def _count_failure(self, db: AsyncSession, code_id: str, subject: str,
                             now: datetime) -> None:
        counted = await db.execute(update(OneTimeCode).where(
            OneTimeCode.id == code_id, OneTimeCode.consumed_at.is_(None),
            OneTimeCode.voided_at.is_(None), OneTimeCode.attempts < self.max_attempts,
        ).values(attempts=OneTimeCode.attempts + 1))
        if counted.rowcount != 1:
            # Burned (or consumed, or replaced) by a parallel request in between: not a new try.
            error: CodeProblem = TooManyAttempts()
        else:
            # Failures across codes: a lockout that has ended starts the count again.
            await db.execute(update(OtpSubject).where(OtpSubject.subject == subject).values(
                failures=case(
                    (OtpSubject.last_failure_at <= now - self.lockout, 1),
                    else_=OtpSubject.failures + 1,
                ),
                last_failure_at=now,
            ))
            error = CodeInvalid("wrong code")
        error.keeps_changes = True
        raise error

    # ---- the per-destination counter ------------------------------------------------------------

    async def _ensure_subject(self, db: AsyncSession, subject: str, purpose: Purpose) -> None:
        dialect = postgresql if db.bind.dialect.name == "postgresql" else sqlite
        await db.execute(dialect.insert(OtpSubject).values(
            subject=subject, purpose=purpose.value, failures=0,
        ).on_conflict_do_nothing(index_elements=["subject"]))

    async def _refuse_if_locked(self, db: AsyncSession, subject: str, now: datetime) -> None:
        state = (await db.execute(select(OtpSubject.failures, OtpSubject.last_failure_at).where(
            OtpSubject.subject == subject))).one_or_none()
        if state is None or state.failures < self.max_failures or state.last_failure_at is None:
            return
        until = state.last_failure_at + self.lockout
        if until > now:
            raise TooManyAttempts(_seconds_until(until, now))

    async def failures(self, db: AsyncSession, purpose: Purpose | str, destination: str) -> int:
        """Consecutive failures for this purpose and destination (for policy and tests)."""
        purpose = Purpose(purpose)
        value = (await db.execute(select(OtpSubject.failures).where(
            OtpSubject.subject == self._subject(purpose, destination)))).scalar_one_or_none()
        return value or 0

    async def live_code(self, db: AsyncSession, purpose: Purpose | str,
                        destination: str) -> OneTimeCode | None:
        """The newest unconsumed, unvoided code row (no secret in it), for policy and tests."""
        purpose = Purpose(purpose)
        return (await db.execute(select(OneTimeCode).where(
            OneTimeCode.subject == self._subject(purpose, destination),
            OneTimeCode.consumed_at.is_(None), OneTimeCode.voided_at.is_(None),
        ).order_by(OneTimeCode.created_at.desc()).limit(1))).scalar_one_or_none()


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds() + 0.999))
