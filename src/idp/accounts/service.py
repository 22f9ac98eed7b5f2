"""Accounts: create people, check their passwords, and say what claims describe them."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.errors import AccountError
from idp.accounts.models import IDENTIFIER_KINDS, Identifier, User
from idp.accounts.password_policy import PasswordPolicy, PasswordRejected
from idp.accounts.passwords import PasswordHasher
from idp.accounts.phones import PhoneNumberError, PhonePolicy
from idp.db import utcnow

__all__ = ["AccountError", "AccountNotFound", "AccountService", "IdentifierNeeded", "IdentifierTaken",
           "InvalidIdentifier", "PasswordRejected", "user_claims"]


class IdentifierTaken(AccountError):
    """The email or phone number is already verified on another account."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"this {'email address' if kind == 'email' else 'phone number'} "
                         "is already in use by another account")
        self.kind = kind


class InvalidIdentifier(AccountError):
    """Typed text that is not an email address, phone number or organisation username."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class AccountNotFound(AccountError):
    """No such account (or identifier of it), or not one the caller may see."""

    def __init__(self, what: str = "account") -> None:
        super().__init__(f"no such {what}")


class IdentifierNeeded(AccountError):
    """A removal would leave the account without a way to sign in, without its main email, or
    without the address its code second factor goes to."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


# An organisation username (orgs/usernames.py, seed 004): `maija@acme`, a local part scoped to an
# organisation's handle. The local part is 1-64 lower-case letters, digits, dots, hyphens and
# underscores, beginning and ending with a letter or digit; the handle is the organisation's
# (orgs/service.py HANDLE: lower-case letters, digits and single hyphens, 2-40, never a dot).
USERNAME_LOCAL = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
USERNAME = re.compile(rf"(?P<local>{USERNAME_LOCAL.pattern})@(?P<handle>[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){{1,39}})")


def login_kind(typed: str) -> str:
    """How a typed login reads: "phone" without an "@"; "username" when the part after the last
    "@" has no dot (`maija@acme`: handles never contain one, and an email address that can be
    delivered on the internet always has one); otherwise "email". A dotless address such as
    `root@localhost` therefore reads as a username; `find_by_login` still finds an account whose
    verified email it is (the CLI can create one), a username of the same value first."""
    typed = (typed or "").strip()
    if "@" not in typed:
        return "phone"
    return "email" if "." in typed.rpartition("@")[2] else "username"


NAME_MAX, NAME_PART_MAX = 200, 100  # users.name; users.given_name and users.family_name


def _name_parts(name: str | None) -> dict:
    """The full name, and the given and family name derived from it (the first word, the rest).
    A derived part too long for its column (a valid 200-character name may be one 150-letter
    word) is left out rather than cut short: the full name says it whole."""
    given, _, family = (name or "").partition(" ")
    return {"name": name or None, "given_name": _fitting(given, NAME_PART_MAX),
            "family_name": _fitting(family, NAME_PART_MAX)}


def _fitting(value: str | None, maximum: int) -> str | None:
    return value if value and len(value) <= maximum else None


class AccountService:
    def __init__(self, hasher: PasswordHasher, policy: PasswordPolicy | None = None,
                 phones: PhonePolicy | None = None) -> None:
        self.hasher = hasher
        self.policy = policy or PasswordPolicy()
        # Without a phone policy (e.g. a tool that only handles emails) phone logins find nobody.
        self.phones = phones

    async def create_user(self, db: AsyncSession, *, email: str, password: str | None,
                          name: str | None = None, email_verified: bool = True) -> User:
        """An account with an email (verified unless said otherwise): the CLI's and the tests'."""
        if await self.find_by_email(db, email) is not None:
            raise AccountError("an account with this email exists")
        return await self.create_account(db, email=email, password=password, name=name,
                                         email_verified=email_verified)

    async def create_account(self, db: AsyncSession, *, email: str | None = None, phone: str | None = None,
                             password: str | None = None, email_verified: bool = False,
                             phone_verified: bool = False, name: str | None = None,
                             given_name: str | None = None, family_name: str | None = None,
                             locale: str | None = None) -> User:
        """An account provisioned by an operator or integrator (the CLI, the REST API), with an
        email (which becomes the primary one) and/or a phone number, each verified or not as the
        caller vouches. Raises InvalidIdentifier, PasswordRejected or IdentifierTaken (the email
        is another account's primary or verified one, the phone another's verified one): the
        unique indexes decide, so two parallel creations of one address make one account."""
        if not email and not phone:
            raise InvalidIdentifier("email", "an account needs an email address or a phone number")
        email = self.normalise_identifier("email", email) if email else None
        phone = self.normalise_identifier("phone", phone) if phone else None
        if password is not None:
            # A new account has no second factor yet, so the single-factor minimum applies.
            password = self.policy.check(password, identifiers=tuple(v for v in (email, phone) if v))
        parts = _name_parts(name)
        if given_name is not None or family_name is not None:
            parts.update(given_name=given_name, family_name=family_name)
            # Two 100-character parts joined are one character too many for the full name's column.
            parts["name"] = name or _fitting(" ".join(p for p in (given_name, family_name) if p), NAME_MAX)
        user = User(email=email, email_verified=bool(email) and email_verified, locale=locale,
                    password_hash=await self.hasher.hash(password) if password else None, **parts)
        try:
            async with db.begin_nested():  # users.email is unique: a parallel twin loses here
                db.add(user)
                await db.flush()
        except IntegrityError:
            raise IdentifierTaken("email") from None
        # The primary email is also an identifier: login goes through identifiers only.
        if email:
            await self._add_identifier(db, user, "email", email, verified=email_verified)
        if phone:
            await self._add_identifier(db, user, "phone", phone, verified=phone_verified)
        return user

    async def create_registered_user(self, db: AsyncSession, *, kind: str, value: str,
                                     password_hash: str | None, name: str | None = None,
                                     locale: str | None = None) -> User:
        """An account from a self-registration whose email or phone number (`value`, already
        normalised) was just proven by a code. An email is also the primary email; an account
        registered by phone has no email and signs in by SMS code until it adds more.

        `password_hash` was computed when the person typed the password (the policy was checked
        then); the password itself never reaches this far. Raises IdentifierTaken when the value
        is verified on another account or is another account's primary email: the unique
        indexes decide, so of two registrations completing in parallel exactly one creates an
        account, and the other leaves no row behind (everything here is in one savepoint).
        """
        assert kind in IDENTIFIER_KINDS, kind
        now = utcnow()
        user = User(email=value if kind == "email" else None, email_verified=kind == "email",
                    password_hash=password_hash, locale=locale, **_name_parts(name))
        try:
            async with db.begin_nested():
                db.add(user)
                await db.flush()
                db.add(Identifier(user_id=user.id, kind=kind, value=value, verified=True,
                                  verified_at=now))
                await db.flush()
        except IntegrityError:
            raise IdentifierTaken(kind) from None
        return user

    login_kind = staticmethod(login_kind)  # "email", "phone" or "username"

    def normalise_identifier(self, kind: str, typed: str) -> str:
        """The stored form of an identifier (lower-cased email, E.164 phone, lower-cased
        organisation username `maija@acme`); else AccountError."""
        if kind == "email":
            email = normalise_email(typed)
            if "@" not in email or len(email) > 320:
                raise InvalidIdentifier(kind, "not an email address")
            return email
        if kind == "phone":
            if self.phones is None:
                raise AccountError("phone numbers are not configured")
            try:
                return self.phones.normalise(typed)
            except PhoneNumberError:
                raise InvalidIdentifier(kind, "not a valid phone number") from None
        if kind == "username":
            username = (typed or "").strip().lower()
            if not USERNAME.fullmatch(username):
                raise InvalidIdentifier(kind, "not an organisation username")
            return username
        raise InvalidIdentifier(kind, f"unknown identifier kind {kind!r}")

    async def add_identifier(self, db: AsyncSession, user: User, kind: str, value: str,
                             verified: bool = False) -> Identifier:
        """Give the account an email or phone number (normalised here).

        A verified value already on another account raises IdentifierTaken; an unverified one may
        sit on several accounts until one of them verifies it.
        """
        return await self._add_identifier(db, user, kind, self.normalise_identifier(kind, value),
                                          verified=verified)

    async def _add_identifier(self, db: AsyncSession, user: User, kind: str, value: str, *,
                              verified: bool) -> Identifier:
        assert kind in IDENTIFIER_KINDS, kind
        identifier = Identifier(user_id=user.id, kind=kind, value=value, verified=verified,
                                verified_at=utcnow() if verified else None)
        try:
            # A savepoint: the unique index decides (parallel requests cannot both win), and a
            # refusal leaves the caller's transaction usable.
            async with db.begin_nested():
                db.add(identifier)
                await db.flush()
        except IntegrityError:
            # Either constraint: (user, kind, value) or the verified value on another account.
            own = select(Identifier.id).where(Identifier.user_id == user.id, Identifier.kind == kind,
                                              Identifier.value == value)
            if (await db.execute(own)).first() is not None:
                raise AccountError(f"this account already has this {kind}") from None
            raise IdentifierTaken(kind) from None
        return identifier

    async def identifiers(self, db: AsyncSession, user: User) -> list[Identifier]:
        query = select(Identifier).where(Identifier.user_id == user.id).order_by(Identifier.created_at)
        return list((await db.execute(query)).scalars())

    async def identifier_of(self, db: AsyncSession, user: User, identifier_id: str) -> Identifier:
        identifier = await db.get(Identifier, identifier_id)
        if identifier is None or identifier.user_id != user.id:
            raise AccountNotFound("identifier")
        return identifier

    async def remove_identifier(self, db: AsyncSession, user: User, identifier: Identifier) -> None:
        """Take an email or phone number off the account (the rules of README's design notes,
        as on the account pages): never the last verified identifier, never the one the code
        second factor goes to while it is the only one of its kind; the primary email only when
        another verified email can take its place. Raises IdentifierNeeded."""
        if identifier.kind == "username":
            raise IdentifierNeeded("an organisation username is removed by its organisation")
        mine = await self.identifiers(db, user)
        others = [i for i in mine if i.verified and i.id != identifier.id]
        primary = identifier.kind == "email" and identifier.value == user.email
        if identifier.verified:
            if not others:
                raise IdentifierNeeded("the account's only verified identifier: it could no longer sign in")
            needed = {"sms": "phone", "email": "email"}.get(user.code_second_factor or "")
            if needed == identifier.kind and not any(i.kind == needed for i in others):
                raise IdentifierNeeded("the account's sign-in codes are sent here")
            if primary and not await self.move_primary(db, user, others):
                raise IdentifierNeeded("the primary email: add and verify another email first")
        elif primary and not await self.move_primary(db, user, others):
            # An unverified primary email (never the `email` claim): the account may have none.
            user.email, user.email_verified = None, False
        await db.delete(identifier)
        await db.flush()

    async def move_primary(self, db: AsyncSession, user: User, verified: list[Identifier]) -> bool:
        """Make the oldest other verified email the primary one; False if there is none (or
        another account holds it as its unverified users.email, which is unique)."""
        emails = [i.value for i in verified if i.kind == "email" and i.value != user.email]
        if not emails:
            return False
        try:
            async with db.begin_nested():
                user.email, user.email_verified = emails[0], True
                await db.flush()
        except IntegrityError:
            await db.refresh(user)
            return False
        return True

    async def make_primary_if_none(self, db: AsyncSession, user: User, identifier: Identifier) -> None:
        """A verified email added to an account without a primary email becomes its primary."""
        if identifier.kind != "email" or not identifier.verified or user.email is not None:
            return
        await self.move_primary(db, user, [identifier])

    PROFILE_FIELDS = ("name", "given_name", "family_name", "locale")

    async def update_profile(self, db: AsyncSession, user: User, changes: dict) -> tuple[dict, dict]:
        """Set the named profile fields (None clears one); the others stay. Returns the changed
        fields' (before, after), for the audit event."""
        unknown = set(changes) - set(self.PROFILE_FIELDS)
        if unknown:
            raise ValueError(f"not profile fields: {sorted(unknown)}")
        before, after = {}, {}
        for field, value in changes.items():
            if getattr(user, field) != value:
                before[field], after[field] = getattr(user, field), value
                setattr(user, field, value)
        if after:
            user.updated_at = utcnow()
            await db.flush()
        return before, after

    async def find_by_login(self, db: AsyncSession, typed: str, *, usernames: bool = False) -> User | None:
        """The account whose VERIFIED email or phone number is `typed`, or None; with
        `usernames=True` also the account whose organisation username (`maija@acme`) it is.

        An email is matched case-insensitively; anything without an "@" is read as a phone number
        in national or international form (the configured default region). Text that is neither
        finds nobody, and is never an error: the login page must answer every input alike.

        Usernames are for signing in with a password (the sign-in flow asks for them), and
        are off by default because the other callers send a code TO what was typed (a sign-in
        code, a password reset): a username is no address, and must not be mailed to. A dotless
        input (`login_kind` "username") is looked up as a username first, then as an email.
        """
        typed = (typed or "").strip()
        if not typed or "\x00" in typed:
            return None
        if "@" in typed:
            value = normalise_email(typed)
            if len(value) > 320:
                return None
            kinds = ["email"]
            if usernames and login_kind(value) == "username" and USERNAME.fullmatch(value):
                kinds = ["username", "email"]
        else:
            if self.phones is None:
                return None
            try:
                kinds, value = ["phone"], self.phones.normalise(typed)
            except PhoneNumberError:
                return None
        query = (select(User, Identifier.kind).join(Identifier, Identifier.user_id == User.id)
                 .where(Identifier.kind.in_(kinds), Identifier.value == value,
                        Identifier.verified.is_(True)))
        # At most one verified row per kind (the partial unique index); a username wins.
        found = {kind: user for user, kind in (await db.execute(query)).all()}
        return next((found[kind] for kind in kinds if kind in found), None)

    async def find_by_email(self, db: AsyncSession, email: str) -> User | None:
        return (await db.execute(select(User).where(User.email == normalise_email(email)))).scalar_one_or_none()

    async def get(self, db: AsyncSession, user_id: str) -> User | None:
        return await db.get(User, user_id)

    async def count(self, db: AsyncSession) -> int:
        return (await db.execute(select(func.count()).select_from(User))).scalar_one()


# OpenID Connect Core §5.4: the claims each scope asks for.
SCOPE_CLAIMS = {
    "profile": ("name", "given_name", "family_name", "locale", "updated_at"),
    "email": ("email", "email_verified"),
}


# The columns user_claims reads: the refresh grant's driver path (oauth/grants/refresh_rotation.py)
# selects just these.
CLAIM_COLUMNS = ("id", "name", "given_name", "family_name", "locale", "updated_at", "email", "email_verified")


def user_claims(user: User, scopes: set[str]) -> dict:
    """The standard claims the granted scopes allow, omitting ones the account has no value for."""
    values = {
        "name": user.name, "given_name": user.given_name, "family_name": user.family_name,
        "locale": user.locale, "updated_at": int(user.updated_at.timestamp()),
        # email_verified speaks of the email claim: an account without an email has neither.
        "email": user.email, "email_verified": user.email_verified if user.email else None,
    }
    claims = {"sub": user.id}
    for scope in scopes & SCOPE_CLAIMS.keys():
        for claim in SCOPE_CLAIMS[scope]:
            if values[claim] is not None:
                claims[claim] = values[claim]
    return claims
