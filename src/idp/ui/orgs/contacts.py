"""/orgs/<handle>/contacts: the admin, technical and billing contacts, a change requested (both
the old and the new contact confirm by email, or here when signed in), and the pending requests
(withdraw, re-send)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from idp.orgs.errors import Forbidden
from idp.orgs.models import CONTACT_KINDS
from idp.ui.i18n import N_
from idp.ui.orgs.common import Page, act, field_of, org_path, see, show
from idp.ui.orgs.shell import org_context
from idp.ui.web import services

router = APIRouter(include_in_schema=False)
KIND_NAMES = {"admin": N_("Administrative contact"), "technical": N_("Technical contact"),
              "billing": N_("Billing contact")}


def _page(request: Request, ref: str) -> Page:
    s = services(request)

    async def load(db, ctx):
        # Managers and the contacts themselves may look: the service decides, not the table here.
        access, context = await org_context(db, ctx, ref, "org.view", "contacts")
        contacts = await s.contacts.contacts(db, ctx.actor, ref)
        pending = await s.contacts.pending(db, ctx.actor, ref)
        try:
            members = await s.orgs.members.list(db, ctx.actor, ref)
        except Forbidden:  # a contact who is no manager hands over to someone they name by list
            members = []
        return {**context, "contacts": contacts, "kinds": CONTACT_KINDS, "kind_names": KIND_NAMES,
                "pending": pending, "members": members, "locked": access.org.billing_contact_locked}
    return Page(org_path(ref, "/contacts"), "orgs_contacts.html", load)


def _back(ref: str, done: str) -> Response:
    return see(f"{org_path(ref, '/contacts')}?done={done}")


@router.get("/orgs/{ref}/contacts")
async def contacts_page(request: Request, ref: str) -> Response:
    return await show(request, _page(request, ref))


@router.post("/orgs/{ref}/contacts/request")
async def contact_request(request: Request, ref: str) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        await s.contacts.request_change(db, ctx.actor, ref, field_of(form, "kind", 16), field_of(form, "user", 64))
        return _back(ref, "requested")
    return await act(request, "contact_request", _page(request, ref), action)


async def _on_request(request: Request, ref: str, form_name: str, done: str, call) -> Response:
    """Withdraw or re-send the pending request named by the form (`call`: the service's method)."""
    async def action(db, ctx, form):
        await call(db, ctx.actor, field_of(form, "request", 64))
        return _back(ref, done)
    return await act(request, form_name, _page(request, ref), action)


@router.post("/orgs/{ref}/contacts/withdraw")
async def contact_withdraw(request: Request, ref: str) -> Response:
    return await _on_request(request, ref, "contact_withdraw", "request_withdrawn", services(request).contacts.withdraw)


@router.post("/orgs/{ref}/contacts/resend")
async def contact_resend(request: Request, ref: str) -> Response:
    return await _on_request(request, ref, "contact_resend", "request_resent", services(request).contacts.resend)
