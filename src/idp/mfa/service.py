"""The second factors of an account, as one service the login and account pages will call."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import User
from idp.mfa.models import TotpFactor
from idp.mfa.recovery import RecoveryCodeService
from idp.mfa.totp import TotpService


class SecondFactorService:
    def __init__(self, totp: TotpService, recovery: RecoveryCodeService) -> None:
        self.totp = totp
        self.recovery = recovery

    async def has_second_factor(self, db: AsyncSession, user_id: str) -> bool:
        """A confirmed authenticator app, or a code by SMS or email chosen as second factor
        (users.code_second_factor). Recovery codes do not count: they replace a lost factor."""
        query = select(exists().where(TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None)))
        if (await db.execute(query)).scalar():
            return True
        chosen = await db.execute(select(User.code_second_factor).where(User.id == user_id))
        return chosen.scalar_one_or_none() is not None

    async def remove_totp(self, db: AsyncSession, *, user_id: str, factor_id: str) -> bool:
        """Remove a factor; with the last one gone, the recovery codes go too (they would otherwise
        be a second factor on their own). Needs a recent login and a notification (the caller's)."""
        removed = await self.totp.remove(db, user_id=user_id, factor_id=factor_id)
        if removed and not await self.has_second_factor(db, user_id):
            await self.recovery.remove_all(db, user_id)
        return removed
