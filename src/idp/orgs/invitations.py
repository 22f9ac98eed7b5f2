"""Invitations by email: an owner or admin invites an address with a role; the link in the email
makes whoever holds a VERIFIED identical address a member.

    invite ──▶ pending ──accept──▶ accepted
                  │  ├──revoke──▶ revoked
                  │  └──(expires_at passes)──▶ expired ──resend──▶ pending (new token, new expiry)
                  └──resend──▶ pending (new token: the old link is dead)

- The role is no higher than the inviter's and never owner (the permission table, `new_role`).
- One live invitation per address and organisation: inviting the same address again revokes the
  older one (and says so in the audit log).
- The token (`idpinv_...`) is in the email only; the database keeps its HMAC.
- Accepting needs a signed-in account with a verified email equal to the invitation's address
  (case-insensitive): the link proves that someone read the mailbox, the verified address proves
  that this account is that someone. A mismatch is refused (Forbidden) and changes nothing.
- The acceptance is one conditional UPDATE (`accepted_at IS NULL AND revoked_at IS NULL AND
  expires_at > now`) under the organisation's row lock: of parallel accepts exactly one wins.
- An invitation lives only as long as its inviter may give it: removing or demoting the inviter
  revokes it (orgs/members.py), and accepting checks again that the inviter (a person; operators'
  invitations have no inviter) is still a member whose role may give the invitation's role. If
  not, the link is dead (LinkGone, INVITER_GONE) and nothing changes.
- An existing member who accepts keeps the higher of their role and the invited one (an invitation
  never demotes anyone, and the owner stays the owner).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import Identifier, User
from idp.accounts.service import normalise_email
from idp.audit.models import AuditEvent
from idp.audit.service import Actor
from idp.db import utcnow
from idp.db.paging import paginate
from idp.orgs import permissions
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.links import INVITATION_PREFIX, LinkGone, LinkNotFound, Links, expiry_text
from idp.orgs.members import given_role, higher
from idp.orgs.models import Invitation, Membership, Organisation
from idp.ui.i18n import N_

if TYPE_CHECKING:
    from idp.services import Services

_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

NOT_AN_EMAIL = N_("Type a valid email address.")
ALREADY_MEMBER = N_("This person is already a member of the organisation.")
NOT_PENDING = N_("This invitation is no longer pending.")
INVITATION_GONE = N_("This invitation has expired, was withdrawn or was already accepted. Ask for a new one.")
EMAIL_MISMATCH = N_("This invitation was sent to another email address. Sign in with the account that "
                    "has that address, or add and confirm the address on your account page first.")
SIGN_IN_FIRST = N_("Sign in to accept the invitation.")
INVITER_GONE = N_("The person who sent this invitation can no longer invite with this role. Ask for a new one.")


@dataclass(frozen=True)
class InvitationView:
    """An invitation as an admin's list or the link's page shows it."""

    id: str
    org_id: str
    org_name: str
    email: str
    role: str
    created_at: datetime
    expires_at: datetime
    invited_by: str | None
    state: str  # pending | expired | accepted | revoked

    @classmethod
    def of(cls, invitation: Invitation, org: Organisation, state: str) -> InvitationView:
        return cls(invitation.id, org.id, org.name, invitation.email, invitation.role,
                   invitation.created_at, invitation.expires_at, invitation.invited_by, state)


class InvitationService:
    def __init__(self, services: Services, key: bytes) -> None:
        self.s = services
        self.links = Links(Invitation, Invitation.revoked_at, "revoked", key, INVITATION_PREFIX)

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=self.s.settings.invitation_ttl)

    # ---- the organisation's side ----------------------------------------------------------------

    async def invite(self, db: AsyncSession, actor: Actor, org_ref: str, email: str, role: str, *,
                     locale: str | None = None) -> Invitation:
        """Invite `email` with `role` and email them the link. Raises OrgError (bad address or
        role), Forbidden (owner, or a role above the inviter's), Conflict (a member already holds
        this verified address). `locale` is the email's language (default: the inviter's)."""
        role = given_role(role)
        address = self._address(email)
        access = await self.s.orgs.require(db, actor, org_ref, "members.invite", new_role=role, lock=True)
        org = access.org
        holder = (await db.execute(select(Identifier.user_id).where(
            Identifier.kind == "email", Identifier.value == address, Identifier.verified.is_(True)))).scalar()
        if holder is not None and await self.s.orgs.membership(db, org.id, holder) is not None:
            raise Conflict(ALREADY_MEMBER)
        now = utcnow()
        # One live invitation per address: the older link dies.
        older = await self.links.close_open(db, now, Invitation.org_id == org.id, Invitation.email == address)
        token, token_hash = self.links.tokens.new()
        invitation = Invitation(org_id=org.id, email=address, role=role, token_hash=token_hash,
                                invited_by=actor.id if actor.type == "user" else None,
                                created_at=now, expires_at=now + self.ttl)
        db.add(invitation)
        await db.flush()
        await self._send(db, actor, org, invitation, token, locale)
        await self.s.audit.record(db, actor, "invitation.created", org_id=org.id, target_type="invitation",
                                  target_id=invitation.id,
                                  after={"email": address, "role": role, "replaces": older or None})
        return invitation

    async def revoke(self, db: AsyncSession, actor: Actor, org_ref: str, invitation_id: str) -> None:
        """Withdraw a pending (or expired) invitation: its link stops working. Conflict when it
        was already accepted or revoked; OrgNotFound for an invitation of another organisation."""
        access, invitation = await self._pending(db, actor, org_ref, invitation_id)
        if not await self.links.update_open(db, invitation.id, revoked_at=utcnow()):
            raise Conflict(NOT_PENDING)
        await self.s.audit.record(db, actor, "invitation.revoked", org_id=access.org.id,
                                  target_type="invitation", target_id=invitation.id,
                                  before={"email": invitation.email, "role": invitation.role})

    async def resend(self, db: AsyncSession, actor: Actor, org_ref: str, invitation_id: str, *,
                     locale: str | None = None) -> Invitation:
        """Send the invitation again with a new token and a new expiry; the old link is dead."""
        access, invitation = await self._pending(db, actor, org_ref, invitation_id)
        token, token_hash = self.links.tokens.new()
        if not await self.links.update_open(db, invitation.id, token_hash=token_hash,
                                            expires_at=utcnow() + self.ttl):
            raise Conflict(NOT_PENDING)
        await db.refresh(invitation)
        await self._send(db, actor, access.org, invitation, token, locale)
        await self.s.audit.record(db, actor, "invitation.resent", org_id=access.org.id,
                                  target_type="invitation", target_id=invitation.id,
                                  after={"expires_at": invitation.expires_at.isoformat()})
        return invitation

    async def list_pending(self, db: AsyncSession, actor: Actor, org_ref: str) -> list[InvitationView]:
        """Invitations neither accepted nor revoked, newest first; expired ones are included
        (state "expired") so that an admin can resend them."""
        access = await self.s.orgs.require(db, actor, org_ref, "members.invite")
        rows = (await db.execute(select(Invitation).where(
            Invitation.org_id == access.org.id, *self.links.open()).order_by(
            Invitation.created_at.desc(), Invitation.id))).scalars()
        now = utcnow()
        return [InvitationView.of(invitation, access.org, self.links.state(invitation, now)) for invitation in rows]

    async def page(self, db: AsyncSession, actor: Actor, org_ref: str, *, limit: int,
                   cursor: str | None) -> tuple[list[InvitationView], str | None]:
        """`list_pending` a page at a time, newest first (the REST API's list)."""
        access = await self.s.orgs.require(db, actor, org_ref, "members.invite")
        rows, next_cursor = await paginate(
            db, select(Invitation).where(Invitation.org_id == access.org.id, *self.links.open()),
            time_column=Invitation.created_at, id_column=Invitation.id, limit=limit, cursor=cursor,
            newest_first=True)
        now = utcnow()
        return [InvitationView.of(row, access.org, self.links.state(row, now)) for row in rows], next_cursor

    async def view(self, db: AsyncSession, actor: Actor, org_ref: str, invitation_id: str) -> InvitationView:
        """One invitation of the organisation, in any state (`members.invite`); OrgNotFound for
        another organisation's."""
        access = await self.s.orgs.require(db, actor, org_ref, "members.invite")
        invitation = (await db.get(Invitation, invitation_id)
                      if isinstance(invitation_id, str) and _ID.fullmatch(invitation_id) else None)
        if invitation is None or invitation.org_id != access.org.id:
            raise OrgNotFound()
        return InvitationView.of(invitation, access.org, self.links.state(invitation, utcnow()))

    async def revoke_sent_by(self, db: AsyncSession, actor: Actor, org_id: str, inviter_id: str, *,
                             role: str | None, reason: str) -> list[str]:
        """Revoke the pending invitations `inviter_id` sent in the organisation that a member with
        `role` may not give (all of them for `role` None: the inviter is no longer a member), each
        with an "invitation.revoked" audit event saying why. Returns the revoked invitations' ids.
        The caller holds the organisation's row lock (orgs/members.py)."""
        pending = (await db.execute(select(Invitation).where(
            Invitation.org_id == org_id, Invitation.invited_by == inviter_id, *self.links.open()))).scalars().all()
        revoked = []
        now = utcnow()
        for invitation in pending:
            if role is not None and permissions.allowed(role, "members.invite", new_role=invitation.role):
                continue
            if await self.links.update_open(db, invitation.id, revoked_at=now):
                revoked.append(invitation.id)
                await self.s.audit.record(db, actor, "invitation.revoked", org_id=org_id, target_type="invitation",
                                          target_id=invitation.id,
                                          before={"email": invitation.email, "role": invitation.role},
                                          after={"reason": reason})
        return revoked

    # ---- the invitee's side ---------------------------------------------------------------------

    async def peek(self, db: AsyncSession, token: str) -> InvitationView:
        """What the link's page shows, for whoever holds the link. LinkNotFound (404) for a token
        that never existed (or was replaced by a resend), LinkGone (410) for a spent one."""
        invitation, org = await self.links.by_token(db, token)
        view = InvitationView.of(invitation, org, self.links.state(invitation, utcnow()))
        if view.state != "pending":
            raise LinkGone(INVITATION_GONE)
        if not await self._inviter_may_still(db, invitation):
            raise LinkGone(INVITER_GONE)
        return view

    async def accept(self, db: AsyncSession, actor: Actor, token: str) -> Membership:
        """The signed-in person (`actor`) accepts: they must hold a verified email equal to the
        invitation's. Returns their membership. Raises LinkNotFound, LinkGone, or Forbidden
        (EMAIL_MISMATCH); nothing changes on any refusal."""
        if actor.type != "user" or not actor.id:
            raise Forbidden(SIGN_IN_FIRST)
        invitation, _ = await self.links.by_token(db, token)
        org = await self.s.orgs.get(db, invitation.org_id, lock=True)
        if org is None:
            raise LinkNotFound()
        await db.refresh(invitation)  # as it is now that we hold the lock
        if self.links.state(invitation, utcnow()) != "pending":
            raise LinkGone(INVITATION_GONE)
        if not await self._inviter_may_still(db, invitation):
            raise LinkGone(INVITER_GONE)
        verified = (await db.execute(select(Identifier.id).where(
            Identifier.user_id == actor.id, Identifier.kind == "email",
            Identifier.value == invitation.email, Identifier.verified.is_(True)))).first()
        if verified is None:
            raise Forbidden(EMAIL_MISMATCH)
        if not await self.links.consume(db, invitation.id, utcnow(), accepted_by=actor.id):
            raise LinkGone(INVITATION_GONE)
        membership = await self.s.orgs.membership(db, org.id, actor.id)
        if membership is None:
            membership = Membership(org_id=org.id, user_id=actor.id, role=invitation.role)
            db.add(membership)
            await db.flush()
            await self.s.audit.record(db, actor, "member.added", org_id=org.id, target_type="user",
                                      target_id=actor.id, after={"role": invitation.role, "invitation": invitation.id})
        elif higher(membership.role, invitation.role) != membership.role:
            before = membership.role
            await db.execute(update(Membership).where(Membership.id == membership.id).values(role=invitation.role))
            await db.refresh(membership)
            await self.s.audit.record(db, actor, "member.role_changed", org_id=org.id, target_type="user",
                                      target_id=actor.id, before={"role": before},
                                      after={"role": invitation.role, "invitation": invitation.id})
        await self.s.audit.record(db, actor, "invitation.accepted", org_id=org.id, target_type="invitation",
                                  target_id=invitation.id, after={"user": actor.id, "role": membership.role})
        return membership

    # ---- inside ----------------------------------------------------------------------------------

    def _address(self, email: object) -> str:
        if not isinstance(email, str) or len(email) > 320 or "\x00" in email:
            raise OrgError(NOT_AN_EMAIL)
        address = normalise_email(email)
        if not _EMAIL.fullmatch(address):
            raise OrgError(NOT_AN_EMAIL)
        return address

    async def _pending(self, db: AsyncSession, actor: Actor, org_ref: str, invitation_id: str):
        access = await self.s.orgs.require(db, actor, org_ref, "members.invite")
        invitation = (await db.get(Invitation, invitation_id)
                      if isinstance(invitation_id, str) and _ID.fullmatch(invitation_id) else None)
        if invitation is None or invitation.org_id != access.org.id:
            raise OrgNotFound()
        # Resending or revoking an invitation with a role above one's own is changing it.
        await self.s.orgs.require(db, actor, org_ref, "members.invite", new_role=invitation.role)
        if invitation.accepted_at is not None or invitation.revoked_at is not None:
            raise Conflict(NOT_PENDING)
        return access, invitation

    async def _inviter_may_still(self, db: AsyncSession, invitation: Invitation) -> bool:
        """Whether the invitation's sender may still give its role: a person must still be a
        member whose role allows `members.invite` with it. An invitation an operator or an
        integrator made has no inviter and stands; one whose inviter's account is gone
        (`invited_by` set to NULL by the foreign key) is told apart by its audit event."""
        if invitation.invited_by is None:
            creator = (await db.execute(select(AuditEvent.actor_type).where(
                AuditEvent.org_id == invitation.org_id, AuditEvent.action == "invitation.created",
                AuditEvent.target_id == invitation.id).limit(1))).scalar()
            return creator != "user"
        inviter = await self.s.orgs.membership(db, invitation.org_id, invitation.invited_by)
        return inviter is not None and permissions.allowed(inviter.role, "members.invite",
                                                           new_role=invitation.role)

    async def _send(self, db: AsyncSession, actor: Actor, org: Organisation, invitation: Invitation,
                    token: str, locale: str | None) -> None:
        if locale is None and actor.type == "user":
            inviter = await db.get(User, actor.id)
            locale = inviter.locale if inviter else None
        await self.s.courier.enqueue(
            db, channel="email", recipient=invitation.email, kind="org_invitation",
            locale=locale or self.s.settings.default_locale,
            params={"org": org.name, "url": f"{self.s.settings.issuer}/orgs/invitations/{token}",
                    "expires": expiry_text(invitation.expires_at)})
