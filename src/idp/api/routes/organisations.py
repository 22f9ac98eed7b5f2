"""/api/v1/organisations: organisations, members, invitations, the ownership offer, usernames and
the sign-in policy. Every route calls the organisation services (orgs/), which check what the
caller may do with the same permission table the pages use: an integrator acts with the owner's
powers, an organisation-bound one in its own organisation only (404 for every other)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from idp.api.auth import ApiCaller, require_platform, scope
from idp.api.http import ApiRoute, Written, check_if_match, read, write
from idp.api.pagination import Page, PageParams, page_params
from idp.api.problems import Problem, responses
from idp.api.routes.common import services_of
from idp.api.schemas.common import ResourceId
from idp.api.schemas.organisations import (
    InvitationIn,
    InvitationOut,
    MemberIn,
    MemberOut,
    MemberPatch,
    OrganisationIn,
    OrganisationOut,
    OrganisationPatch,
    OwnershipOfferIn,
    OwnershipOfferOut,
    Policy,
    PolicyOut,
    ResendIn,
    UsernameCreated,
    UsernameIn,
    UsernameOut,
)

router = APIRouter(route_class=ApiRoute, tags=["organisations"])

READ = scope("idp:orgs:read")
WRITE = scope("idp:orgs:write")
BASE = "/api/v1/organisations"


# ---- organisations -------------------------------------------------------------------------------

@router.get("/organisations", response_model=Page[OrganisationOut], summary="List organisations",
            responses=responses(400, 401, 403, 422))
async def list_organisations(
    request: Request,
    caller: ApiCaller = Depends(READ),
    page: PageParams = Depends(page_params),
    handle: str | None = Query(None, max_length=40, pattern=r"^[A-Za-z0-9-]+$", description="Exactly this handle"),
    name: str | None = Query(None, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$",
                             description="Names containing this, case-insensitively"),
) -> Page[OrganisationOut]:
    """Oldest first. An organisation-bound client sees its own organisation only."""
    s = services_of(request)
    views, cursor = await s.db.run(lambda db: s.orgs.page(
        db, caller.actor, limit=page.limit, cursor=page.cursor, handle=handle, name=name))
    return Page[OrganisationOut](items=[OrganisationOut.of(v) for v in views], next_cursor=cursor)


@router.post("/organisations", response_model=OrganisationOut, status_code=201,
             summary="Create an organisation", responses=responses(400, 401, 403, 404, 409, 422))
async def create_organisation(request: Request, body: OrganisationIn,
                              caller: ApiCaller = Depends(WRITE)) -> Response:
    """An existing account (by user id or email) becomes the owner and holds the three contacts.
    Platform clients only; a taken handle is 409."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        owner_id = await s.orgs.account(db, body.owner)
        org = await s.orgs.create(db, caller.actor, name=body.name, handle=body.handle,
                                  business_id=body.business_id, owner_id=owner_id)
        view = await s.orgs.view(db, caller.actor, org.id)
        return Written(OrganisationOut.of(view), 201, f"{BASE}/{org.id}")

    return await write(request, caller, work)


@router.get("/organisations/{org}", response_model=OrganisationOut, summary="Read an organisation",
            responses=responses(401, 403, 404, 422))
async def get_organisation(request: Request, org: ResourceId, caller: ApiCaller = Depends(READ)) -> Response:
    """By id or handle, with an ETag for `If-Match`."""
    s = services_of(request)
    view = await s.db.run(lambda db: s.orgs.view(db, caller.actor, org))
    return read(OrganisationOut.of(view))


@router.patch("/organisations/{org}", response_model=OrganisationOut, summary="Change an organisation",
              responses=responses(400, 401, 403, 404, 412, 422))
async def update_organisation(request: Request, org: ResourceId, body: OrganisationPatch,
                              caller: ApiCaller = Depends(WRITE)) -> Response:
    """Only the fields named change. The billing-contact lock is for platform clients (403 for an
    organisation's own integration).
    Send the ETag of your last read as `If-Match`: a stale one is 412 and nothing changes."""
    s = services_of(request)

    async def work(db) -> Written:
        check_if_match(request, OrganisationOut.of(await s.orgs.view(db, caller.actor, org, lock=True)))
        view = await s.orgs.update(db, caller.actor, org, body.model_dump(include=body.model_fields_set))
        return Written(OrganisationOut.of(view))

    return await write(request, caller, work)


# ---- members -------------------------------------------------------------------------------------

@router.get("/organisations/{org}/members", response_model=Page[MemberOut], summary="List members",
            responses=responses(400, 401, 403, 404, 422))
async def list_members(request: Request, org: ResourceId, caller: ApiCaller = Depends(READ),
                       page: PageParams = Depends(page_params)) -> Page[MemberOut]:
    """In the order they joined."""
    s = services_of(request)
    views, cursor = await s.db.run(lambda db: s.orgs.members.page(
        db, caller.actor, org, limit=page.limit, cursor=page.cursor))
    return Page[MemberOut](items=[MemberOut.of(v) for v in views], next_cursor=cursor)


@router.post("/organisations/{org}/members", response_model=MemberOut, status_code=201,
             summary="Add an existing account as a member", responses=responses(400, 401, 403, 404, 409, 422))
async def add_member(request: Request, org: ResourceId, body: MemberIn,
                     caller: ApiCaller = Depends(WRITE)) -> Response:
    """With the role admin, editor or member (ownership is only transferred). Already a member: 409.
    A person without an account is invited instead. Operators and platform clients only: an
    organisation's own integration invites (403 forbidden), as the owner's pages do."""
    s = services_of(request)

    async def work(db) -> Written:
        membership = await s.orgs.members.add(db, caller.actor, org, body.user_id, body.role)
        view = await s.orgs.members.get(db, caller.actor, membership.org_id, membership.user_id)
        return Written(MemberOut.of(view), 201, f"{BASE}/{membership.org_id}/members/{membership.user_id}")

    return await write(request, caller, work)


@router.get("/organisations/{org}/members/{user_id}", response_model=MemberOut, summary="Read a member",
            responses=responses(401, 403, 404, 422))
async def get_member(request: Request, org: ResourceId, user_id: ResourceId,
                     caller: ApiCaller = Depends(READ)) -> Response:
    """With an ETag for `If-Match`."""
    s = services_of(request)
    return read(MemberOut.of(await s.db.run(lambda db: s.orgs.members.get(db, caller.actor, org, user_id))))


@router.patch("/organisations/{org}/members/{user_id}", response_model=MemberOut, summary="Change a member's role",
              responses=responses(400, 401, 403, 404, 409, 412, 422))
async def change_member(request: Request, org: ResourceId, user_id: ResourceId, body: MemberPatch,
                        caller: ApiCaller = Depends(WRITE)) -> Response:
    """Nobody is made owner here, and the owner is never demoted (403: transfer the ownership
    first).
    Send the ETag of your last read as `If-Match`: a stale one is 412 and nothing changes."""
    s = services_of(request)

    async def work(db) -> Written:
        check_if_match(request, MemberOut.of(await s.orgs.members.get(db, caller.actor, org, user_id, lock=True)))
        await s.orgs.members.change_role(db, caller.actor, org, user_id, body.role)
        return Written(MemberOut.of(await s.orgs.members.get(db, caller.actor, org, user_id)))

    return await write(request, caller, work)


@router.delete("/organisations/{org}/members/{user_id}", status_code=204, summary="Remove a member",
               responses=responses(401, 403, 404, 412, 422))
async def remove_member(request: Request, org: ResourceId, user_id: ResourceId,
                        caller: ApiCaller = Depends(WRITE)) -> Response:
    """With their product access and the tokens that speak for this organisation; never the
    owner (403)."""
    s = services_of(request)

    async def work(db) -> Written:
        check_if_match(request, MemberOut.of(await s.orgs.members.get(db, caller.actor, org, user_id, lock=True)))
        await s.orgs.members.remove(db, caller.actor, org, user_id)
        return Written(None, 204)

    return await write(request, caller, work)


# ---- invitations ---------------------------------------------------------------------------------

@router.get("/organisations/{org}/invitations", response_model=Page[InvitationOut],
            summary="List open invitations", responses=responses(400, 401, 403, 404, 422))
async def list_invitations(request: Request, org: ResourceId, caller: ApiCaller = Depends(READ),
                           page: PageParams = Depends(page_params)) -> Page[InvitationOut]:
    """Neither accepted nor revoked, newest first; expired ones too (they can be resent)."""
    s = services_of(request)
    views, cursor = await s.db.run(lambda db: s.orgs.invitations.page(
        db, caller.actor, org, limit=page.limit, cursor=page.cursor))
    return Page[InvitationOut](items=[InvitationOut.of(v) for v in views], next_cursor=cursor)


@router.post("/organisations/{org}/invitations", response_model=InvitationOut, status_code=201,
             summary="Invite someone by email", responses=responses(400, 401, 403, 404, 409, 422))
async def invite(request: Request, org: ResourceId, body: InvitationIn,
                 caller: ApiCaller = Depends(WRITE)) -> Response:
    """Emails a single-use link (valid for a week) that makes whoever holds this VERIFIED address a
    member with `role`. An older invitation of the same address is revoked."""
    s = services_of(request)

    async def work(db) -> Written:
        invitation = await s.orgs.invitations.invite(db, caller.actor, org, body.email, body.role,
                                                     locale=body.locale)
        view = await s.orgs.invitations.view(db, caller.actor, invitation.org_id, invitation.id)
        return Written(InvitationOut.of(view), 201, f"{BASE}/{invitation.org_id}/invitations/{invitation.id}")

    return await write(request, caller, work)


@router.get("/organisations/{org}/invitations/{invitation_id}", response_model=InvitationOut,
            summary="Read an invitation", responses=responses(401, 403, 404, 422))
async def get_invitation(request: Request, org: ResourceId, invitation_id: ResourceId,
                         caller: ApiCaller = Depends(READ)) -> Response:
    """In any state: pending, expired, accepted or revoked."""
    s = services_of(request)
    return read(InvitationOut.of(await s.db.run(
        lambda db: s.orgs.invitations.view(db, caller.actor, org, invitation_id))))


@router.delete("/organisations/{org}/invitations/{invitation_id}", status_code=204,
               summary="Revoke an invitation", responses=responses(401, 403, 404, 409, 422))
async def revoke_invitation(request: Request, org: ResourceId, invitation_id: ResourceId,
                            caller: ApiCaller = Depends(WRITE)) -> Response:
    """Its link stops working. Already accepted or revoked: 409."""
    s = services_of(request)

    async def work(db) -> Written:
        await s.orgs.invitations.revoke(db, caller.actor, org, invitation_id)
        return Written(None, 204)

    return await write(request, caller, work)


@router.post("/organisations/{org}/invitations/{invitation_id}/resend", response_model=InvitationOut,
             status_code=202, summary="Send an invitation again", responses=responses(400, 401, 403, 404, 409, 422))
async def resend_invitation(request: Request, org: ResourceId, invitation_id: ResourceId,
                            body: ResendIn | None = None, caller: ApiCaller = Depends(WRITE)) -> Response:
    """With a new link and a new expiry; the old link stops working. The email is queued (202)."""
    s = services_of(request)

    async def work(db) -> Written:
        await s.orgs.invitations.resend(db, caller.actor, org, invitation_id, locale=body.locale if body else None)
        return Written(InvitationOut.of(await s.orgs.invitations.view(db, caller.actor, org, invitation_id)), 202)

    return await write(request, caller, work)


# ---- ownership -----------------------------------------------------------------------------------

@router.get("/organisations/{org}/ownership-offer", response_model=OwnershipOfferOut,
            summary="Read the pending ownership offer", responses=responses(401, 403, 404, 422))
async def get_ownership_offer(request: Request, org: ResourceId, caller: ApiCaller = Depends(READ)) -> Response:
    """404 when there is none."""
    s = services_of(request)
    offer = await s.db.run(lambda db: s.orgs.ownership.pending(db, caller.actor, org))
    if offer is None:
        raise Problem("not-found", "there is no pending ownership offer")
    return read(OwnershipOfferOut.of(offer))


@router.post("/organisations/{org}/ownership-offer", response_model=OwnershipOfferOut, status_code=201,
             summary="Offer the ownership to a member", responses=responses(400, 401, 403, 404, 409, 422))
async def offer_ownership(request: Request, org: ResourceId, body: OwnershipOfferIn,
                          caller: ApiCaller = Depends(WRITE)) -> Response:
    """On the owner's behalf. The member accepts by the link emailed to their verified address, or
    in the UI; the owner then becomes an admin. A pending offer is replaced."""
    s = services_of(request)

    async def work(db) -> Written:
        offer = await s.orgs.ownership.offer(db, caller.actor, org, body.to_user_id)
        view = await s.orgs.ownership.pending(db, caller.actor, offer.org_id)
        return Written(OwnershipOfferOut.of(view), 201, f"{BASE}/{offer.org_id}/ownership-offer")

    return await write(request, caller, work)


@router.delete("/organisations/{org}/ownership-offer", status_code=204,
               summary="Withdraw the pending ownership offer", responses=responses(401, 403, 404, 409, 422))
async def withdraw_ownership_offer(request: Request, org: ResourceId, caller: ApiCaller = Depends(WRITE)) -> Response:
    """Its link stops working. No pending offer: 409."""
    s = services_of(request)

    async def work(db) -> Written:
        await s.orgs.ownership.withdraw(db, caller.actor, org)
        return Written(None, 204)

    return await write(request, caller, work)


# ---- usernames -----------------------------------------------------------------------------------

@router.get("/organisations/{org}/usernames", response_model=Page[UsernameOut],
            summary="List the organisation's usernames", responses=responses(401, 403, 404, 422))
async def list_usernames(request: Request, org: ResourceId, caller: ApiCaller = Depends(READ)) -> Page[UsernameOut]:
    """Every member who signs in as `<local part>@<handle>`, by username (one page)."""
    s = services_of(request)
    rows = await s.db.run(lambda db: s.org_usernames.list(db, caller.actor, org))
    return Page[UsernameOut](items=[UsernameOut(username=u, user_id=i) for u, i in rows], next_cursor=None)


@router.post("/organisations/{org}/usernames", response_model=UsernameCreated, status_code=201,
             summary="Create a person who signs in with an organisation username",
             responses=responses(400, 401, 403, 404, 409, 422))
async def create_username(request: Request, org: ResourceId, body: UsernameIn,
                          caller: ApiCaller = Depends(WRITE)) -> Response:
    """A new account signing in as `<local_part>@<handle>`, a member with `role`, and a temporary
    password sent to `deliver_to` (never returned) that must be changed at the first sign-in. A
    taken username is 409."""
    s = services_of(request)

    async def work(db) -> Written:
        user, username = await s.org_usernames.create(db, caller.actor, org, body.local_part, name=body.name,
                                                      deliver_to=body.deliver_to, role=body.role,
                                                      locale=body.locale)
        org_id = (await s.orgs.view(db, caller.actor, org)).org.id
        return Written(UsernameCreated(username=username, user_id=user.id, role=body.role), 201,
                       f"{BASE}/{org_id}/members/{user.id}")

    return await write(request, caller, work)


# ---- sign-in policy ------------------------------------------------------------------------------

@router.get("/organisations/{org}/policy", response_model=PolicyOut, summary="Read the sign-in policy",
            responses=responses(401, 403, 404, 422))
async def get_policy(request: Request, org: ResourceId, caller: ApiCaller = Depends(READ)) -> Response:
    """The organisation's settings, what is in force, and the platform floor; with an ETag."""
    s = services_of(request)
    return read(PolicyOut.of(await s.db.run(lambda db: s.org_policies.view(db, caller.actor, org))))


@router.put("/organisations/{org}/policy", response_model=PolicyOut, summary="Replace the sign-in policy",
            responses=responses(400, 401, 403, 404, 412, 422))
async def put_policy(request: Request, org: ResourceId, body: Policy,
                     caller: ApiCaller = Depends(WRITE)) -> Response:
    """Settings left out take their defaults. A policy below the platform floor, or breaking a
    rule of its own, is 422 policy-rejected and nothing changes.
    Send the ETag of your last read as `If-Match`: a stale one is 412 and nothing changes."""
    s = services_of(request)

    async def work(db) -> Written:
        check_if_match(request, PolicyOut.of(await s.org_policies.view(db, caller.actor, org, lock=True)))
        await s.org_policies.update(db, caller.actor, org, body.model_dump())
        return Written(PolicyOut.of(await s.org_policies.view(db, caller.actor, org)))

    return await write(request, caller, work)
