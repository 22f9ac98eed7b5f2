"""An organisation's contacts and the requests that change them (orgs/contacts.py).

Integrators act as operators do: they set a contact directly (`set_directly`), or ask for a change
(`request_change`), which the current and the new contact confirm through the links emailed to
them, as for a request made on the pages. The billing-contact lock is a field of the organisation
(PATCH /organisations/{org}, routes/organisations.py); the contacts show it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request, Response

from idp.api.auth import ApiCaller, scope
from idp.api.http import ApiRoute, Written, check_if_match, read, write
from idp.api.pagination import Page
from idp.api.problems import responses
from idp.api.routes.common import services_of
from idp.api.schemas.common import ResourceId
from idp.api.schemas.contacts import (
    ContactIn, ContactKind, ContactRequestIn, ContactRequestOut, ContactsOut,
)

router = APIRouter(route_class=ApiRoute, tags=["contacts"])


@router.get("/organisations/{org}/contacts", response_model=ContactsOut,
            responses=responses(401, 403, 404, 422), summary="Read an organisation's contacts")
async def get_contacts(request: Request, org: ResourceId,
                       caller: ApiCaller = Depends(scope("idp:orgs:read"))) -> Response:
    """Who is the administrative, technical and billing contact, and whether billing-contact
    changes are locked. The ETag is the one `If-Match` takes on the contact writes."""
    s = services_of(request)
    sheet = await s.db.run(lambda db: s.contacts.sheet(db, caller.actor, org))
    return read(ContactsOut.of(sheet))


@router.put("/organisations/{org}/contacts/{kind}", response_model=ContactsOut,
            responses=responses(400, 401, 403, 404, 412, 422), summary="Set a contact directly")
async def set_contact(request: Request, org: ResourceId, body: ContactIn,
                      kind: ContactKind = Path(description="admin, technical or billing"),
                      caller: ApiCaller = Depends(scope("idp:orgs:write"))) -> Response:
    """Make a member the contact at once, without the confirmations a change request needs (as
    the service's operators may). Open requests for that contact are withdrawn; the old and the
    new contact are told by email. Setting the current holder again changes nothing."""
    s = services_of(request)

    async def work(db) -> Written:
        sheet = await s.contacts.sheet(db, caller.actor, org, lock=True)
        check_if_match(request, ContactsOut.of(sheet))
        holder = sheet.holders[kind]
        if holder is None or holder.id != body.user_id:  # PUT is idempotent: the same again is a no-op
            await s.contacts.set_directly(db, caller.actor, org, kind, body.user_id)
            sheet = await s.contacts.sheet(db, caller.actor, org)
        return Written(ContactsOut.of(sheet))

    return await write(request, caller, work)


# ---- change requests -----------------------------------------------------------------------------

@router.get("/organisations/{org}/contact-change-requests", response_model=Page[ContactRequestOut],
            responses=responses(401, 403, 404, 422), summary="List open contact-change requests")
async def list_contact_requests(request: Request, org: ResourceId,
                                caller: ApiCaller = Depends(scope("idp:orgs:read"))) -> Page[ContactRequestOut]:
    """The organisation's pending, unexpired requests, oldest first (at most one per contact kind,
    so always one page)."""
    s = services_of(request)
    infos = await s.db.run(lambda db: s.contacts.pending(db, caller.actor, org))
    return Page[ContactRequestOut](items=[ContactRequestOut.of(info) for info in infos], next_cursor=None)


@router.post("/organisations/{org}/contact-change-requests", status_code=201, response_model=ContactRequestOut,
             responses=responses(400, 401, 403, 404, 409, 422), summary="Ask for a contact change")
async def create_contact_request(request: Request, org: ResourceId, body: ContactRequestIn,
                                 caller: ApiCaller = Depends(scope("idp:orgs:write"))) -> Response:
    """Ask that a member become the contact. The current and the new contact each get a personal
    single-use link by email; the change takes effect when both have confirmed (only the new one
    when the slot is empty). An older open request for the same kind is withdrawn. A locked
    billing contact is 409; someone who is not a member, or already the contact, is 400."""
    s = services_of(request)

    async def work(db) -> Written:
        created = await s.contacts.request_change(db, caller.actor, org, body.kind, body.to_user_id)
        info = await s.contacts.get_request(db, caller.actor, created.id)
        return Written(ContactRequestOut.of(info), 201, f"/api/v1/contact-change-requests/{created.id}")

    return await write(request, caller, work)


@router.get("/contact-change-requests/{request_id}", response_model=ContactRequestOut,
            responses=responses(401, 403, 404, 422), summary="Read a contact-change request")
async def get_contact_request(request: Request, request_id: ResourceId,
                              caller: ApiCaller = Depends(scope("idp:orgs:read"))) -> Response:
    """A request in any state: pending, expired, completed, refused or withdrawn."""
    s = services_of(request)
    info = await s.db.run(lambda db: s.contacts.get_request(db, caller.actor, request_id))
    return read(ContactRequestOut.of(info))


@router.delete("/contact-change-requests/{request_id}", status_code=204, response_class=Response,
               responses=responses(401, 403, 404, 409, 422), summary="Withdraw a contact-change request")
async def withdraw_contact_request(request: Request, request_id: ResourceId,
                                   caller: ApiCaller = Depends(scope("idp:orgs:write"))) -> Response:
    """The request's links stop working. A request no longer pending is 409."""
    s = services_of(request)

    async def work(db) -> Written:
        await s.contacts.withdraw(db, caller.actor, request_id)
        return Written(None, 204)

    return await write(request, caller, work)


@router.post("/contact-change-requests/{request_id}/resend", status_code=202, response_model=ContactRequestOut,
             responses=responses(401, 403, 404, 409, 422), summary="Send a request's links again")
async def resend_contact_request(request: Request, request_id: ResourceId,
                                 caller: ApiCaller = Depends(scope("idp:orgs:write"))) -> Response:
    """New links by email to the contacts who have not confirmed yet; their earlier links stop
    working. The expiry stays: an expired request is 409 (ask for a new one)."""
    s = services_of(request)

    async def work(db) -> Written:
        await s.contacts.resend(db, caller.actor, request_id)
        return Written(ContactRequestOut.of(await s.contacts.get_request(db, caller.actor, request_id)), 202)

    return await write(request, caller, work)
