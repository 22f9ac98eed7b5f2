"""Accounts as an operator or integrator manages them (the REST API's users and sessions): list
and read, provision, change the profile, disable and enable, add and remove identifiers, set a
temporary password, and end sessions. The rules are AccountService's, SessionService's and
TemporaryPasswordService's; this adds who may see what, and the audit event of every change, in
the caller's transaction.

`only_org`: an organisation-bound caller sees the members of that organisation and nobody else
(anyone else is "not found", never "forbidden"), and of them only what concerns its organisation:
their membership there (not in other organisations), their usernames `<name>@<its handle>` (not
another organisation's), their emails and phone numbers (how an HR system knows its people). Their
second factors and password state are not shown to it (`AccountView.org_scoped`): the owner's
pages do not show them either, and the organisation's sign-in policy enforces them without its
integration looking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import exists, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.errors import AccountDisabled
from idp.accounts.models import Identifier, User
from idp.accounts.service import AccountNotFound
from idp.accounts.temporary import masked
from idp.audit.service import Actor
from idp.db import utcnow
from idp.db.paging import paginate
from idp.mfa.models import RecoveryCode, TotpFactor
from idp.orgs.models import Membership, Organisation
from idp.sessions.models import BrowserSession
from idp.sessions.sign_out import end_everything

if TYPE_CHECKING:
    from idp.services import Services


@dataclass
class AccountView:
    """An account with what an integrator may know of it: never a hash or a secret."""

    user: User
    identifiers: list[Identifier] = field(default_factory=list)
    totp: bool = False
    recovery_codes: int = 0
    memberships: list[tuple[str, str]] = field(default_factory=list)  # (org id, role)
    org_scoped: bool = False  # seen by an organisation-bound caller: no second factors or password state


@dataclass(frozen=True)
class UserFilter:
    email: str | None = None
    phone: str | None = None
    username: str | None = None
    status: str | None = None  # "active" | "disabled"


@dataclass(frozen=True)
class TemporaryPasswordSent:
    sent_to: str  # masked: m***@example.com, +358 40 *** **67
    expires_at: datetime


class AccountAdmin:
    def __init__(self, services: Services) -> None:
        self.s = services

    # ---- reading -------------------------------------------------------------------------------

    async def page(self, db: AsyncSession, *, limit: int, cursor: str | None, filters: UserFilter,
                   only_org: str | None = None) -> tuple[list[AccountView], str | None]:
        """Accounts oldest first. A filter on an identifier finds the accounts holding it verified
        (or, for an email, as their primary email): the value is normalised as at sign-in."""
        query = select(User)
        accounts = self.s.accounts
        if filters.email is not None:
            value = accounts.normalise_identifier("email", filters.email)
            query = query.where(or_(User.email == value, _holds("email", value)))
        if filters.phone is not None:
            query = query.where(_holds("phone", accounts.normalise_identifier("phone", filters.phone)))
        username = None
        if filters.username is not None:
            username = accounts.normalise_identifier("username", filters.username)
            query = query.where(_holds("username", username))
        if filters.status == "active":
            query = query.where(User.disabled_at.is_(None))
        elif filters.status == "disabled":
            query = query.where(User.disabled_at.is_not(None))
        if only_org is not None:
            query = query.where(_member_of(only_org))
            if username is not None and not username.endswith(f"@{await self._handle(db, only_org)}"):
                query = query.where(false())  # another organisation's username: not even whether its holder is ours
        users, next_cursor = await paginate(db, query, time_column=User.created_at, id_column=User.id,
                                            limit=limit, cursor=cursor)
        return await self._views(db, users, only_org), next_cursor

    async def get(self, db: AsyncSession, user_id: str, *, only_org: str | None = None,
                  lock: bool = False) -> AccountView:
        """The account, or AccountNotFound. `lock`: FOR UPDATE, for a read-check-write."""
        user = await self.user(db, user_id, only_org=only_org, lock=lock)
        return (await self._views(db, [user], only_org))[0]

    async def user(self, db: AsyncSession, user_id: str, *, only_org: str | None = None,
                   lock: bool = False) -> User:
        query = select(User).where(User.id == user_id)
        if only_org is not None:
            query = query.where(_member_of(only_org))
        if lock:
            query = query.with_for_update()
        user = (await db.execute(query)).scalar_one_or_none()
        if user is None:
            raise AccountNotFound()
        return user

    async def _handle(self, db: AsyncSession, org_id: str) -> str:
        return (await db.execute(select(Organisation.handle).where(Organisation.id == org_id))).scalar_one()

    async def _views(self, db: AsyncSession, users: list[User], only_org: str | None = None) -> list[AccountView]:
        """Views of many accounts in four queries, not four per account; for an organisation-bound
        caller (`only_org`) only what concerns that organisation (see the module's docstring)."""
        views = {user.id: AccountView(user, org_scoped=only_org is not None) for user in users}
        if not views:
            return []
        ids = list(views)
        identifiers = select(Identifier).where(Identifier.user_id.in_(ids))
        memberships = select(Membership.user_id, Membership.org_id, Membership.role).where(Membership.user_id.in_(ids))
        if only_org is not None:
            # Usernames are `<local part>@<handle>`; the handle has no "@", so the suffix is exact.
            identifiers = identifiers.where(or_(Identifier.kind != "username", Identifier.value.endswith(
                f"@{await self._handle(db, only_org)}", autoescape=True)))
            memberships = memberships.where(Membership.org_id == only_org)
        for identifier in (await db.execute(identifiers.order_by(Identifier.created_at, Identifier.id))).scalars():
            views[identifier.user_id].identifiers.append(identifier)
        if only_org is None:
            for user_id in (await db.execute(select(TotpFactor.user_id).where(
                    TotpFactor.user_id.in_(ids), TotpFactor.confirmed_at.is_not(None)))).scalars():
                views[user_id].totp = True
            for user_id, count in (await db.execute(select(RecoveryCode.user_id, func.count()).where(
                    RecoveryCode.user_id.in_(ids), RecoveryCode.used_at.is_(None))
                    .group_by(RecoveryCode.user_id))).all():
                views[user_id].recovery_codes = count
        for user_id, org_id, role in (await db.execute(
                memberships.order_by(Membership.created_at, Membership.id))).all():
            views[user_id].memberships.append((org_id, role))
        return list(views.values())

    # ---- changes -------------------------------------------------------------------------------

    async def create(self, db: AsyncSession, actor: Actor, **fields) -> AccountView:
        """AccountService.create_account's fields; audits `user.created`."""
        user = await self.s.accounts.create_account(db, **fields)
        view = await self.get(db, user.id)
        await self._audit(db, actor, "user.created", user, after={
            "email": user.email, "email_verified": user.email_verified,
            "identifiers": [{"kind": i.kind, "value": i.value, "verified": i.verified} for i in view.identifiers],
            "password_set": user.password_hash is not None})
        return view

    async def update_profile(self, db: AsyncSession, actor: Actor, user: User, changes: dict) -> AccountView:
        before, after = await self.s.accounts.update_profile(db, user, changes)
        if after:
            await self._audit(db, actor, "user.updated", user, before=before, after=after)
        return await self.get(db, user.id)

    async def disable(self, db: AsyncSession, actor: Actor, user_id: str) -> AccountView:
        """No sign-in, no token: every browser session ends and every token family is revoked
        (the login, code exchange and refresh refuse a disabled account). Disabling a disabled
        account changes nothing."""
        user = await self.user(db, user_id, lock=True)
        if user.disabled_at is None:
            user.disabled_at = user.updated_at = utcnow()
            await end_everything(db, user.id)
            await db.flush()
            await self._audit(db, actor, "user.disabled", user, before={"disabled_at": None},
                              after={"disabled_at": user.disabled_at.isoformat()})
        return await self.get(db, user.id)

    async def enable(self, db: AsyncSession, actor: Actor, user_id: str) -> AccountView:
        user = await self.user(db, user_id, lock=True)
        if user.disabled_at is not None:
            before = {"disabled_at": user.disabled_at.isoformat()}
            user.disabled_at, user.updated_at = None, utcnow()
            await db.flush()
            await self._audit(db, actor, "user.enabled", user, before=before, after={"disabled_at": None})
        return await self.get(db, user.id)

    async def add_identifier(self, db: AsyncSession, actor: Actor, user_id: str, *, kind: str, value: str,
                             verified: bool) -> Identifier:
        user = await self.user(db, user_id, lock=True)
        identifier = await self.s.accounts.add_identifier(db, user, kind, value, verified=verified)
        await self.s.accounts.make_primary_if_none(db, user, identifier)
        await self._audit(db, actor, "identifier.added", user, after={
            "identifier_id": identifier.id, "kind": identifier.kind, "value": identifier.value,
            "verified": identifier.verified})
        return identifier

    async def identifier(self, db: AsyncSession, user_id: str, identifier_id: str) -> Identifier:
        """One identifier of the account (the account locked for a change that follows)."""
        user = await self.user(db, user_id, lock=True)
        return await self.s.accounts.identifier_of(db, user, identifier_id)

    async def remove_identifier(self, db: AsyncSession, actor: Actor, user_id: str, identifier_id: str) -> None:
        user = await self.user(db, user_id, lock=True)
        identifier = await self.s.accounts.identifier_of(db, user, identifier_id)
        before = {"identifier_id": identifier.id, "kind": identifier.kind, "value": identifier.value,
                  "verified": identifier.verified}
        await self.s.accounts.remove_identifier(db, user, identifier)
        await self._audit(db, actor, "identifier.removed", user, before=before)

    async def temporary_password(self, db: AsyncSession, actor: Actor, user_id: str, *,
                                 via: str) -> TemporaryPasswordSent:
        """Set and send a temporary password (accounts/temporary.py: every session and token
        family ends, the next sign-in forces a new one). Only where it went is returned. A
        disabled account gets none (AccountDisabled), as it gets no password reset link: it could
        not sign in with it, and the message would tell the person otherwise."""
        user = await self.user(db, user_id, lock=True)
        if user.disabled_at is not None:
            raise AccountDisabled()
        destination = await self.s.temporary_passwords.destination(db, user, via)
        await self.s.temporary_passwords.set(db, user, via=via, actor=actor)
        return TemporaryPasswordSent(masked(destination), user.password_expires_at)

    async def sessions(self, db: AsyncSession, user_id: str) -> list[BrowserSession]:
        await self.user(db, user_id)
        return await self.s.sessions.live(db, user_id)

    async def session(self, db: AsyncSession, user_id: str, session_id: str) -> BrowserSession:
        """One live session of the account, or AccountNotFound."""
        for session in await self.sessions(db, user_id):
            if session.id == session_id:
                return session
        raise AccountNotFound("session")

    async def end_sessions(self, db: AsyncSession, actor: Actor, user_id: str,
                           session_id: str | None = None) -> None:
        """End one live session of the account (AccountNotFound if it has no such one) or all,
        with the token families signed in through them; audits `session.revoked` for each."""
        user = await self.user(db, user_id, lock=True)
        live = await self.s.sessions.live(db, user.id)
        if session_id is not None:
            live = [session for session in live if session.id == session_id]
            if not live:
                raise AccountNotFound("session")
        await self.s.sessions.end_with_grants(db, [session.id for session in live])
        for session in live:
            await self.s.audit.record(db, actor, "session.revoked", org_id=actor.org_id,
                                      target_type="session", target_id=session.id,
                                      after={"user_id": user.id})

    async def _audit(self, db: AsyncSession, actor: Actor, action: str, user: User, *,
                     before: dict | None = None, after: dict | None = None) -> None:
        await self.s.audit.record(db, actor, action, org_id=actor.org_id, target_type="user",
                                  target_id=user.id, before=before, after=after)


def _holds(kind: str, value: str):
    """The account holds this identifier, verified."""
    return exists().where(Identifier.user_id == User.id, Identifier.kind == kind, Identifier.value == value,
                          Identifier.verified.is_(True))


def _member_of(org_id: str):
    return exists().where(Membership.user_id == User.id, Membership.org_id == org_id)


__all__ = ["AccountAdmin", "AccountView", "TemporaryPasswordSent", "UserFilter"]
