"""/orgs/<handle>/members: the member list (change a role, remove), invitations by email (invite,
pending ones revoked or re-sent) and organisation usernames (`name@handle`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from idp.orgs.models import ROLES
from idp.ui.orgs.common import Page, act, can, field_of, org_path, see, show
from idp.ui.orgs.shell import org_context
from idp.ui.web import services

router = APIRouter(include_in_schema=False)


def _page(request: Request, ref: str) -> Page:
    s = services(request)

    async def load(db, ctx):
        access, context = await org_context(db, ctx, ref, "members.view", "members")
        role = access.role
        members = await s.orgs.members.list(db, ctx.actor, ref)
        rows = [{
            "member": m, "me": m.user_id == ctx.user_id,
            "roles": [r for r in ROLES if r != m.role
                      and can(role, "members.change_role", target_role=m.role, new_role=r)],
            "can_remove": m.user_id != ctx.user_id and can(role, "members.remove", target_role=m.role),
        } for m in members]
        invite_roles = [r for r in ROLES if can(role, "members.invite", new_role=r)]
        pending = await s.orgs.invitations.list_pending(db, ctx.actor, ref) if invite_roles else []
        return {**context, "members": rows, "invite_roles": invite_roles, "invitations": pending,
                "username_roles": [r for r in ROLES if can(role, "usernames.create", new_role=r)]}
    return Page(org_path(ref, "/members"), "orgs_members.html", load)


def _back(ref: str, done: str) -> Response:
    return see(f"{org_path(ref, '/members')}?done={done}")


@router.get("/orgs/{ref}/members")
async def members_page(request: Request, ref: str) -> Response:
    return await show(request, _page(request, ref))


@router.post("/orgs/{ref}/members/role")
async def member_role(request: Request, ref: str) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        await s.orgs.members.change_role(db, ctx.actor, ref, field_of(form, "user", 64), field_of(form, "role", 16))
        return _back(ref, "role")
    return await act(request, "member_role", _page(request, ref), action)


@router.post("/orgs/{ref}/members/remove")
async def member_remove(request: Request, ref: str) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        await s.orgs.members.remove(db, ctx.actor, ref, field_of(form, "user", 64))
        return _back(ref, "removed")
    return await act(request, "member_remove", _page(request, ref), action)


# ---- invitations ---------------------------------------------------------------------------------

@router.post("/orgs/{ref}/invitations")
async def invite(request: Request, ref: str) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        await s.orgs.invitations.invite(db, ctx.actor, ref, field_of(form, "email", 400),
                                        field_of(form, "role", 16), locale=ctx.locale)
        return _back(ref, "invited")
    return await act(request, "invite", _page(request, ref), action)


@router.post("/orgs/{ref}/invitations/revoke")
async def invitation_revoke(request: Request, ref: str) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        await s.orgs.invitations.revoke(db, ctx.actor, ref, field_of(form, "invitation", 64))
        return _back(ref, "revoked")
    return await act(request, "invitation_revoke", _page(request, ref), action)


@router.post("/orgs/{ref}/invitations/resend")
async def invitation_resend(request: Request, ref: str) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        await s.orgs.invitations.resend(db, ctx.actor, ref, field_of(form, "invitation", 64), locale=ctx.locale)
        return _back(ref, "resent")
    return await act(request, "invitation_resend", _page(request, ref), action)


# ---- organisation usernames ----------------------------------------------------------------------

@router.post("/orgs/{ref}/usernames")
async def username_create(request: Request, ref: str) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        await s.org_usernames.create(db, ctx.actor, ref, field_of(form, "username", 100),
                                     name=field_of(form, "display_name", 400),
                                     deliver_to=field_of(form, "deliver_to", 400),
                                     role=field_of(form, "role", 16), locale=ctx.locale)
        return _back(ref, "username")
    return await act(request, "username_create", _page(request, ref), action)
