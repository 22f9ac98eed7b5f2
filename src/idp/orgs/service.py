"""Organisations and memberships: creation, lookups, and the one entry point that loads an
organisation for an actor and checks what they may do (`require`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.audit.service import Actor
from idp.orgs import permissions
from idp.orgs.errors import Conflict, OrgError, OrgNotFound
from idp.orgs.models import Membership, Organisation

if TYPE_CHECKING:
    from idp.services import Services

# Lower-case letters and digits, single hyphens inside, 2-40 characters: safe in a URL and after
# the "@" of an organisation username. No dot, so `maija@acme` never looks like an email address.
HANDLE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,39}")
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
    def __init__(self, services: Services) -> None:
        self.s = services

    # ---- lookups --------------------------------------------------------------------------------

    async def find(self, db: AsyncSession, ref: str | None, *, lock: bool = False) -> Organisation | None:
        """An organisation by id or handle (as a client's `organization` parameter names it)."""
        if not isinstance(ref, str) or not _ID.fullmatch(ref):
            return None
        query = select(Organisation).where(
            (Organisation.id == ref) | (Organisation.handle == ref.lower()))
        if lock:
            query = query.with_for_update()
        return (await db.execute(query)).scalars().first()

    async def membership(self, db: AsyncSession, org_id: str, user_id: str) -> Membership | None:
        return (await db.execute(select(Membership).where(
            Membership.org_id == org_id, Membership.user_id == user_id))).scalar_one_or_none()

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
        if actor.type in ("operator", "client"):
            return OrgAccess(org, None)
        membership = await self.membership(db, org.id, actor.id) if actor.type == "user" else None
        permissions.check(membership.role if membership else None, action, **targets)
        return OrgAccess(org, membership)

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
        await self.s.audit.record(db, actor, "org.created", org_id=org.id, target_type="org",
                                  target_id=org.id, after={"name": name, "handle": handle,
                                                           "business_id": business_id, "owner": owner_id})
        return org
