"""/orgs/<handle>/ownership: the owner offers the ownership to a member, sees the pending offer and
can withdraw it. The member it is offered to accepts in the UI (a button on /orgs and on the
organisation's overview) or by the emailed link."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from idp.ui.orgs.common import Page, act, field_of, org_path, see, show
from idp.ui.orgs.shell import org_context, overview_page_of
from idp.ui.web import services

router = APIRouter(include_in_schema=False)


def _page(request: Request, ref: str) -> Page:
    s = services(request)

    async def load(db, ctx):
        access, context = await org_context(db, ctx, ref, "ownership.transfer", "ownership")
        members = await s.orgs.members.list(db, ctx.actor, ref)
        pending = await s.orgs.ownership.pending(db, ctx.actor, ref)
        names = {m.user_id: m.name or m.email or m.user_id for m in members}
        return {**context, "candidates": [m for m in members if m.role != "owner"], "pending": pending,
                "pending_to": names.get(pending.to_user_id) if pending else None}
    return Page(org_path(ref, "/ownership"), "orgs_ownership.html", load)


@router.get("/orgs/{ref}/ownership")
async def ownership_page(request: Request, ref: str) -> Response:
    return await show(request, _page(request, ref))


async def _owner_act(request: Request, ref: str, form_name: str, done: str, call) -> Response:
    """One owner's form of this page: `call(db, ctx, form)` (one service call), then back here."""
    async def action(db, ctx, form):
        await call(db, ctx, form)
        return see(f"{org_path(ref, '/ownership')}?done={done}")
    return await act(request, form_name, _page(request, ref), action)


@router.post("/orgs/{ref}/ownership/offer")
async def ownership_offer(request: Request, ref: str) -> Response:
    offer = services(request).orgs.ownership.offer
    return await _owner_act(request, ref, "ownership_offer", "offered",
                            lambda db, ctx, form: offer(db, ctx.actor, ref, field_of(form, "user", 64)))


@router.post("/orgs/{ref}/ownership/withdraw")
async def ownership_withdraw(request: Request, ref: str) -> Response:
    withdraw = services(request).orgs.ownership.withdraw
    return await _owner_act(request, ref, "ownership_withdraw", "withdrawn",
                            lambda db, ctx, form: withdraw(db, ctx.actor, ref))


@router.post("/orgs/{ref}/ownership/accept")
async def ownership_accept(request: Request, ref: str) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        await s.orgs.ownership.accept(db, ctx.actor, offer_id=field_of(form, "offer", 64))
        return see(f"{org_path(ref)}?done=accepted")
    return await act(request, "ownership_accept", overview_page_of(request, ref), action)
