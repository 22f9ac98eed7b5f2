"""Members of an organisation: list, add (operators and platform integrators), change a role,
remove, leave.

Rules (the permission table decides who may attempt what; these are the rules about the target):
- An existing account is added directly only by an operator or a platform integrator. An
  organisation's own integration (a client bound to it) invites, like the owner's pages: adding
  would let it pull any account into its organisation and then read it (Forbidden).
- Nobody is given the owner role here: ownership moves only by a transfer (orgs/ownership.py).
- Nobody gives a role above their own, and an admin never touches the owner.
- The owner is never removed, demoted or allowed to leave: the organisation would have no owner.
  The refusal is Forbidden with a message saying to transfer ownership first, for operators too.
- Every change takes the organisation's row lock before reading any membership (see
  orgs/service.py), so a transfer accepted in parallel cannot slip between the read and the write.
- Removing a member, or a member leaving, also deletes their product access in the organisation,
  revokes their token families (grants) that speak for it, so their next refresh fails, and
  withdraws an ownership offer made to them.
- Invitations do not outlive their inviter's right to send them: removing a member, or a member
  leaving, revokes the pending invitations they sent, and a demotion revokes those whose role the
  new role may no longer give (an editor or member may give none). Accepting checks the same
  again (orgs/invitations.py), so nothing slips through a race or a path that skipped this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import User
from idp.audit.service import Actor
from idp.db import utcnow
from idp.db.paging import paginate
from idp.oauth.grants.base import revoke_grant
from idp.oauth.models import Grant
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.models import ROLES, Membership, Organisation, OwnershipOffer, ProductAccess
from idp.orgs.permissions import rank
from idp.ui.i18n import N_

if TYPE_CHECKING:
    from idp.services import Services

BAD_ROLE = N_("Choose one of the roles: admin, editor or member.")
NO_OWNER_HERE = N_("Ownership can only be given by a transfer, which the owner offers and the new owner accepts.")
OWNER_STAYS = N_("The owner cannot be removed, demoted or leave. Transfer the ownership to another member first.")
ALREADY_MEMBER = N_("This person is already a member of the organisation.")
NO_SUCH_ACCOUNT = N_("There is no such account.")
ONLY_PEOPLE_LEAVE = N_("Only a signed-in member can leave an organisation.")
# Only an API client is bound to an organisation, so this is never shown on a page (no N_).
BOUND_CLIENTS_INVITE = "an organisation's own integration invites people; it cannot add accounts directly"


def given_role(role: object) -> str:
    """A role that may be given to a member (never owner); OrgError or Forbidden otherwise."""
    if not isinstance(role, str) or role not in ROLES:
        raise OrgError(BAD_ROLE)
    if role == "owner":
        raise Forbidden(NO_OWNER_HERE)
    return role


def higher(a: str, b: str) -> str:
    return a if rank(a) <= rank(b) else b


@dataclass(frozen=True)
class MemberView:
    """One row of the member list."""

    user_id: str
    email: str | None
    name: str | None
    role: str
    joined_at: datetime


def _view(membership: Membership, user: User | None) -> MemberView:
    return MemberView(membership.user_id, user.email if user else None, user.name if user else None,
                      membership.role, membership.created_at)


class MemberService:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def list(self, db: AsyncSession, actor: Actor, org_ref: str) -> list[MemberView]:
        """Every member with their primary email and name, owner first, then by role and name.
        Needs `members.view` (owners and admins)."""
        access = await self.s.orgs.require(db, actor, org_ref, "members.view")
        rows = (await db.execute(
            select(Membership, User.email, User.name).join(User, User.id == Membership.user_id)
            .where(Membership.org_id == access.org.id))).all()
        members = [MemberView(m.user_id, email, name, m.role, m.created_at) for m, email, name in rows]
        return sorted(members, key=lambda v: (rank(v.role), (v.name or v.email or "").casefold(), v.user_id))

    async def page(self, db: AsyncSession, actor: Actor, org_ref: str, *, limit: int,
                   cursor: str | None) -> tuple[list[MemberView], str | None]:
        """One page of the members in the order they joined (the REST API's list; the pages use
        `list`). Needs `members.view`."""
        access = await self.s.orgs.require(db, actor, org_ref, "members.view")
        memberships, next_cursor = await paginate(
            db, select(Membership).where(Membership.org_id == access.org.id),
            time_column=Membership.created_at, id_column=Membership.id, limit=limit, cursor=cursor)
        users = {user.id: user for user in (await db.execute(select(User).where(
            User.id.in_([m.user_id for m in memberships])))).scalars()} if memberships else {}
        return [_view(m, users.get(m.user_id)) for m in memberships], next_cursor

    async def get(self, db: AsyncSession, actor: Actor, org_ref: str, user_id: str, *,
                  lock: bool = False) -> MemberView:
        """One member (`members.view`); OrgNotFound for someone who is not a member. `lock` takes
        the organisation's row lock, as every change of a membership does."""
        access = await self.s.orgs.require(db, actor, org_ref, "members.view", lock=lock)
        membership = (await self.s.orgs.membership(db, access.org.id, user_id)
                      if isinstance(user_id, str) and len(user_id) <= 64 else None)
        if membership is None:
            raise OrgNotFound()
        return _view(membership, await db.get(User, membership.user_id))

    async def add(self, db: AsyncSession, actor: Actor, org_ref: str, user_id: str, role: str) -> Membership:
        """Make an existing account a member with `role` (admin, editor or member). For operators
        (the CLI) and platform integrators; a person joins by invitation, and so does anyone an
        organisation's own integration wants in (Forbidden for it, after its organisation is
        found: another organisation stays "not found"). Raises OrgError (bad role or no such
        account), Forbidden (owner, a role above the actor's, or a bound client), Conflict
        (already a member)."""
        role = given_role(role)
        access = await self.s.orgs.require(db, actor, org_ref, "members.invite", new_role=role, lock=True)
        if actor.org_id is not None:
            raise Forbidden(BOUND_CLIENTS_INVITE)
        if not isinstance(user_id, str) or len(user_id) > 64 or await db.get(User, user_id) is None:
            raise OrgError(NO_SUCH_ACCOUNT)
        if await self.s.orgs.membership(db, access.org.id, user_id) is not None:
            raise Conflict(ALREADY_MEMBER)
        membership = Membership(org_id=access.org.id, user_id=user_id, role=role)
        try:
            async with db.begin_nested():
                db.add(membership)
                await db.flush()
        except IntegrityError:  # only without the lock's protection, e.g. a foreign writer
            raise Conflict(ALREADY_MEMBER) from None
        await self.s.audit.record(db, actor, "member.added", org_id=access.org.id, target_type="user",
                                  target_id=user_id, after={"role": role})
        return membership

    async def change_role(self, db: AsyncSession, actor: Actor, org_ref: str, user_id: str,
                          role: str) -> Membership:
        """Give member `user_id` the role `role`. Nobody gives owner (Forbidden: transfer), nobody
        gives a role above their own, an admin never touches the owner, and the owner is never
        demoted (Forbidden, for operators too). The same role again changes nothing."""
        role = given_role(role)
        access, target = await self._target(db, actor, org_ref, "members.change_role", user_id, new_role=role)
        if target.role == role:
            return target
        before = target.role
        await db.execute(update(Membership).where(Membership.id == target.id).values(role=role))
        await db.refresh(target)
        await self.s.audit.record(db, actor, "member.role_changed", org_id=access.org.id, target_type="user",
                                  target_id=target.user_id, before={"role": before}, after={"role": role})
        if rank(role) > rank(before):  # a demotion: invitations the new role may not give die
            await self.s.orgs.invitations.revoke_sent_by(db, actor, access.org.id, target.user_id, role=role,
                                                         reason="inviter_demoted")
        return target

    async def remove(self, db: AsyncSession, actor: Actor, org_ref: str, user_id: str) -> None:
        """Remove member `user_id` (never the owner), with their product access and the token
        families that speak for this organisation."""
        access, target = await self._target(db, actor, org_ref, "members.remove", user_id)
        await self._drop(db, actor, access.org, target, "member.removed")

    async def leave(self, db: AsyncSession, actor: Actor, org_ref: str) -> None:
        """The signed-in member leaves. The owner cannot (Forbidden) until they have transferred
        the ownership; a stranger gets OrgNotFound."""
        if actor.type != "user":
            raise OrgError(ONLY_PEOPLE_LEAVE)
        access = await self.s.orgs.require(db, actor, org_ref, "org.view", lock=True)
        if access.role == "owner":
            raise Forbidden(OWNER_STAYS)
        await self.s.orgs.require(db, actor, org_ref, "org.leave")
        await self._drop(db, actor, access.org, access.membership, "member.left")

    # ---- inside ----------------------------------------------------------------------------------

    async def _target(self, db: AsyncSession, actor: Actor, org_ref: str, action: str, user_id: str,
                      *, new_role: str | None = None):
        """The organisation (locked) and the target member, after every permission rule; the
        owner as a target is refused with OWNER_STAYS, whoever asks."""
        try:
            access, target = await self.s.orgs.require_member(db, actor, org_ref, action, user_id,
                                                              new_role=new_role, lock=True)
        except Forbidden:
            # The owner acting on themselves, or anyone on the owner: say why, not just "no".
            target = await self._member_if_allowed_to_see(db, actor, org_ref, user_id)
            if target is not None and target.role == "owner":
                raise Forbidden(OWNER_STAYS) from None
            raise
        if target.role == "owner":  # operators and integrators are not checked by the table
            raise Forbidden(OWNER_STAYS)
        return access, target

    async def _member_if_allowed_to_see(self, db: AsyncSession, actor: Actor, org_ref: str,
                                        user_id: str) -> Membership | None:
        try:
            access = await self.s.orgs.require(db, actor, org_ref, "members.view")
        except (Forbidden, OrgNotFound):
            return None
        return await self.s.orgs.membership(db, access.org.id, user_id)

    async def _drop(self, db: AsyncSession, actor: Actor, org: Organisation, membership: Membership,
                    action: str) -> None:
        user_id, role = membership.user_id, membership.role
        # Their licences in this organisation go with them.
        products = (await db.execute(delete(ProductAccess).where(
            ProductAccess.org_id == org.id, ProductAccess.user_id == user_id))).rowcount
        # Token families that speak for this organisation end: the next refresh fails.
        grants = (await db.execute(select(Grant.id).where(
            Grant.user_id == user_id, Grant.org_id == org.id, Grant.revoked_at.is_(None)))).scalars().all()
        for grant_id in grants:
            await revoke_grant(db, grant_id)
        # An ownership offer to someone who is no longer a member cannot be accepted.
        await self.s.orgs.ownership.links.close_open(
            db, utcnow(), OwnershipOffer.org_id == org.id, OwnershipOffer.to_user_id == user_id)
        # Invitations they sent die with their membership.
        await self.s.orgs.invitations.revoke_sent_by(
            db, actor, org.id, user_id, role=None,
            reason="inviter_removed" if action == "member.removed" else "inviter_left")
        await db.execute(delete(Membership).where(Membership.id == membership.id))
        await self.s.audit.record(db, actor, action, org_id=org.id, target_type="user", target_id=user_id,
                                  before={"role": role},
                                  after={"product_access_removed": products, "grants_revoked": len(grants)})

