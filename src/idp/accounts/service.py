"""Accounts: create people, check their passwords, and say what claims describe them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import User
from idp.accounts.passwords import PasswordHasher


class AccountError(Exception):
    """A request about an account that cannot be carried out (message is safe to show)."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


class AccountService:
    def __init__(self, hasher: PasswordHasher) -> None:
        self.hasher = hasher

    async def create_user(self, db: AsyncSession, *, email: str, password: str | None,
                          name: str | None = None, email_verified: bool = True) -> User:
        email = normalise_email(email)
        if "@" not in email or len(email) > 320:
            raise AccountError("not an email address")
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
        ok = await self.hasher.verify(user.password_hash if user else None, password)
        if not ok or user is None:
            return None
        if self.hasher.needs_rehash(user.password_hash):
            user.password_hash = await self.hasher.hash(password)
        return user

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
