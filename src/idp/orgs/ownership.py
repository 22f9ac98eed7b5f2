"""Ownership transfer: the owner offers the ownership to a member; the member accepts, by the
emailed link or in the UI; the old owner becomes an admin and the member the owner, atomically.

    offer ──▶ pending ──accept──▶ accepted (old owner: admin, member: owner)
                 ├──withdraw──▶ withdrawn   (also: a newer offer, the member leaving or removed)
                 └──(expires_at passes)──▶ expired

- One pending offer per organisation: a new offer withdraws the previous one.
- Accepting holds the organisation's row lock, consumes the offer with one conditional UPDATE,
  then demotes the owner and only then promotes the member, in one transaction: the partial
  unique index never sees two owners, and nobody ever sees none.
- The accepting person must be the offer's `to_user_id` and still a member; the offer's
  `from_user_id` must still be the owner. Otherwise nothing changes.
- The token (`idpown_...`) is in the email only; the database keeps its HMAC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import User
from idp.audit.service import Actor
from idp.db import utcnow
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.links import OFFER_PREFIX, LinkGone, Links, expiry_text
from idp.orgs.models import Membership, Organisation, OwnershipOffer
from idp.ui.i18n import N_

if TYPE_CHECKING:
    from idp.services import Services

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

NOT_A_MEMBER = N_("Ownership can only be offered to a member of the organisation.")
ALREADY_OWNER = N_("This person is already the owner.")
NO_PENDING_OFFER = N_("There is no pending ownership offer.")
OFFER_GONE = N_("This ownership offer has expired, was withdrawn or was already accepted.")
OFFER_NOT_YOURS = N_("This ownership offer was made to another account. Sign in with that account to accept it.")
NO_LONGER_MEMBER = N_("You are no longer a member of this organisation.")
OWNER_CHANGED = N_("The organisation has a new owner since this offer was made.")
SIGN_IN_FIRST = N_("Sign in to accept the ownership.")
NAME_ONE = N_("Name the offer to accept.")


@dataclass(frozen=True)
class OfferView:
    id: str
    org_id: str
    org_name: str
    from_user_id: str
    to_user_id: str
    created_at: datetime
    expires_at: datetime
    state: str  # pending | expired | accepted | withdrawn

    @classmethod
    def of(cls, offer: OwnershipOffer, org: Organisation, state: str) -> OfferView:
        return cls(offer.id, org.id, org.name, offer.from_user_id, offer.to_user_id,
                   offer.created_at, offer.expires_at, state)


class OwnershipService:
    def __init__(self, services: Services, key: bytes) -> None:
        self.s = services
        self.links = Links(OwnershipOffer, OwnershipOffer.withdrawn_at, "withdrawn", key, OFFER_PREFIX)

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=self.s.settings.ownership_offer_ttl)

    # ---- the owner's side -----------------------------------------------------------------------

    async def offer(self, db: AsyncSession, actor: Actor, org_ref: str, to_user_id: str) -> OwnershipOffer:
        """The owner (or an operator, on the owner's behalf) offers the ownership to member
        `to_user_id`, who is emailed a single-use link at their verified email (a member without
        one accepts in the UI). A previous pending offer is withdrawn."""
        access = await self.s.orgs.require(db, actor, org_ref, "ownership.transfer", lock=True)
        org = access.org
        owner = await self.s.orgs.owner_of(db, org.id)
        target = (await self.s.orgs.membership(db, org.id, to_user_id)
                  if isinstance(to_user_id, str) and _ID.fullmatch(to_user_id) else None)
        if target is None:
            raise OrgError(NOT_A_MEMBER)
        if target.role == "owner":
            raise Conflict(ALREADY_OWNER)
        now = utcnow()
        withdrawn = await self.links.close_open(db, now, OwnershipOffer.org_id == org.id)
        token, token_hash = self.links.tokens.new()
        offer = OwnershipOffer(org_id=org.id, from_user_id=owner.user_id, to_user_id=target.user_id,
                               token_hash=token_hash, created_at=now, expires_at=now + self.ttl)
        db.add(offer)
        await db.flush()
        destination = (await self.s.factors.verified_destinations(db, target.user_id)).get("email")
        if destination is not None:
            member = await db.get(User, target.user_id)
            await self.s.courier.enqueue(
                db, channel="email", recipient=destination, kind="ownership_offer",
                locale=(member.locale if member else None) or self.s.settings.default_locale,
                params={"org": org.name, "url": f"{self.s.settings.issuer}/orgs/ownership/{token}",
                        "expires": expiry_text(offer.expires_at)})
        await self.s.audit.record(db, actor, "ownership.offered", org_id=org.id, target_type="user",
                                  target_id=target.user_id,
                                  after={"offer": offer.id, "from": owner.user_id, "replaces": withdrawn or None})
        return offer

    async def withdraw(self, db: AsyncSession, actor: Actor, org_ref: str) -> None:
        """Withdraw the pending offer (its link stops working). Conflict when there is none."""
        access = await self.s.orgs.require(db, actor, org_ref, "ownership.transfer", lock=True)
        withdrawn = await self.links.close_open(db, utcnow(), OwnershipOffer.org_id == access.org.id)
        if not withdrawn:
            raise Conflict(NO_PENDING_OFFER)
        await self.s.audit.record(db, actor, "ownership.offer_withdrawn", org_id=access.org.id,
                                  target_type="ownership_offer", target_id=withdrawn[0])

    async def pending(self, db: AsyncSession, actor: Actor, org_ref: str) -> OfferView | None:
        """The organisation's pending offer, for the owner's page."""
        access = await self.s.orgs.require(db, actor, org_ref, "ownership.transfer")
        now = utcnow()
        offer = (await db.execute(select(OwnershipOffer).where(
            OwnershipOffer.org_id == access.org.id, *self.links.live(now)))).scalars().first()
        return OfferView.of(offer, access.org, "pending") if offer else None

    # ---- the member's side ----------------------------------------------------------------------

    async def offers_for(self, db: AsyncSession, actor: Actor) -> list[OfferView]:
        """Pending offers made to the signed-in person (their "accept in the UI" list)."""
        if actor.type != "user":
            return []
        now = utcnow()
        rows = (await db.execute(select(OwnershipOffer, Organisation).join(
            Organisation, Organisation.id == OwnershipOffer.org_id).where(
            OwnershipOffer.to_user_id == actor.id, *self.links.live(now)))).all()
        return [OfferView.of(offer, org, "pending") for offer, org in rows]

    async def peek(self, db: AsyncSession, token: str) -> OfferView:
        """What the link's page shows. LinkNotFound (404) or LinkGone (410)."""
        offer, org = await self.links.by_token(db, token)
        if self.links.state(offer, utcnow()) != "pending":
            raise LinkGone(OFFER_GONE)
        return OfferView.of(offer, org, "pending")

    async def accept(self, db: AsyncSession, actor: Actor, *, token: str | None = None,
                     offer_id: str | None = None) -> Membership:
        """The member the offer was made to accepts, by the link's `token` or, in the UI, by
        `offer_id`. Returns their (now owner) membership. Refusals change nothing: LinkNotFound /
        OrgNotFound (no such offer; an offer id of someone else's), Forbidden (the link of another
        account), LinkGone (spent, withdrawn or expired), Conflict (no longer a member, or the
        owner changed)."""
        if actor.type != "user" or not actor.id:
            raise Forbidden(SIGN_IN_FIRST)
        if token is not None:
            offer, _ = await self.links.by_token(db, token)
            if offer.to_user_id != actor.id:
                raise Forbidden(OFFER_NOT_YOURS)
        elif offer_id is not None:
            offer = (await db.get(OwnershipOffer, offer_id)
                     if isinstance(offer_id, str) and _ID.fullmatch(offer_id) else None)
            if offer is None or offer.to_user_id != actor.id:
                raise OrgNotFound()
        else:
            raise OrgError(NAME_ONE)
        org = await self.s.orgs.get(db, offer.org_id, lock=True)
        if org is None:
            raise OrgNotFound()
        if not await self.links.consume(db, offer.id, utcnow()):
            raise LinkGone(OFFER_GONE)
        member = await self.s.orgs.membership(db, org.id, actor.id)
        if member is None:
            raise Conflict(NO_LONGER_MEMBER)
        owner = await self.s.orgs.owner_of(db, org.id)
        if owner is None or owner.user_id != offer.from_user_id or member.role == "owner":
            raise Conflict(OWNER_CHANGED)
        before = member.role
        # Demote first, then promote: the "one owner" index must never see two.
        await db.execute(update(Membership).where(Membership.id == owner.id).values(role="admin"))
        await db.execute(update(Membership).where(Membership.id == member.id).values(role="owner"))
        await db.refresh(owner)
        await db.refresh(member)
        await self.s.audit.record(db, actor, "ownership.transferred", org_id=org.id, target_type="user",
                                  target_id=member.user_id,
                                  before={"owner": owner.user_id, "new_owner_role": before},
                                  after={"owner": member.user_id, "old_owner_role": "admin", "offer": offer.id})
        return member
