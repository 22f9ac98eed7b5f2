"""Products (platform resources) and organisations' product access ("licences").

Products are the platform's: an organisation-bound client may read them (it needs to know what
it can grant) but not create them or attach clients (404, as for anything outside its
organisation), and it reads them without their `clients` (always empty for it): which clients a
product has is the platform's configuration, not something it grants. Licences go through
ProductService.grant/revoke, with their permission checks.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from idp.api.auth import ApiCaller, require_platform, scope
from idp.api.http import ApiRoute, Written, read, write
from idp.api.pagination import Page, PageParams, page_params
from idp.api.problems import Problem, responses
from idp.api.routes.common import services_of
from idp.api.schemas.common import ResourceId
from idp.api.schemas.products import ProductAccessIn, ProductAccessOut, ProductIn, ProductOut

router = APIRouter(route_class=ApiRoute, tags=["products"])


async def _clients(s, db, caller: ApiCaller, products) -> dict[str, list[str]]:
    """client_ids per product; none for an organisation-bound caller (see the module's docstring)."""
    if not caller.platform:
        return {p.id: [] for p in products}
    return await s.products.clients_of(db, [p.id for p in products])


async def _out(s, db, caller: ApiCaller, product) -> ProductOut:
    return ProductOut.of(product, (await _clients(s, db, caller, [product]))[product.id])


async def _found(s, db, ref: str):
    product = await s.products.find(db, ref)
    if product is None:
        raise Problem("not-found", "no such product")
    return product


@router.get("/products", response_model=Page[ProductOut], responses=responses(400, 401, 403, 422),
            summary="List products")
async def list_products(
    request: Request,
    caller: ApiCaller = Depends(scope("idp:products:read")),
    page: PageParams = Depends(page_params),
    handle: str | None = Query(None, max_length=40, pattern=r"^[A-Za-z0-9-]+$",
                               description="Only the product with this handle"),
) -> Page[ProductOut]:
    """Every product, oldest first, with its roles and clients (an organisation-bound client sees
    no clients)."""
    s = services_of(request)

    async def work(db):
        products, cursor = await s.products.page(db, limit=page.limit, cursor=page.cursor, handle=handle)
        clients = await _clients(s, db, caller, products)
        return Page[ProductOut](items=[ProductOut.of(p, clients[p.id]) for p in products], next_cursor=cursor)

    return await s.db.run(work)


@router.post("/products", status_code=201, response_model=ProductOut,
             responses=responses(400, 401, 403, 404, 409, 422), summary="Create a product")
async def create_product(request: Request, body: ProductIn,
                         caller: ApiCaller = Depends(scope("idp:products:write"))) -> Response:
    """A product with its roles (highest first) and, optionally, its clients: their sign-in then
    needs a licence. Platform clients only. A taken handle is 409; an unknown client 404."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        product = await s.products.create(db, caller.actor, body.handle, body.name, body.roles, body.clients)
        return Written(await _out(s, db, caller, product), 201, f"/api/v1/products/{product.id}")

    return await write(request, caller, work)


@router.get("/products/{product}", response_model=ProductOut, responses=responses(401, 403, 404, 422),
            summary="Read a product")
async def get_product(request: Request, product: ResourceId,
                      caller: ApiCaller = Depends(scope("idp:products:read"))) -> Response:
    """A product by id or handle, with its ETag (an organisation-bound client sees no clients)."""
    s = services_of(request)

    async def work(db):
        return await _out(s, db, caller, await _found(s, db, product))

    return read(await s.db.run(work))


@router.put("/products/{product}/clients/{client_id}", response_model=ProductOut,
            responses=responses(401, 403, 404, 422), summary="Attach a client to a product")
async def attach_client(request: Request, product: ResourceId, client_id: ResourceId,
                        caller: ApiCaller = Depends(scope("idp:products:write"))) -> Response:
    """Make the client one of the product's clients (moving it from another product, if any):
    its sign-in then needs a licence of this product. Platform clients only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        await s.products.attach_client(db, caller.actor, product, client_id)
        return Written(await _out(s, db, caller, await _found(s, db, product)))

    return await write(request, caller, work)


@router.delete("/products/{product}/clients/{client_id}", status_code=204, response_class=Response,
               responses=responses(401, 403, 404, 422), summary="Detach a client from a product")
async def detach_client(request: Request, product: ResourceId, client_id: ResourceId,
                        caller: ApiCaller = Depends(scope("idp:products:write"))) -> Response:
    """The client no longer belongs to the product (404 if it did not). Platform clients only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        await s.products.detach_client(db, caller.actor, client_id, product_ref=product)
        return Written(None, 204)

    return await write(request, caller, work)


# ---- product access per organisation -----------------------------------------------------------

@router.get("/organisations/{org}/product-access", response_model=Page[ProductAccessOut],
            responses=responses(400, 401, 403, 404, 422), summary="List an organisation's product access")
async def list_product_access(
    request: Request, org: ResourceId,
    caller: ApiCaller = Depends(scope("idp:products:read")),
    page: PageParams = Depends(page_params),
    user_id: str | None = Query(None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                                description="Only this member's licences"),
    product: str | None = Query(None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                                description="Only this product's licences (id or handle)"),
) -> Page[ProductAccessOut]:
    """The organisation's licences, oldest first. An unknown product is 404."""
    s = services_of(request)
    rows, cursor = await s.db.run(lambda db: s.products.access_page(
        db, caller.actor, org, limit=page.limit, cursor=page.cursor, product_ref=product, user_id=user_id))
    return Page[ProductAccessOut](items=[ProductAccessOut.of(p, row) for p, row in rows], next_cursor=cursor)


@router.put("/organisations/{org}/members/{user_id}/products/{product}", response_model=ProductAccessOut,
            responses=responses(400, 401, 403, 404, 422), summary="Grant product access or change its role")
async def grant_product_access(request: Request, org: ResourceId, user_id: ResourceId, product: ResourceId,
                               body: ProductAccessIn,
                               caller: ApiCaller = Depends(scope("idp:products:write"))) -> Response:
    """Give a member access to a product with one of the product's roles, or change the role they
    have. Someone who is not a member, or a role the product does not declare, is 400."""
    s = services_of(request)

    async def work(db) -> Written:
        row = await s.products.grant(db, caller.actor, org, product, user_id, body.role)
        return Written(ProductAccessOut.of(await s.products.get(db, row.product_id), row))

    return await write(request, caller, work)


@router.delete("/organisations/{org}/members/{user_id}/products/{product}", status_code=204,
               response_class=Response, responses=responses(401, 403, 404, 422),
               summary="Revoke product access")
async def revoke_product_access(request: Request, org: ResourceId, user_id: ResourceId, product: ResourceId,
                                caller: ApiCaller = Depends(scope("idp:products:write"))) -> Response:
    """Take a member's access to the product away; 404 if they had none."""
    s = services_of(request)

    async def work(db) -> Written:
        await s.products.revoke(db, caller.actor, org, product, user_id)
        return Written(None, 204)

    return await write(request, caller, work)
