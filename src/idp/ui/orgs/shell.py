"""/orgs (my organisations, create one, leave one), /orgs/<handle> (overview) and
/orgs/<handle>/audit (the organisation's last events, for the owner and admins)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from idp.ui.orgs.common import Page, act, can, field_of, org_path, see, sections, show
from idp.ui.web import services

router = APIRouter(include_in_schema=False)
AUDIT_LIMIT = 50


async def org_context(db, ctx, ref: str, action: str, active: str) -> tuple[object, dict]:
    """The organisation as the caller sees it (through s.orgs.require: strangers get OrgNotFound)
    and what every organisation page shows: its name, the caller's role, the navigation."""
    access = await ctx.s.orgs.require(db, ctx.actor, ref, action)
    return access, {"org": access.org, "my_role": access.role, "sections": sections(access.role),
                    "active": active}


# ---- my organisations ----------------------------------------------------------------------------

def _list_page(request: Request) -> Page:
    s = services(request)

    async def load(db, ctx):
        rows = await s.orgs.memberships_of(db, ctx.user_id)
        offers = await _offers_to_me(db, ctx)
        return {"memberships": [{"org": org, "role": m.role, "can_leave": can(m.role, "org.leave"),
                                 "offer": offers.get(org.id)} for org, m in rows]}
    return Page("/orgs", "orgs_list.html", load)


async def _offers_to_me(db, ctx) -> dict:
    """Pending ownership offers made to the caller, by organisation id (accepted in the UI)."""
    return {offer.org_id: offer for offer in await ctx.s.orgs.ownership.offers_for(db, ctx.actor)}


@router.get("/orgs")
async def orgs_page(request: Request) -> Response:
    return await show(request, _list_page(request))


@router.post("/orgs")
async def org_create(request: Request) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        org = await s.orgs.create(db, ctx.actor, name=field_of(form, "name", 400),
                                  handle=field_of(form, "handle", 100),
                                  business_id=field_of(form, "business_id", 100), owner_id=ctx.user_id)
        return see(f"/orgs/{org.handle}?done=created")
    return await act(request, "org_create", _list_page(request), action)


@router.post("/orgs/{ref}/leave")
async def org_leave(request: Request, ref: str) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        await s.orgs.members.leave(db, ctx.actor, ref)
        return see("/orgs?done=left")
    return await act(request, "org_leave", overview_page_of(request, ref), action)


# ---- overview ------------------------------------------------------------------------------------

def overview_page_of(request: Request, ref: str) -> Page:
    """The overview page (also the page an ownership accepted in the UI comes back to)."""

    async def load(db, ctx):
        access, context = await org_context(db, ctx, ref, "org.view", "overview")
        offers = await _offers_to_me(db, ctx)
        return {**context, "can_leave": can(access.role, "org.leave"), "offer": offers.get(access.org.id)}
    return Page(org_path(ref), "orgs_overview.html", load)


@router.get("/orgs/{ref}")
async def overview_page(request: Request, ref: str) -> Response:
    return await show(request, overview_page_of(request, ref))


# ---- audit ---------------------------------------------------------------------------------------

def _audit_page(request: Request, ref: str) -> Page:
    s = services(request)

    async def load(db, ctx):
        access, context = await org_context(db, ctx, ref, "audit.view", "audit")
        return {**context, "events": await s.audit.events(db, org_id=access.org.id, limit=AUDIT_LIMIT)}
    return Page(org_path(ref, "/audit"), "orgs_audit.html", load)


@router.get("/orgs/{ref}/audit")
async def audit_page(request: Request, ref: str) -> Response:
    return await show(request, _audit_page(request, ref))


__all__ = ["org_context", "overview_page_of", "router"]
