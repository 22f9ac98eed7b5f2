"""OAuth clients: register, read, change, delete, rotate the secret (ClientService's rules).

Clients are platform resources: an organisation-bound client gets 404 for all of these.
`idp:clients:write` does not lead to more power (ClientService's rules, with the caller's scopes):
a caller gives a client only the `idp:*` scopes its own token carries, and changes, rotates or
deletes only clients whose `idp:*` scopes its token carries too (else 403 forbidden, naming the
scopes); first-party clients (no consent page) are the operators' (403); a client does not change
its own registration (409; it may rotate its own secret).

The secret is in the registration and rotation replies only; a retry with the same
Idempotency-Key replays that reply to the same caller, secret included (api/http.py keeps it 24
hours).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from idp.api.auth import ApiCaller, require_platform, scope
from idp.api.http import ApiRoute, Written, check_if_match, etag_of, read, write
from idp.api.pagination import Page, PageParams, page_params
from idp.api.problems import Problem, responses
from idp.api.routes.common import services_of
from idp.api.schemas.clients import ClientIn, ClientOut, ClientPatch, ClientWithSecret
from idp.api.schemas.common import ResourceId
from idp.oauth.clients import ClientSpec

router = APIRouter(route_class=ApiRoute, tags=["clients"])


async def _found(s, db, client_id: str, *, for_update: bool = False):
    client = await s.clients.get(db, client_id, for_update=for_update)
    if client is None:
        raise Problem("not-found", "no such client")
    return client


def _with_secret(client, secret: str | None, status: int = 200) -> Written:
    shown = ClientOut.of(client)
    # The ETag is the plain representation's, so that it matches a later GET.
    location = f"/api/v1/clients/{client.client_id}" if status == 201 else None
    return Written(ClientWithSecret(**shown.model_dump(), client_secret=secret), status, location,
                   {"ETag": etag_of(shown)})


@router.get("/clients", response_model=Page[ClientOut], responses=responses(400, 401, 403, 404, 422),
            summary="List OAuth clients")
async def list_clients(
    request: Request,
    caller: ApiCaller = Depends(scope("idp:clients:read")),
    page: PageParams = Depends(page_params),
    org_id: str | None = Query(None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                               description="Only clients bound to this organisation (its id)"),
    product: str | None = Query(None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                                description="Only clients of this product (id or handle)"),
) -> Page[ClientOut]:
    """Every client, oldest first, without secrets. Platform clients only."""
    require_platform(caller)
    s = services_of(request)
    clients, cursor = await s.db.run(lambda db: s.clients.page(
        db, limit=page.limit, cursor=page.cursor, org_id=org_id, product=product))
    return Page[ClientOut](items=[ClientOut.of(c) for c in clients], next_cursor=cursor)


@router.post("/clients", status_code=201, response_model=ClientWithSecret,
             responses=responses(400, 401, 403, 404, 409, 422), summary="Register an OAuth client")
async def create_client(request: Request, body: ClientIn,
                        caller: ApiCaller = Depends(scope("idp:clients:write"))) -> Response:
    """Register a client under the same rules as `idp clients add`. The reply carries
    `client_secret` (confidential clients with a secret auth method): it is shown here only, so
    store it now. A retry with the same Idempotency-Key returns this same reply, secret included.
    403 forbidden for `idp:*` scopes your token does not carry, or for `first_party: true`
    (operators only). Platform clients only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        client, secret = await s.clients.create(db, ClientSpec(**body.spec_fields()), actor=caller.actor,
                                                grantor_scopes=caller.scopes)
        return _with_secret(client, secret, 201)

    return await write(request, caller, work)


@router.get("/clients/{client_id}", response_model=ClientOut, responses=responses(401, 403, 404, 422),
            summary="Read an OAuth client")
async def get_client(request: Request, client_id: ResourceId,
                     caller: ApiCaller = Depends(scope("idp:clients:read"))) -> Response:
    """The client's registration with its ETag; `has_secret` instead of any secret."""
    require_platform(caller)
    s = services_of(request)

    async def work(db):
        return ClientOut.of(await _found(s, db, client_id))

    return read(await s.db.run(work))


@router.patch("/clients/{client_id}", response_model=ClientOut,
              responses=responses(401, 403, 404, 409, 412, 422), summary="Change an OAuth client")
async def update_client(request: Request, client_id: ResourceId, body: ClientPatch,
                        caller: ApiCaller = Depends(scope("idp:clients:write"))) -> Response:
    """Change the fields sent, under the registration rules. Send `If-Match` with the ETag of
    your last read: a stale one is 412 and nothing changes. 409 for your own client (another
    client or an operator changes it); 403 forbidden for a first-party client or one with `idp:*`
    scopes your token does not carry, and for giving it such scopes or `first_party: true`.
    Platform clients only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        client = await _found(s, db, client_id, for_update=True)
        check_if_match(request, ClientOut.of(client))
        await s.clients.update(db, client, body.changes(), actor=caller.actor, grantor_scopes=caller.scopes)
        return Written(ClientOut.of(client))

    return await write(request, caller, work)


@router.delete("/clients/{client_id}", status_code=204, response_class=Response,
               responses=responses(401, 403, 404, 409, 412, 422), summary="Delete an OAuth client")
async def delete_client(request: Request, client_id: ResourceId,
                        caller: ApiCaller = Depends(scope("idp:clients:write"))) -> Response:
    """Delete the client with its grants, refresh tokens and consents; its access tokens stop
    working at once (the API and introspection look the client up). 409 for your own client;
    403 forbidden for a first-party client or one with `idp:*` scopes your token does not carry.
    Platform clients only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        client = await _found(s, db, client_id, for_update=True)
        check_if_match(request, ClientOut.of(client))
        await s.clients.delete(db, client, actor=caller.actor, grantor_scopes=caller.scopes)
        return Written(None, 204)

    return await write(request, caller, work)


@router.post("/clients/{client_id}/secret", response_model=ClientWithSecret,
             responses=responses(400, 401, 403, 404, 409, 422), summary="Rotate an OAuth client's secret")
async def rotate_client_secret(request: Request, client_id: ResourceId,
                               caller: ApiCaller = Depends(scope("idp:clients:write"))) -> Response:
    """A new secret, in this reply only; the old one stops working now. 422 for a client that
    has no secret (public or private_key_jwt). Your own client's secret you may always rotate;
    another's not if it is first-party or has `idp:*` scopes your token does not carry (403
    forbidden). Platform clients only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        client = await _found(s, db, client_id, for_update=True)
        secret = await s.clients.rotate_secret(db, client, actor=caller.actor, grantor_scopes=caller.scopes)
        return _with_secret(client, secret)

    return await write(request, caller, work)
