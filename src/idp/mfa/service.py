"""The second factors of an account, as one service the login and account pages will call."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import Identifier, User
from idp.accounts.phones import PhoneNumberError, PhonePolicy
from idp.mfa.models import TotpFactor
from idp.mfa.recovery import RecoveryCodeService
from idp.mfa.totp import TotpService


class SecondFactorService:
    def __init__(self, totp: TotpService, recovery: RecoveryCodeService,
                 phones: PhonePolicy | None = None) -> None:
        self.totp = totp
        self.recovery = recovery
        self.phones = phones  # to offer SMS only to numbers that may receive one

    async def has_second_factor(self, db: AsyncSession, user_id: str) -> bool:
        """A confirmed authenticator app, or a code by SMS or email chosen as second factor
        (users.code_second_factor). Recovery codes do not count: they replace a lost factor."""
        app = exists().where(TotpFactor.user_id == User.id, TotpFactor.confirmed_at.is_not(None))
        found = await db.scalar(select(User.code_second_factor.is_not(None) | app).where(User.id == user_id))
        return bool(found)  # None: no such account

    async def remove_totp(self, db: AsyncSession, *, user_id: str, factor_id: str) -> bool:
        """Remove a factor; with the last one gone, the recovery codes go too (they would otherwise
        be a second factor on their own). Needs a recent login and a notification (the caller's)."""
        removed = await self.totp.remove(db, user_id=user_id, factor_id=factor_id)
        if removed and not await self.has_second_factor(db, user_id):
            await self.recovery.remove_all(db, user_id)
        return removed

    async def methods(self, db: AsyncSession, user: User, *, first: str, step_up: bool) -> list[str]:
        """The second-factor methods to offer after `first` (the amr of the first factor), best
        first: "totp", "sms", "email", "pwd", then "recovery".

        An account's own factors come first and alone: a person with an authenticator app is not
        offered a weaker email code instead. Only when the account has none (or none different
        from the first factor) and the client asked for more (`step_up`, acr_values) are codes to
        its verified identifiers, or its password after a code, offered. Never the first factor
        again: an SMS code after an SMS sign-in is one factor, not two.
        """
        used = {"sms": "sms", "otp": "email", "pwd": "pwd"}.get(first, first)
        enrolled = []
        if (await db.execute(select(exists().where(
                TotpFactor.user_id == user.id, TotpFactor.confirmed_at.is_not(None))))).scalar():
            enrolled.append("totp")
        verified = await self.verified_destinations(db, user.id)
        if "sms" in verified and not self._can_text(verified["sms"]):
            del verified["sms"]  # a landline, or a country taken off the SMS allow-list
        if user.code_second_factor in verified:
            enrolled.append(user.code_second_factor)
        candidates = [m for m in enrolled if m != used]
        if not candidates and (step_up or enrolled):
            fallback = [kind for kind in ("sms", "email") if kind in verified]
            if user.password_hash:
                fallback.append("pwd")
            candidates = [m for m in fallback if m != used]
        if candidates and enrolled and await self.recovery.remaining(db, user.id):
            candidates.append("recovery")
        return candidates

    def _can_text(self, number: str) -> bool:
        if self.phones is None:
            return True
        try:
            self.phones.check_sms_destination(number)
        except PhoneNumberError:
            return False
        return True

    async def verified_destinations(self, db: AsyncSession, user_id: str) -> dict[str, str]:
        """{"sms": E.164 number, "email": address}: the oldest verified phone and email."""
        rows = (await db.execute(select(Identifier.kind, Identifier.value).where(
            Identifier.user_id == user_id, Identifier.verified.is_(True),
        ).order_by(Identifier.created_at))).all()
        found: dict[str, str] = {}
        for kind, value in rows:
            found.setdefault("sms" if kind == "phone" else "email", value)
        return found
