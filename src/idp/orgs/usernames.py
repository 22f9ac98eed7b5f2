"""Organisation usernames (seed 004): an admin creates `maija@acme`, a login identifier scoped to
the organisation's handle, for a person who gets a new account, a membership with the role the
admin chose, and a generated temporary password by email or SMS that must be changed at the first
sign-in (the NEW_PASSWORD step of flows/service.py).

- The local part is 1-64 lower-case letters, digits, dots, hyphens and underscores, beginning and
  ending with a letter or digit (accounts/service.py USERNAME_LOCAL); what the admin types is
  lower-cased first. The username is stored as a VERIFIED identifier of kind "username", so the
  partial unique index on verified identifiers makes it unique whatever runs in parallel.
- The address the password goes to (`deliver_to`) was typed by the admin and never proven by the
  person: it is stored as an UNVERIFIED email or phone identifier of the new account (the person
  can verify it on the account pages), the account has no primary email, and so no `email` or
  `email_verified` claim until then. It is never used to sign in or to receive codes.
- An account whose verified email is exactly the would-be username (`maija@acme`, an address
  without a dot only an operator can create) makes it taken: sign-in would otherwise find two.
- Everything happens in one savepoint: any refusal or failure leaves no user, no identifier, no
  membership and no queued message.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import Identifier, User
from idp.accounts.phones import PhoneNumberError
from idp.accounts.service import USERNAME_LOCAL, _name_parts, normalise_email
from idp.accounts.temporary import masked
from idp.audit.service import Actor
from idp.db import utcnow
from idp.orgs.errors import Conflict, Forbidden, OrgError
from idp.orgs.models import ROLES, Membership

if TYPE_CHECKING:
    from idp.services import Services

# An address mail can reach: something, one "@", a domain with a dot (as registration asks).
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?")
GIVABLE_ROLES = tuple(role for role in ROLES if role != "owner")

BAD_LOCAL_PART = ("the username must be 1 to 64 lower-case letters, digits, dots, hyphens and "
                  "underscores, beginning and ending with a letter or digit")
BAD_DESTINATION = "deliver the temporary password to an email address or a mobile phone number"


class UsernameService:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def create(self, db: AsyncSession, actor: Actor, org_ref: str, local_part: str, *,
                     name: str, deliver_to: str, role: str = "member",
                     locale: str | None = None) -> tuple[User, str]:
        """A new account that signs in as `<local_part>@<handle>`, a member of the organisation
        with `role` (admin, editor or member: never owner, and never above the actor's own), and
        a temporary password sent to `deliver_to` (an email address or a mobile number) in
        `locale`. Returns (user, username). Raises OrgNotFound (unknown organisation, or the
        actor is not a member), Forbidden (the role does not allow it), OrgError (bad input) or
        Conflict (the username is taken); nothing is changed then."""
        if not isinstance(role, str) or role not in ROLES:
            raise OrgError(f"the role must be one of {', '.join(GIVABLE_ROLES)}")
        access = await self.s.orgs.require(db, actor, org_ref, "usernames.create", new_role=role)
        if role == "owner":  # operators act with the owner's powers; nobody is made owner here
            raise Forbidden("a username cannot be the owner: ownership is only ever transferred")
        local = self.normalise_local_part(local_part)
        name = _clean_name(name)
        via, destination = self.parse_destination(deliver_to)
        if locale is not None and (not isinstance(locale, str) or not _LOCALE.fullmatch(locale)):
            raise OrgError("the language must be a language tag such as en, fi, sv or hu")
        org = access.org
        username = f"{local}@{org.handle}"

        # A dotless email verified on some account (only the CLI creates those) would be found
        # by the same sign-in: the username is taken then.
        shadowed = await db.execute(select(Identifier.id).where(
            Identifier.kind == "email", Identifier.value == username, Identifier.verified.is_(True)))
        if shadowed.first() is not None:
            raise Conflict("this username is taken")

        try:
            async with db.begin_nested():
                user = User(email=None, email_verified=False, locale=locale, **_name_parts(name))
                db.add(user)
                await db.flush()
                db.add(Identifier(user_id=user.id, kind="username", value=username, verified=True,
                                  verified_at=utcnow()))
                await db.flush()
                # Where the password went: the person's, probably, but nobody has proven it.
                db.add(Identifier(user_id=user.id, kind="email" if via == "email" else "phone",
                                  value=destination, verified=False))
                db.add(Membership(org_id=org.id, user_id=user.id, role=role))
                await db.flush()
                await self.s.temporary_passwords.set(
                    db, user, via=via, to=destination, locale=locale, kind="org_username",
                    params={"organisation": org.name, "username": username}, actor=actor)
                await self.s.audit.record(
                    db, actor, "username.created", org_id=org.id, target_type="user",
                    target_id=user.id, after={"username": username, "role": role, "name": name,
                                              "delivered_to": masked(destination), "via": via})
        except IntegrityError:
            # The verified username is another account's (the unique index decided).
            raise Conflict("this username is taken") from None
        return user, username

    async def list(self, db: AsyncSession, actor: Actor, org_ref: str) -> list[tuple[str, str]]:
        """(username, user id) of every member who signs in with one of the organisation's
        usernames (`<local>@<handle>`), by username. Needs `members.view`."""
        access = await self.s.orgs.require(db, actor, org_ref, "members.view")
        suffix = "@" + access.org.handle
        rows = await db.execute(
            select(Identifier.value, Identifier.user_id)
            .join(Membership, (Membership.user_id == Identifier.user_id) & (Membership.org_id == access.org.id))
            .where(Identifier.kind == "username", Identifier.verified.is_(True),
                   Identifier.value.like("%" + suffix))
            .order_by(Identifier.value))
        # The handle has no LIKE wildcards (letters, digits, hyphens); check the suffix exactly anyway.
        return [(value, user_id) for value, user_id in rows.all() if value.endswith(suffix)]

    @staticmethod
    def normalise_local_part(typed: str) -> str:
        """`Maija.M` → `maija.m`; OrgError unless it is a valid local part."""
        local = typed.strip().lower() if isinstance(typed, str) else ""
        if not USERNAME_LOCAL.fullmatch(local):
            raise OrgError(BAD_LOCAL_PART)
        return local

    def parse_destination(self, typed: str) -> tuple[str, str]:
        """("email", lower-cased address) or ("sms", E.164 mobile number we may text)."""
        typed = typed.strip() if isinstance(typed, str) else ""
        if not typed or "\x00" in typed or len(typed) > 320:
            raise OrgError(BAD_DESTINATION)
        if "@" in typed:
            if not _EMAIL.fullmatch(typed):
                raise OrgError(BAD_DESTINATION)
            return "email", normalise_email(typed)
        try:
            return "sms", self.s.phones.normalise_for_sms(typed)
        except PhoneNumberError as exc:
            raise OrgError(f"{BAD_DESTINATION}: {exc}") from None

    async def usernames_of(self, db: AsyncSession, user_id: str) -> list[str]:
        """The organisation usernames of an account (for pages and the CLI)."""
        rows = await db.execute(select(Identifier.value).where(
            Identifier.user_id == user_id, Identifier.kind == "username",
            Identifier.verified.is_(True)).order_by(Identifier.value))
        return list(rows.scalars())


def _clean_name(name: str) -> str:
    name = " ".join(name.split()) if isinstance(name, str) else ""
    if not name or len(name) > 100 or "\x00" in name:
        raise OrgError("the name must be 1 to 100 characters")
    return name
