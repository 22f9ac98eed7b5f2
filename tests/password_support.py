"""Whether a password is an account's, checked the way sign-in checks it, for tests that change
passwords and look at the result without walking the sign-in pages."""

from __future__ import annotations

from idp.accounts.models import User
from idp.accounts.password_policy import normalise_password


async def password_owner(services, db, login: str, password: str) -> User | None:
    """The account `login` names (verified email or phone number, or organisation username) if
    `password` is its password (NFKC form, as hashes are made), else None."""
    user = await services.accounts.find_by_login(db, login, usernames=True)
    if user is None or not await services.hasher.verify(user.password_hash, normalise_password(password)):
        return None
    return user
