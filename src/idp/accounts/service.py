"""Accounts: create people, check their passwords, and say what claims describe them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.errors import AccountError
from idp.accounts.models import User
from idp.accounts.password_policy import PasswordPolicy, PasswordRejected, normalise_password
from idp.accounts.passwords import PasswordHasher

__all__ = ["AccountError", "AccountService", "PasswordRejected", "WrongPassword", "user_claims"]


class WrongPassword(AccountError):
    """The current password given to confirm a change does not match."""

    def __init__(self) -> None:
        super().__init__("the current password is not correct")


def normalise_email(email: str) -> str:
    return email.strip().lower()


class AccountService:
    def __init__(self, hasher: PasswordHasher, policy: PasswordPolicy | None = None) -> None:
        self.hasher = hasher
        self.policy = policy or PasswordPolicy()

    async def create_user(self, db: AsyncSession, *, email: str, password: str | None,
                          name: str | None = None, email_verified: bool = True) -> User:
        email = normalise_email(email)
        if "@" not in email or len(email) > 320:
            raise AccountError("not an email address")
        if password is not None:
            # A new account has no second factor yet, so the single-factor minimum applies.
            password = self.policy.check(password, identifiers=(email,))
        if await self.find_by_email(db, email) is not None:
            raise AccountError("an account with this email exists")
        given, _, family = (name or "").partition(" ")
        user = User(
            email=email, email_verified=email_verified, name=name or None,
            given_name=given or None, family_name=family or None,
            password_hash=await self.hasher.hash(password) if password else None,
        )
        db.add(user)
        await db.flush()
        return user

    async def find_by_email(self, db: AsyncSession, email: str) -> User | None:
        return (await db.execute(select(User).where(User.email == normalise_email(email)))).scalar_one_or_none()

    async def get(self, db: AsyncSession, user_id: str) -> User | None:
        return await db.get(User, user_id)

    async def authenticate_password(self, db: AsyncSession, login: str, password: str) -> User | None:
        """The account if the password matches. Unknown logins spend the same hash time."""
        user = await self.find_by_email(db, login) if login else None
        # Hashes are of the NFKC form (password_policy.py), whatever the keyboard sent.
        password = normalise_password(password)
        ok = await self.hasher.verify(user.password_hash if user else None, password)
        if not ok or user is None:
            return None
        if self.hasher.needs_rehash(user.password_hash):
            user.password_hash = await self.hasher.hash(password)
        return user

    async def change_password(self, db: AsyncSession, user: User, current: str, new: str, *,
                              has_second_factor: bool) -> None:
        """Set a new password after checking the current one (ASVS 6.2.3). Ending other sessions
        and notifying the person are the caller's (the page offers the first; 63B-4 §3.1.1.2).

        The new password is checked before the current one is verified, so a policy error costs
        no hash; a wrong current password raises WrongPassword.
        """
        new = self.policy.check(new, has_second_factor=has_second_factor, identifiers=(user.email,))
        if not await self.hasher.verify(user.password_hash, normalise_password(current)):
            raise WrongPassword()
        user.password_hash = await self.hasher.hash(new)
        await db.flush()

    async def count(self, db: AsyncSession) -> int:
        return (await db.execute(select(func.count()).select_from(User))).scalar_one()


# OpenID Connect Core §5.4: the claims each scope asks for.
SCOPE_CLAIMS = {
    "profile": ("name", "given_name", "family_name", "locale", "updated_at"),
    "email": ("email", "email_verified"),
}


def user_claims(user: User, scopes: set[str]) -> dict:
    """The standard claims the granted scopes allow, omitting ones the account has no value for."""
    values = {
        "name": user.name, "given_name": user.given_name, "family_name": user.family_name,
        "locale": user.locale, "updated_at": int(user.updated_at.timestamp()),
        "email": user.email, "email_verified": user.email_verified,
    }
    claims = {"sub": user.id}
    for scope in scopes & SCOPE_CLAIMS.keys():
        for claim in SCOPE_CLAIMS[scope]:
            if values[claim] is not None:
                claims[claim] = values[claim]
    return claims
