"""The organisation's admin, technical and billing contacts, and the requests that change them
(seed 002, OVH's service contacts).

Who may do what:
- See the contacts: owners and admins (`contacts.view`) and whoever holds a contact role.
- Request a change: the admin contact (any kind), the holder of a kind (handing over that kind
  only), and also owners and admins (`contacts.manage`). Seed 002 names only the admin contact; we
  let the organisation's managers ask too, because the issue gives admins "contacts" and a request
  changes nothing without the current holder's own confirmation: a manager can start a handover,
  never take a role away. Operators and integrators act with the owner's powers.
- The new contact must be a member. One pending request per (organisation, kind): a new one
  withdraws the older.
- Set a contact directly: operators and integrators always; owners and admins only into an empty
  slot (none set yet, or its holder has left the organisation).
- Lock billing-contact changes (unpaid invoices): operators and integrators only.

A request is a small state machine:

    pending ──(both confirmed)──────→ completed
       │ ──(either refuses)─────────→ refused
       │ ──(withdrawn or replaced)──→ withdrawn
       └ past expires_at: still "pending" in the row, but nothing can confirm or refuse it

Both the current ("old") and the new contact get a personal single-use token by email (256 bits,
stored as an HMAC under its own key). A token is spent by one conditional UPDATE (`..._confirmed_at
IS NULL AND state = 'pending' AND expires_at > now`), so of ten parallel uses exactly one counts.
Every confirmation takes the organisation's row lock before it reads the request: two confirmations
(old and new) in parallel are serialised, so the second always sees the first and the change is
applied exactly once, by whichever comes second. A request whose slot was empty needs only the new
contact's confirmation.

Signing in is not required to confirm: the emailed token is the proof (as in seed 002), the page
that opens it shows the request first and changes nothing on GET (mail scanners follow links), and
a POST with a CSRF token confirms or refuses. Signed-in parties may also confirm or refuse by the
request's id (`confirm_as`, `refuse_as`), e.g. a contact without an email address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import User
from idp.audit.service import SYSTEM, Actor
from idp.courier.templates import CONTACT_WORDS, pick_locale
from idp.db import utcnow
from idp.orgs import permissions
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.models import CONTACT_KINDS, ContactChangeRequest, Membership, OrgContact, Organisation
from idp.security import keyed_hash, random_token
from idp.ui.i18n import N_

if TYPE_CHECKING:
    from idp.orgs.service import OrgAccess
    from idp.services import Services

TOKEN_PREFIX = "idpcc_"
_TOKEN = re.compile(r"idpcc_[A-Za-z0-9_-]{32,100}")
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SIDES = ("old", "new")
# Where the emailed link leads. The token rides in the query string, not the path: the access log
# records every path (observability.py) and never a query string.
CONFIRM_PATH = "/orgs/contact-requests"

# Refusals a person may see (pages translate them).
LINK_NOT_VALID = N_("This link is not valid. It may have been replaced by a newer one.")
EXPIRED = N_("This request has expired. Ask for a new one if the change is still wanted.")
CLOSED = {
    "completed": N_("This request is already completed."),
    "refused": N_("This request was refused."),
    "withdrawn": N_("This request was withdrawn or replaced by a newer one."),
}
ALREADY_USED = N_("You have already answered this request. Each link works once.")
BILLING_LOCKED = N_("The billing contact cannot be changed at the moment (for example, because "
                    "of unpaid invoices). Contact customer service.")
NOT_A_MEMBER = N_("The new contact must be a member of the organisation.")
ALREADY_HOLDS = N_("This person already is that contact.")
BAD_KIND = N_("Choose the administrative, technical or billing contact.")
MAY_NOT_REQUEST = N_("Only the administrative contact, the contact being replaced, or the "
                     "organisation's owner or admins can ask for this change.")
MAY_NOT_MANAGE = N_("Only the one who asked for the change, the administrative contact, or the "
                    "organisation's owner or admins can do this.")
NOT_A_PARTY = N_("Only the current and the new contact can answer this request.")
USE_A_REQUEST = N_("This contact is set: change it with a request that both contacts confirm.")
CONTACT_CHANGED = N_("The contact has changed since the request was made. Ask for a new one.")
NEW_LEFT = N_("The new contact is no longer a member of the organisation. Ask for a new request.")
OPERATORS_ONLY = N_("Only the service's operators can lock or unlock billing-contact changes.")


def _is_operator(actor: Actor) -> bool:
    """Operators and integrators: they manage contacts without a role (`require` has already
    kept an organisation-bound client to its own organisation)."""
    return actor.type in ("operator", "client")


def _is_platform(actor: Actor) -> bool:
    """Operators and platform integrators may also override the owner's rules (set an occupied
    slot, the billing lock). A client bound to one organisation has the owner's powers only."""
    return actor.type == "operator" or (actor.type == "client" and actor.org_id is None)


@dataclass
class ContactRequestInfo:
    """A request with the people it names; `side` is "old" or "new" when read through a token."""

    request: ContactChangeRequest
    org: Organisation
    old: User | None
    new: User
    requester: User | None
    side: str | None = None

    @property
    def expired(self) -> bool:
        return self.request.expires_at <= utcnow()

    @property
    def status(self) -> str:
        """pending | expired | completed | refused | withdrawn"""
        if self.request.state == "pending" and self.expired:
            return "expired"
        return self.request.state

    def confirmed(self, side: str) -> bool:
        return getattr(self.request, f"{side}_confirmed_at") is not None


@dataclass
class ContactSheet:
    """An organisation's contacts: {kind: the member holding it, or None}."""

    org: Organisation
    holders: dict[str, User | None]


@dataclass
class Answer:
    """What a confirmation or refusal did: `outcome` is "waiting" (the other contact has still to
    confirm), "completed" (the contact changed) or "refused"."""

    info: ContactRequestInfo
    outcome: str


class ContactService:
    def __init__(self, services: Services, key: bytes) -> None:
        self.s = services
        self.key = key

    # ---- reading ----------------------------------------------------------------------------------

    async def contacts(self, db: AsyncSession, actor: Actor, org_ref: str) -> dict[str, User | None]:
        """{kind: the member holding it, or None} for admin, technical and billing."""
        return (await self.sheet(db, actor, org_ref)).holders

    async def sheet(self, db: AsyncSession, actor: Actor, org_ref: str, *, lock: bool = False) -> ContactSheet:
        """The contacts with their organisation (for its billing lock). `lock` takes the
        organisation's row lock, for a caller that checks this state before changing it (the
        REST API's If-Match)."""
        access, holders = await self._access(db, actor, org_ref, lock=lock)
        if not (self._manages(actor, access, "contacts.view") or
                (actor.type == "user" and actor.id in holders.values())):
            raise Forbidden()
        users = await self._users(db, [uid for uid in holders.values() if uid])
        return ContactSheet(access.org, {kind: users.get(uid) if uid else None for kind, uid in holders.items()})

    async def get_request(self, db: AsyncSession, actor: Actor, request_id: str) -> ContactRequestInfo:
        """One request, in any state, for whoever `pending` would show it to; OrgNotFound for
        anyone else."""
        request, access, holders = await self._request_for(db, actor, request_id, lock=False)
        person = actor.id if actor.type == "user" else None
        if not (self._manages(actor, access, "contacts.view") or (person is not None and person in (
                holders["admin"], request.from_user_id, request.to_user_id, request.requested_by))):
            raise OrgNotFound()
        return await self._info(db, request, access.org)

    async def pending(self, db: AsyncSession, actor: Actor, org_ref: str) -> list[ContactRequestInfo]:
        """Open requests (not expired), oldest first. Managers and the admin contact see all of
        them; any other member sees the ones they asked for or are a party to."""
        access, holders = await self._access(db, actor, org_ref)
        rows = (await db.execute(select(ContactChangeRequest).where(
            ContactChangeRequest.org_id == access.org.id, ContactChangeRequest.state == "pending",
            ContactChangeRequest.expires_at > utcnow(),
        ).order_by(ContactChangeRequest.created_at, ContactChangeRequest.id))).scalars().all()
        sees_all = self._manages(actor, access, "contacts.view") or holders["admin"] == actor.id
        if not sees_all:
            rows = [r for r in rows if actor.id in (r.from_user_id, r.to_user_id, r.requested_by)]
        return [await self._info(db, r, access.org) for r in rows]

    async def inspect(self, db: AsyncSession, token: str) -> ContactRequestInfo:
        """The request a token belongs to, for the confirmation page; changes nothing."""
        request, side = await self._by_token(db, token)
        org = await self.s.orgs.find(db, request.org_id)
        return await self._info(db, request, org, side=side)

    # ---- requests ----------------------------------------------------------------------------------

    async def request_change(self, db: AsyncSession, actor: Actor, org_ref: str, kind: str,
                             new_user_id: str) -> ContactChangeRequest:
        """Ask that `new_user_id` become the `kind` contact; mails both contacts their links."""
        kind = self._kind(kind)
        if not isinstance(new_user_id, str) or not _ID.fullmatch(new_user_id):
            raise OrgError(NOT_A_MEMBER)
        access, holders = await self._access(db, actor, org_ref, lock=True)
        org = access.org
        if not (_is_operator(actor) or holders["admin"] == actor.id or holders[kind] == actor.id
                or permissions.allowed(access.role, "contacts.manage")):
            raise Forbidden(MAY_NOT_REQUEST)
        if kind == "billing" and org.billing_contact_locked:
            raise Conflict(BILLING_LOCKED)
        if await self.s.orgs.membership(db, org.id, new_user_id) is None:
            raise OrgError(NOT_A_MEMBER)
        old_id = holders[kind]
        if old_id == new_user_id:
            raise OrgError(ALREADY_HOLDS)
        await self._withdraw_open(db, actor, org.id, kind, reason="replaced")

        now = utcnow()
        tokens = {"new": random_token(TOKEN_PREFIX)}
        if old_id is not None:
            tokens["old"] = random_token(TOKEN_PREFIX)
        request = ContactChangeRequest(
            org_id=org.id, kind=kind, from_user_id=old_id, to_user_id=new_user_id,
            requested_by=actor.id if actor.type == "user" else None, state="pending",
            old_token_hash=self._hash(tokens["old"]) if old_id else None,
            new_token_hash=self._hash(tokens["new"]),
            # An empty slot has nobody to hand it over: only the new contact confirms.
            old_confirmed_at=None if old_id else now,
            created_at=now, expires_at=now + timedelta(seconds=self.s.settings.contact_request_ttl))
        db.add(request)
        await db.flush()
        await self.s.audit.record(db, actor, "contact_request.created", org_id=org.id,
                                  target_type="contact_request", target_id=request.id,
                                  after=self._snapshot(request))
        await self._send_links(db, await self._info(db, request, org), tokens)
        return request

    async def withdraw(self, db: AsyncSession, actor: Actor, request_id: str) -> ContactChangeRequest:
        """The requester, the admin contact or a manager withdraws an open request."""
        request, access, holders = await self._request_for(db, actor, request_id)
        self._may_manage(actor, access, holders, request)
        if request.state != "pending":
            raise Conflict(CLOSED[request.state])
        closed = await db.execute(update(ContactChangeRequest).where(
            ContactChangeRequest.id == request.id, ContactChangeRequest.state == "pending",
        ).values(state="withdrawn", closed_at=utcnow()))
        if closed.rowcount != 1:
            raise Conflict(CLOSED["withdrawn"])
        await db.refresh(request)
        await self.s.audit.record(db, actor, "contact_request.withdrawn", org_id=request.org_id,
                                  target_type="contact_request", target_id=request.id,
                                  before={"state": "pending"}, after={"state": "withdrawn"})
        return request

    async def resend(self, db: AsyncSession, actor: Actor, request_id: str) -> ContactChangeRequest:
        """New links to the contacts who have not confirmed yet; their old links stop working.
        The expiry stays: a request past it is refused (ask for a new one)."""
        request, access, holders = await self._request_for(db, actor, request_id)
        self._may_manage(actor, access, holders, request)
        now = utcnow()
        self._check_open(request, now)
        tokens = {side: random_token(TOKEN_PREFIX) for side in SIDES
                  if getattr(request, f"{side}_confirmed_at") is None}
        values = {f"{side}_token_hash": self._hash(token) for side, token in tokens.items()}
        # Guarded by the row lock taken in _request_for, and by state and expiry here.
        changed = await db.execute(update(ContactChangeRequest).where(
            ContactChangeRequest.id == request.id, ContactChangeRequest.state == "pending",
            ContactChangeRequest.expires_at > now).values(**values))
        if changed.rowcount != 1:
            raise Conflict(EXPIRED)
        await db.refresh(request)
        await self.s.audit.record(db, actor, "contact_request.resent", org_id=request.org_id,
                                  target_type="contact_request", target_id=request.id,
                                  after={"sent_to": sorted(tokens)})
        await self._send_links(db, await self._info(db, request, access.org), tokens)
        return request

    # ---- answers -----------------------------------------------------------------------------------

    async def confirm(self, db: AsyncSession, token: str) -> Answer:
        """The token's owner confirms; the second of the two confirmations applies the change."""
        request, side, org = await self._locked_by_token(db, token)
        return await self._answer(db, request, org, side, confirm=True, token_hash=self._hash(token))

    async def refuse(self, db: AsyncSession, token: str) -> Answer:
        """The token's owner refuses: the request is closed and the requester told."""
        request, side, org = await self._locked_by_token(db, token)
        return await self._answer(db, request, org, side, confirm=False, token_hash=self._hash(token))

    async def confirm_as(self, db: AsyncSession, actor: Actor, request_id: str) -> Answer:
        """A signed-in party confirms in the UI (no token needed: the session is the proof)."""
        request, access, _ = await self._request_for(db, actor, request_id)
        return await self._answer(db, request, access.org, self._side_of(actor, request), confirm=True)

    async def refuse_as(self, db: AsyncSession, actor: Actor, request_id: str) -> Answer:
        request, access, _ = await self._request_for(db, actor, request_id)
        return await self._answer(db, request, access.org, self._side_of(actor, request), confirm=False)

    # ---- direct changes ----------------------------------------------------------------------------

    async def set_directly(self, db: AsyncSession, actor: Actor, org_ref: str, kind: str,
                           user_id: str) -> None:
        """Set a contact without a request: operators and integrators always; owners and admins
        only when the slot is empty. Open requests for that kind are withdrawn."""
        kind = self._kind(kind)
        if not isinstance(user_id, str) or not _ID.fullmatch(user_id):
            raise OrgError(NOT_A_MEMBER)
        access, holders = await self._access(db, actor, org_ref, lock=True)
        org = access.org
        if not _is_platform(actor):
            if not _is_operator(actor):
                permissions.check(access.role, "contacts.manage")
            if holders[kind] is not None:
                raise Conflict(USE_A_REQUEST)
            if kind == "billing" and org.billing_contact_locked:
                raise Conflict(BILLING_LOCKED)
        if await self.s.orgs.membership(db, org.id, user_id) is None:
            raise OrgError(NOT_A_MEMBER)
        if holders[kind] == user_id:
            raise OrgError(ALREADY_HOLDS)
        await self._withdraw_open(db, actor, org.id, kind, reason="set directly")
        before = await self._put(db, org.id, kind, user_id)
        await self.s.audit.record(db, actor, "contact.set", org_id=org.id, target_type="contact",
                                  target_id=kind, before={"kind": kind, "user_id": before},
                                  after={"kind": kind, "user_id": user_id})
        users = await self._users(db, [u for u in (before, user_id) if u])
        await self._notify_changed(db, org, kind, users.get(before) if before else None, users[user_id])

    async def set_billing_lock(self, db: AsyncSession, actor: Actor, org_ref: str, locked: bool) -> None:
        """Operators and integrators lock (or unlock) billing-contact changes, e.g. for unpaid
        invoices: new billing requests are refused and open ones cannot complete meanwhile."""
        if not isinstance(locked, bool):
            raise OrgError("locked must be true or false")
        if not _is_platform(actor):
            await self.s.orgs.require(db, actor, org_ref, "org.view")  # strangers: OrgNotFound
            raise Forbidden(OPERATORS_ONLY)
        org = (await self.s.orgs.require(db, actor, org_ref, "org.view", lock=True)).org
        before = bool(org.billing_contact_locked)
        org.billing_contact_locked = locked
        await db.flush()
        await self.s.audit.record(db, actor, "org.billing_contact_lock", org_id=org.id,
                                  target_type="org", target_id=org.id,
                                  before={"billing_contact_locked": before},
                                  after={"billing_contact_locked": locked})

    async def assign_initial(self, db: AsyncSession, org_id: str, user_id: str, *,
                             actor: Actor = SYSTEM) -> None:
        """A new organisation's owner holds all three contacts (call from OrgService.create, in
        its transaction). Kinds already set are left alone."""
        existing = set((await db.execute(select(OrgContact.kind).where(
            OrgContact.org_id == org_id))).scalars())
        assigned = {}
        for kind in CONTACT_KINDS:
            if kind not in existing:
                db.add(OrgContact(org_id=org_id, kind=kind, user_id=user_id))
                assigned[kind] = user_id
        if not assigned:
            return
        await db.flush()
        await self.s.audit.record(db, actor, "contact.assigned", org_id=org_id, target_type="org",
                                  target_id=org_id, before=None, after=assigned)

    def link(self, token: str) -> str:
        return f"{self.s.settings.issuer}{CONFIRM_PATH}?{urlencode({'token': token})}"

    # ---- the steps ---------------------------------------------------------------------------------

    async def _answer(self, db: AsyncSession, request: ContactChangeRequest, org: Organisation,
                      side: str, *, confirm: bool, token_hash: str | None = None) -> Answer:
        """Confirm or refuse as `side`, with the organisation's row lock held by the caller."""
        now = utcnow()
        self._check_open(request, now)
        confirmed_at = getattr(ContactChangeRequest, f"{side}_confirmed_at")
        if getattr(request, f"{side}_confirmed_at") is not None:
            raise Conflict(ALREADY_USED)
        if confirm and request.kind == "billing" and org.billing_contact_locked:
            raise Conflict(BILLING_LOCKED)
        party_id = request.from_user_id if side == "old" else request.to_user_id
        party = Actor.user(party_id)
        # The single use: one conditional UPDATE; of parallel answers exactly one matches.
        guard = [ContactChangeRequest.id == request.id, ContactChangeRequest.state == "pending",
                 ContactChangeRequest.expires_at > now, confirmed_at.is_(None)]
        if token_hash is not None:
            guard.append(getattr(ContactChangeRequest, f"{side}_token_hash") == token_hash)
        values = {f"{side}_confirmed_at": now} if confirm else {"state": "refused", "closed_at": now}
        spent = await db.execute(update(ContactChangeRequest).where(*guard).values(**values))
        if spent.rowcount != 1:
            raise Conflict(ALREADY_USED)
        await db.refresh(request)
        info = await self._info(db, request, org, side=side)
        if not confirm:
            await self.s.audit.record(db, party, "contact_request.refused", org_id=org.id,
                                      target_type="contact_request", target_id=request.id,
                                      before={"state": "pending"}, after={"state": "refused", "by": side})
            await self._notify_refused(db, info, refused_by=party_id)
            return Answer(info, "refused")
        await self.s.audit.record(db, party, "contact_request.confirmed", org_id=org.id,
                                  target_type="contact_request", target_id=request.id,
                                  after={"confirmed": side})
        if not (info.confirmed("old") and info.confirmed("new")):
            return Answer(info, "waiting")
        await self._complete(db, info, party)
        return Answer(info, "completed")

    async def _complete(self, db: AsyncSession, info: ContactRequestInfo, actor: Actor) -> None:
        """Both confirmed: apply the change, close the request, tell both. The caller holds the
        organisation's row lock, so nothing else changes this contact meanwhile."""
        request, org = info.request, info.org
        holders = await self._holders(db, org.id)
        if holders[request.kind] != request.from_user_id:
            raise Conflict(CONTACT_CHANGED)
        if await self.s.orgs.membership(db, org.id, request.to_user_id) is None:
            raise Conflict(NEW_LEFT)
        closed = await db.execute(update(ContactChangeRequest).where(
            ContactChangeRequest.id == request.id, ContactChangeRequest.state == "pending",
        ).values(state="completed", closed_at=utcnow()))
        if closed.rowcount != 1:
            raise Conflict(CLOSED["completed"])
        await db.refresh(request)
        before = await self._put(db, org.id, request.kind, request.to_user_id)
        await self.s.audit.record(db, actor, "contact.changed", org_id=org.id, target_type="contact",
                                  target_id=request.kind,
                                  before={"kind": request.kind, "user_id": before},
                                  after={"kind": request.kind, "user_id": request.to_user_id,
                                         "request_id": request.id})
        await self._notify_changed(db, org, request.kind, info.old, info.new)

    async def _put(self, db: AsyncSession, org_id: str, kind: str, user_id: str) -> str | None:
        """Set the OrgContact row; returns who held it before (a departed member included)."""
        row = (await db.execute(select(OrgContact).where(
            OrgContact.org_id == org_id, OrgContact.kind == kind))).scalar_one_or_none()
        if row is None:
            db.add(OrgContact(org_id=org_id, kind=kind, user_id=user_id, updated_at=utcnow()))
            await db.flush()
            return None
        before = row.user_id
        row.user_id, row.updated_at = user_id, utcnow()
        await db.flush()
        return before

    async def _withdraw_open(self, db: AsyncSession, actor: Actor, org_id: str, kind: str, *,
                             reason: str) -> None:
        open_ids = (await db.execute(select(ContactChangeRequest.id).where(
            ContactChangeRequest.org_id == org_id, ContactChangeRequest.kind == kind,
            ContactChangeRequest.state == "pending"))).scalars().all()
        for request_id in open_ids:
            closed = await db.execute(update(ContactChangeRequest).where(
                ContactChangeRequest.id == request_id, ContactChangeRequest.state == "pending",
            ).values(state="withdrawn", closed_at=utcnow()))
            if closed.rowcount == 1:
                await self.s.audit.record(db, actor, "contact_request.withdrawn", org_id=org_id,
                                          target_type="contact_request", target_id=request_id,
                                          before={"state": "pending"},
                                          after={"state": "withdrawn", "reason": reason})

    # ---- loading and checks ------------------------------------------------------------------------

    async def _access(self, db: AsyncSession, actor: Actor, org_ref: str, *,
                      lock: bool = False) -> tuple[OrgAccess, dict[str, str | None]]:
        """The organisation (strangers: OrgNotFound) and who holds each contact now."""
        access = await self.s.orgs.require(db, actor, org_ref, "org.view", lock=lock)
        return access, await self._holders(db, access.org.id)

    async def _holders(self, db: AsyncSession, org_id: str) -> dict[str, str | None]:
        """kind -> user id; a holder who is no longer a member leaves the slot empty (None)."""
        rows = (await db.execute(
            select(OrgContact.kind, OrgContact.user_id)
            .join(Membership, (Membership.org_id == OrgContact.org_id) &
                  (Membership.user_id == OrgContact.user_id))
            .where(OrgContact.org_id == org_id))).all()
        held = {kind: user_id for kind, user_id in rows}
        return {kind: held.get(kind) for kind in CONTACT_KINDS}

    async def _request_for(self, db: AsyncSession, actor: Actor, request_id: str, *, lock: bool = True):
        """A request by id for a member of its organisation, with the organisation's row lock
        (unless `lock` is False: reading only). A stranger gets OrgNotFound whether the request
        exists or not."""
        if not isinstance(request_id, str) or not _ID.fullmatch(request_id):
            raise OrgNotFound()
        org_id = (await db.execute(select(ContactChangeRequest.org_id).where(
            ContactChangeRequest.id == request_id))).scalar_one_or_none()
        if org_id is None:
            raise OrgNotFound()
        access, holders = await self._access(db, actor, org_id, lock=lock)
        request = (await db.execute(select(ContactChangeRequest).where(
            ContactChangeRequest.id == request_id).execution_options(populate_existing=True))).scalar_one()
        return request, access, holders

    async def _by_token(self, db: AsyncSession, token: str) -> tuple[ContactChangeRequest, str]:
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise OrgNotFound(LINK_NOT_VALID)
        digest = self._hash(token)
        request = (await db.execute(select(ContactChangeRequest).where(or_(
            ContactChangeRequest.old_token_hash == digest, ContactChangeRequest.new_token_hash == digest,
        )).execution_options(populate_existing=True))).scalar_one_or_none()
        if request is None:
            raise OrgNotFound(LINK_NOT_VALID)
        return request, "old" if request.old_token_hash == digest else "new"

    async def _locked_by_token(self, db: AsyncSession, token: str):
        """The token's request read again after taking its organisation's row lock: whatever
        committed while we waited (the other contact's confirmation, a re-send) is seen."""
        request, _ = await self._by_token(db, token)
        org = await self.s.orgs.find(db, request.org_id, lock=True)
        request, side = await self._by_token(db, token)
        return request, side, org

    def _check_open(self, request: ContactChangeRequest, now: datetime) -> None:
        if request.state != "pending":
            raise Conflict(CLOSED.get(request.state, LINK_NOT_VALID))
        if request.expires_at <= now:
            raise Conflict(EXPIRED)

    def _manages(self, actor: Actor, access: OrgAccess, action: str) -> bool:
        return _is_operator(actor) or permissions.allowed(access.role, action)

    def _may_manage(self, actor: Actor, access: OrgAccess, holders: dict, request: ContactChangeRequest) -> None:
        """Withdraw and re-send: the requester, the admin contact, owners and admins, operators."""
        if (self._manages(actor, access, "contacts.manage") or
                (actor.type == "user" and actor.id in (request.requested_by, holders["admin"]))):
            return
        raise Forbidden(MAY_NOT_MANAGE)

    def _side_of(self, actor: Actor, request: ContactChangeRequest) -> str:
        if actor.type == "user" and actor.id == request.from_user_id:
            return "old"
        if actor.type == "user" and actor.id == request.to_user_id:
            return "new"
        raise Forbidden(NOT_A_PARTY)

    @staticmethod
    def _kind(kind: object) -> str:
        if not isinstance(kind, str) or kind not in CONTACT_KINDS:
            raise OrgError(BAD_KIND)
        return kind

    def _hash(self, token: str) -> str:
        return keyed_hash(self.key, token)

    @staticmethod
    def _snapshot(request: ContactChangeRequest) -> dict:
        return {"kind": request.kind, "from_user_id": request.from_user_id,
                "to_user_id": request.to_user_id, "state": request.state,
                "expires_at": request.expires_at.isoformat()}

    async def _users(self, db: AsyncSession, ids: list[str]) -> dict[str, User]:
        if not ids:
            return {}
        rows = (await db.execute(select(User).where(User.id.in_(set(ids))))).scalars()
        return {user.id: user for user in rows}

    async def _info(self, db: AsyncSession, request: ContactChangeRequest, org: Organisation, *,
                    side: str | None = None) -> ContactRequestInfo:
        users = await self._users(db, [u for u in (request.from_user_id, request.to_user_id,
                                                    request.requested_by) if u])
        return ContactRequestInfo(request=request, org=org, old=users.get(request.from_user_id or ""),
                                  new=users[request.to_user_id],
                                  requester=users.get(request.requested_by or ""), side=side)

    # ---- messages ----------------------------------------------------------------------------------

    async def _mail(self, db: AsyncSession, user: User | None, kind: str, params: dict) -> None:
        """An email to a person's confirmed address; someone without one answers signed in."""
        if user is None or not user.email or not user.email_verified:
            return
        locale = pick_locale(user.locale)
        words = CONTACT_WORDS[locale]
        params = {**params, "contact_kind": words[params["contact_kind"]]}
        for name, nobody in (("old", "none"), ("requester", "administrator")):
            if name in params and not params[name]:
                params[name] = words[nobody]
        await self.s.courier.enqueue(db, channel="email", recipient=user.email, kind=kind,
                                     locale=locale, params=params)

    def _common(self, info: ContactRequestInfo) -> dict:
        return {"org": info.org.name, "contact_kind": info.request.kind,
                "old": _name(info.old), "new": _name(info.new)}

    async def _send_links(self, db: AsyncSession, info: ContactRequestInfo, tokens: dict[str, str]) -> None:
        until = info.request.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        for side, token in tokens.items():
            await self._mail(db, info.old if side == "old" else info.new, "contact_change_request", {
                **self._common(info), "requester": _name(info.requester), "link": self.link(token),
                "until": until})

    async def _notify_changed(self, db: AsyncSession, org: Organisation, kind: str,
                              old: User | None, new: User) -> None:
        params = {"org": org.name, "contact_kind": kind, "old": _name(old), "new": _name(new)}
        for user in {u.id: u for u in (old, new) if u is not None}.values():
            await self._mail(db, user, "contact_changed", params)

    async def _notify_refused(self, db: AsyncSession, info: ContactRequestInfo, *, refused_by: str) -> None:
        """The requester is told, and the other contact, whose confirmation is now moot."""
        params = {**self._common(info), "by": _name(info.old if info.side == "old" else info.new)}
        told = {}
        for user in (info.requester, info.old, info.new):
            if user is not None and user.id != refused_by:
                told[user.id] = user
        for user in told.values():
            await self._mail(db, user, "contact_change_refused", params)


def _name(user: User | None) -> str:
    """How a message names a person: their name and address; "" (rendered as "none" or "an
    administrator") when there is nobody."""
    if user is None:
        return ""
    if user.name and user.email:
        return f"{user.name} <{user.email}>"
    return user.name or user.email or user.id
