"""/orgs/<handle>/products: per product, the members with access and their product role; grant
access, change the role, revoke it (owner and admins)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from idp.ui.orgs.common import Page, act, can, field_of, org_path, see, show
from idp.ui.orgs.shell import org_context
from idp.ui.web import services

router = APIRouter(include_in_schema=False)


def _page(request: Request, ref: str) -> Page:
    s = services(request)

    async def load(db, ctx):
        access, context = await org_context(db, ctx, ref, "products.view", "products")
        licences = await s.products.access_list(db, ctx.actor, ref)
        members = await s.orgs.members.list(db, ctx.actor, ref)
        by_id = {m.user_id: m for m in members}
        products = [{"product": product, "access": [
            {"licence": row, "member": by_id.get(row.user_id)}
            for p, row in licences if p.id == product.id]} for product in await s.products.list(db)]
        return {**context, "products": products, "members": members,
                "can_manage": can(access.role, "products.manage_access")}
    return Page(org_path(ref, "/products"), "orgs_products.html", load)


def _back(ref: str, done: str) -> Response:
    return see(f"{org_path(ref, '/products')}?done={done}")


@router.get("/orgs/{ref}/products")
async def products_page(request: Request, ref: str) -> Response:
    return await show(request, _page(request, ref))


@router.post("/orgs/{ref}/products/grant")
async def access_grant(request: Request, ref: str) -> Response:
    """Grant access, or change the product role of someone who has it (the same service call)."""
    s = services(request)

    async def action(db, ctx, form):
        await s.products.grant(db, ctx.actor, ref, field_of(form, "product", 64), field_of(form, "user", 64),
                               field_of(form, "role", 40))
        return _back(ref, "granted")
    return await act(request, "access_grant", _page(request, ref), action)


@router.post("/orgs/{ref}/products/revoke")
async def access_revoke(request: Request, ref: str) -> Response:
    s = services(request)

    async def action(db, ctx, form):
        await s.products.revoke(db, ctx.actor, ref, field_of(form, "product", 64), field_of(form, "user", 64))
        return _back(ref, "access_revoked")
    return await act(request, "access_revoke", _page(request, ref), action)
