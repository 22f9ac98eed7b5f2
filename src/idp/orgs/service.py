"""Organisations and memberships: creation, lookups, and the one entry point that loads an
organisation for an actor and checks what they may do (`require`, `require_member`).

What hangs off an organisation has a service of its own, reached through this one:

- `s.orgs.members`     (orgs/members.py)     list, add (operators), change_role, remove, leave
- `s.orgs.invitations` (orgs/invitations.py) invite, revoke, resend, list_pending, peek, accept
- `s.orgs.ownership`   (orgs/ownership.py)   offer, withdraw, pending, offers_for, peek, accept

Every change to a membership (any of them may touch the owner's, or race with one that does)
takes the organisation's row lock first, before reading any membership: that, with the partial
unique index for "at most one", keeps exactly one owner under concurrent requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import User
from idp.audit.service import Actor
from idp.db.paging import paginate
from idp.orgs import permissions
from idp.orgs.contacts import OPERATORS_ONLY
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.members import NO_SUCH_ACCOUNT
from idp.orgs.models import Membership, Organisation

if TYPE_CHECKING:
    from idp.services import Services

# Lower-case letters and digits, single hyphens inside, 2-40 characters: safe in a URL and after
# the "@" of an organisation username. No dot, so `maija@acme` never looks like an email address.
HANDLE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,39}")
# Paths under /orgs/ that are pages of their own, not organisations.
RESERVED_HANDLES = frozenset({"invitations", "ownership", "contact-requests", "new", "admin", "api"})
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class OrgView:
    """An organisation with its owner's user id, as lists and the REST API show it."""

    org: Organisation
    owner_id: str | None


@dataclass
class OrgAccess:
    """An organisation as one actor sees it: their membership (None for an operator)."""

    org: Organisation
    membership: Membership | None

    @property
    def role(self) -> str | None:
        return self.membership.role if self.membership else None


class OrgService:
    def __init__(self, services: Services, link_key: bytes | None = None) -> None:
        from idp.orgs.invitations import InvitationService
        from idp.orgs.members import MemberService
        from idp.orgs.ownership import OwnershipService
        from idp.services import derive_key

        self.s = services
        # The emailed links' tokens are stored as HMACs under keys of their own.
        link_key = link_key or derive_key(services.settings.key_encryption_key(), "org-links")
        self.members = MemberService(services)
        self.invitations = InvitationService(services, derive_key(link_key, "invitation"))
        self.ownership = OwnershipService(services, derive_key(link_key, "ownership-offer"))

    # ---- lookups --------------------------------------------------------------------------------

    async def find(self, db: AsyncSession, ref: str | None, *, lock: bool = False) -> Organisation | None:
        """An organisation by id or handle (as a client's `organization` parameter or a page's URL
        names it). The exact id is tried first, then the handle: a handle never shadows another
        organisation's id (ids are case-sensitive, handles lower-case, and one query with
        `id = ref OR handle = lower(ref)` could return either row). Internal callers holding a
        stored id use `get`, which never looks at handles."""
        if not isinstance(ref, str) or not _ID.fullmatch(ref):
            return None
        org = await self.get(db, ref, lock=lock)
        if org is None:
            org = await self._one(db, select(Organisation).where(Organisation.handle == ref.lower()), lock)
        return org

    async def get(self, db: AsyncSession, org_id: str | None, *, lock: bool = False) -> Organisation | None:
        """An organisation by its id only (ids stored in grants, invitations, offers...)."""
        if not isinstance(org_id, str) or not _ID.fullmatch(org_id):
            return None
        return await self._one(db, select(Organisation).where(Organisation.id == org_id), lock)

    @staticmethod
    async def _one(db: AsyncSession, query, lock: bool) -> Organisation | None:
        if lock:
            # FOR NO KEY UPDATE: lockers exclude each other, while inserts of rows that merely
            # reference the organisation (audit events, product access) are not blocked.
            query = query.with_for_update(key_share=True)
        return (await db.execute(query)).scalar_one_or_none()

    async def membership(self, db: AsyncSession, org_id: str, user_id: str) -> Membership | None:
        return (await db.execute(select(Membership).where(
            Membership.org_id == org_id, Membership.user_id == user_id))).scalar_one_or_none()

    @staticmethod
    def sees(actor: Actor, org_id: str) -> bool:
        """Whether the organisation exists for `actor` at all. A client bound to one organisation
        (a business customer's own integration) sees that one only; for it every other one does
        not exist (OrgNotFound, never Forbidden: it must not even learn that they do). Everyone
        else is judged by the permission table."""
        return not (actor.type == "client" and actor.org_id is not None and actor.org_id != org_id)

    def _listable(self, actor: Actor):
        """The WHERE clause of the organisations `actor` may list: operators and platform
        clients all, an organisation-bound client its own; people list their memberships
        (`memberships_of`) instead (Forbidden)."""
        if actor.type not in ("operator", "client"):
            raise Forbidden()
        if actor.type == "client" and actor.org_id is not None:
            return Organisation.id == actor.org_id
        return true()

    async def list_all(self, db: AsyncSession, actor: Actor) -> list[tuple[Organisation, str | None, int]]:
        """Every organisation by handle, with its owner's user id and its number of members: for
        operators (the CLI) and integrators (an organisation-bound one gets its own only)."""
        visible = self._listable(actor)
        members = (select(Membership.org_id, func.count().label("members"))
                   .group_by(Membership.org_id).subquery())
        owners = select(Membership.org_id, Membership.user_id).where(Membership.role == "owner").subquery()
        rows = await db.execute(
            select(Organisation, owners.c.user_id, func.coalesce(members.c.members, 0))
            .outerjoin(owners, owners.c.org_id == Organisation.id)
            .outerjoin(members, members.c.org_id == Organisation.id)
            .where(visible)
            .order_by(Organisation.handle))
        return [(org, owner, count) for org, owner, count in rows.all()]

    async def page(self, db: AsyncSession, actor: Actor, *, limit: int, cursor: str | None,
                   handle: str | None = None, name: str | None = None) -> tuple[list[OrgView], str | None]:
        """One page of the organisations `actor` may list, oldest first (the REST API's list):
        `handle` matches exactly, `name` anywhere in the name, case-insensitively."""
        query = select(Organisation).where(self._listable(actor))
        if handle is not None:
            query = query.where(Organisation.handle == handle.strip().lower())
        if name is not None:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", name.strip().lower()) + "%"
            query = query.where(func.lower(Organisation.name).like(pattern, escape="\\"))
        orgs, next_cursor = await paginate(db, query, time_column=Organisation.created_at,
                                           id_column=Organisation.id, limit=limit, cursor=cursor)
        owners = dict((await db.execute(select(Membership.org_id, Membership.user_id).where(
            Membership.org_id.in_([org.id for org in orgs]), Membership.role == "owner"))).all()) if orgs else {}
        return [OrgView(org, owners.get(org.id)) for org in orgs], next_cursor

    async def view(self, db: AsyncSession, actor: Actor, ref: str | None, *, lock: bool = False) -> OrgView:
        """The organisation as `actor` may see it (`org.view`), with its owner."""
        access = await self.require(db, actor, ref, "org.view", lock=lock)
        owner = await self.owner_of(db, access.org.id)
        return OrgView(access.org, owner.user_id if owner else None)

    async def memberships_of(self, db: AsyncSession, user_id: str) -> list[tuple[Organisation, Membership]]:
        """Every organisation the person belongs to, by name."""
        rows = await db.execute(select(Organisation, Membership)
                                .join(Membership, Membership.org_id == Organisation.id)
                                .where(Membership.user_id == user_id)
                                .order_by(Organisation.name, Organisation.id))
        return [(org, membership) for org, membership in rows.all()]

    async def require(self, db: AsyncSession, actor: Actor, ref: str | None, action: str, *,
                      lock: bool = False, **targets) -> OrgAccess:
        """The organisation `ref`, if `actor` may do `action` there; else OrgNotFound (strangers,
        unknown organisations) or Forbidden (members whose role does not allow it). Operators
        (the CLI) and integrators (the REST API) act with the owner's powers; an integrator bound
        to one organisation only there (every other one is OrgNotFound, see `sees`).
        `lock` takes the organisation's row lock: every ownership change holds it."""
        org = await self.find(db, ref, lock=lock)
        if org is None or not self.sees(actor, org.id):
            raise OrgNotFound()
        if actor.type in ("operator", "client"):
            return OrgAccess(org, None)
        membership = await self.membership(db, org.id, actor.id) if actor.type == "user" else None
        permissions.check(membership.role if membership else None, action, **targets)
        return OrgAccess(org, membership)

    async def require_member(self, db: AsyncSession, actor: Actor, ref: str | None, action: str,
                             user_id: str | None, *, new_role: str | None = None,
                             lock: bool = False) -> tuple[OrgAccess, Membership]:
        """`require` for an action on one member (`user_id`): the actor's right to the action is
        checked first (a stranger learns nothing, a member without the right gets Forbidden
        whoever the target is), then the target's membership is loaded and the check repeated
        with its role and `new_role`. An unknown target is OrgNotFound."""
        access = await self.require(db, actor, ref, action, lock=lock)
        target = (await self.membership(db, access.org.id, user_id)
                  if isinstance(user_id, str) and _ID.fullmatch(user_id) else None)
        if target is None:
            raise OrgNotFound()
        if access.membership is not None:
            permissions.check(access.role, action, target_role=target.role, new_role=new_role)
        return access, target

    async def owner_of(self, db: AsyncSession, org_id: str) -> Membership | None:
        """The owner's membership (None only for an organisation being deleted)."""
        return (await db.execute(select(Membership).where(
            Membership.org_id == org_id, Membership.role == "owner"))).scalar_one_or_none()

    # ---- creation -------------------------------------------------------------------------------

    async def create(self, db: AsyncSession, actor: Actor, *, name: str, handle: str,
                     business_id: str | None = None, owner_id: str) -> Organisation:
        """A new organisation whose owner is `owner_id` (the signed-in creator, or a person an
        operator names). Raises OrgError for a bad name or handle or an unknown owner, Conflict
        for a taken handle. An organisation-bound client creates none (Forbidden)."""
        if actor.type == "client" and actor.org_id is not None:
            raise Forbidden("an organisation's own integration cannot create organisations")
        name = _name(name)
        handle = (handle or "").strip().lower()
        if not HANDLE.fullmatch(handle):
            raise OrgError("the handle must be 2 to 40 lower-case letters, digits and single hyphens")
        if handle in RESERVED_HANDLES:
            raise Conflict("this handle is taken")
        business_id = _business_id(business_id)
        if not isinstance(owner_id, str) or not _ID.fullmatch(owner_id) or await db.get(User, owner_id) is None:
            raise OrgError(NO_SUCH_ACCOUNT)
        org = Organisation(name=name, handle=handle, business_id=business_id, policy={})
        try:
            async with db.begin_nested():
                db.add(org)
                await db.flush()
        except IntegrityError:
            raise Conflict("this handle is taken") from None
        db.add(Membership(org_id=org.id, user_id=owner_id, role="owner"))
        await db.flush()
        # The owner starts as the admin, technical and billing contact (seed 002).
        await self.s.contacts.assign_initial(db, org.id, owner_id, actor=actor)
        await self.s.audit.record(db, actor, "org.created", org_id=org.id, target_type="org",
                                  target_id=org.id, after={"name": name, "handle": handle,
                                                           "business_id": business_id, "owner": owner_id})
        return org

    async def account(self, db: AsyncSession, ref: str) -> str:
        """The user id of an existing account named by its id or its (primary) email address, as
        an integrator names a new organisation's owner; OrgError when there is none."""
        user = None
        if isinstance(ref, str) and "@" in ref and len(ref) <= 320:
            user = await self.s.accounts.find_by_email(db, ref)
        elif isinstance(ref, str) and _ID.fullmatch(ref):
            user = await db.get(User, ref)
        if user is None:
            raise OrgError(NO_SUCH_ACCOUNT)
        return user.id

    # ---- changes --------------------------------------------------------------------------------

    async def update(self, db: AsyncSession, actor: Actor, ref: str | None, changes: dict) -> OrgView:
        """Change the name, the business ID (None clears it) or the billing-contact lock
        (operators and platform integrators only: it exists for unpaid invoices, so an
        organisation's own integration may not lift it). Needs `org.update`; one "org.updated"
        event names the fields that changed. Unknown fields are OrgError."""
        if not isinstance(changes, dict) or set(changes) - {"name", "business_id", "billing_contact_locked"}:
            raise OrgError("only name, business_id and billing_contact_locked can be changed")
        access = await self.require(db, actor, ref, "org.update", lock=True)
        org = access.org
        if "billing_contact_locked" in changes:
            if actor.type == "client" and actor.org_id is not None:
                raise Forbidden(OPERATORS_ONLY)
            if bool(org.billing_contact_locked) != changes["billing_contact_locked"]:
                # The contacts service owns the lock's rules and its own audit event.
                await self.s.contacts.set_billing_lock(db, actor, org.id, changes["billing_contact_locked"])
        before, after = {}, {}
        for field, value in (("name", changes.get("name")), ("business_id", changes.get("business_id"))):
            if field not in changes:
                continue
            value = _name(value) if field == "name" else _business_id(value)
            if getattr(org, field) != value:
                before[field], after[field] = getattr(org, field), value
                setattr(org, field, value)
        if after:
            await db.flush()
            await self.s.audit.record(db, actor, "org.updated", org_id=org.id, target_type="org",
                                      target_id=org.id, before=before, after=after)
        owner = await self.owner_of(db, org.id)
        return OrgView(org, owner.user_id if owner else None)


def _name(name: object) -> str:
    name = " ".join(name.split()) if isinstance(name, str) else ""
    if not name or len(name) > 200 or "\x00" in name:
        raise OrgError("the name must be 1 to 200 characters")
    return name


def _business_id(business_id: object) -> str | None:
    if business_id is not None and not isinstance(business_id, str):
        raise OrgError("the business ID must be at most 40 characters")
    business_id = (business_id or "").strip() or None
    if business_id is not None and (len(business_id) > 40 or "\x00" in business_id):
        raise OrgError("the business ID must be at most 40 characters")
    return business_id
