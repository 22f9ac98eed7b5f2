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

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.audit.service import Actor
from idp.orgs import permissions
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.models import Membership, Organisation

if TYPE_CHECKING:
    from idp.services import Services

# Lower-case letters and digits, single hyphens inside, 2-40 characters: safe in a URL and after
# the "@" of an organisation username. No dot, so `maija@acme` never looks like an email address.
HANDLE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,39}")
# Paths under /orgs/ that are pages of their own, not organisations.
RESERVED_HANDLES = frozenset({"invitations", "ownership", "contact-requests", "new", "admin", "api"})
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


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

    async def list_all(self, db: AsyncSession, actor: Actor) -> list[tuple[Organisation, str | None, int]]:
        """Every organisation by handle, with its owner's user id and its number of members: for
        operators (the CLI) only."""
        if actor.type != "operator":
            raise Forbidden()
        members = (select(Membership.org_id, func.count().label("members"))
                   .group_by(Membership.org_id).subquery())
        owners = select(Membership.org_id, Membership.user_id).where(Membership.role == "owner").subquery()
        rows = await db.execute(
            select(Organisation, owners.c.user_id, func.coalesce(members.c.members, 0))
            .outerjoin(owners, owners.c.org_id == Organisation.id)
            .outerjoin(members, members.c.org_id == Organisation.id)
            .order_by(Organisation.handle))
        return [(org, owner, count) for org, owner, count in rows.all()]

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
        (the CLI) and integrators (the REST API) act with the owner's powers.
        `lock` takes the organisation's row lock: every ownership change holds it."""
        org = await self.find(db, ref, lock=lock)
        if org is None:
            raise OrgNotFound()
        # TODO(REST API): a client (integrator) acts with the owner's powers on EVERY organisation
        # here. Before the REST API exposes organisation management to clients, it must scope a
        # client to the organisations it was registered for (or that authorised it) and refuse the
        # others with OrgNotFound. Behaviour deliberately unchanged for now.
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
        operator names). Raises OrgError for a bad name or handle, Conflict for a taken handle."""
        name = " ".join((name or "").split())
        if not name or len(name) > 200 or "\x00" in name:
            raise OrgError("the name must be 1 to 200 characters")
        handle = (handle or "").strip().lower()
        if not HANDLE.fullmatch(handle):
            raise OrgError("the handle must be 2 to 40 lower-case letters, digits and single hyphens")
        if handle in RESERVED_HANDLES:
            raise Conflict("this handle is taken")
        business_id = (business_id or "").strip() or None
        if business_id is not None and (len(business_id) > 40 or "\x00" in business_id):
            raise OrgError("the business ID must be at most 40 characters")
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
