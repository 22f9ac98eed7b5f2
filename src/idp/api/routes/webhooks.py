"""Webhook subscriptions: /api/v1/webhooks, their secrets and their deliveries.

A platform client's subscriptions may be platform-wide or an organisation's; an organisation-bound
client's are always its own organisation's, and it sees no others (404). The signing secret is in
the response to the creation and to a rotation only.

A subscription is a standing read of the audit log — every event it names, with its before and
after, goes to the URL — so choosing what goes where (creating one, or changing it) needs
`idp:audit:read` as well as `idp:webhooks:write`, for every caller: a platform client's
subscription (platform-wide or an organisation's) and an organisation-bound client's alike, as
GET /audit-events needs it for the same events. Rotating the secret, re-enabling and deleting
change neither what is sent nor where: `idp:webhooks:write` is enough.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from idp.api.auth import ApiCaller, scope
from idp.api.http import ApiRoute, Written, check_if_match, etag_of, read, write
from idp.api.pagination import Page, PageParams, page_params
from idp.api.problems import responses
from idp.api.routes.common import services_of
from idp.api.schemas.common import ResourceId
from idp.api.schemas.webhooks import DeliveryOut, WebhookIn, WebhookOut, WebhookPatch, WebhookWithSecret

router = APIRouter(route_class=ApiRoute, tags=["webhooks"])
READ, WRITE = scope("idp:webhooks:read"), scope("idp:webhooks:write")
AUDIT = scope("idp:audit:read")


async def write_events(caller: ApiCaller = Depends(WRITE), _: ApiCaller = Depends(AUDIT)) -> ApiCaller:
    """Both scopes, checked in this order (a reader is told idp:webhooks:write first)."""
    return caller


def _with_secret(subscription, secret: str, status: int = 200, location: str | None = None) -> Written:
    """The representation plus the secret; the ETag is the plain representation's, as on a read."""
    out = WebhookOut.of(subscription)
    return Written(WebhookWithSecret(**out.model_dump(), secret=secret), status, location,
                   headers={"ETag": etag_of(out)})


@router.get("/webhooks", response_model=Page[WebhookOut], responses=responses(400, 401, 403, 422),
            summary="List webhook subscriptions")
async def list_webhooks(
    request: Request, caller: ApiCaller = Depends(READ), page: PageParams = Depends(page_params),
    org_id: str | None = Query(None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                               description="Only this organisation's subscriptions"),
) -> Page[WebhookOut]:
    """Newest first. An organisation-bound client sees its own organisation's only."""
    s = services_of(request)
    rows, cursor = await s.db.run(lambda db: s.webhooks.page(
        db, caller.actor, limit=page.limit, cursor=page.cursor, org_id=org_id))
    return Page[WebhookOut](items=[WebhookOut.of(row) for row in rows], next_cursor=cursor)


@router.post("/webhooks", status_code=201, response_model=WebhookWithSecret,
             responses=responses(400, 401, 403, 404, 409, 422), summary="Create a webhook subscription")
async def create_webhook(request: Request, body: WebhookIn, caller: ApiCaller = Depends(write_events)) -> Response:
    """Subscribe a URL to event types. The response holds the signing secret, shown only now.
    An unknown organisation is 404; a URL that is not https (or points at a private address) 422.
    The events are audit events: the token needs `idp:audit:read` too."""
    s = services_of(request)

    async def work(db) -> Written:
        subscription, secret = await s.webhooks.create(
            db, caller.actor, url=body.url, event_types=body.event_types, description=body.description,
            org_id=body.org_id)
        return _with_secret(subscription, secret, 201, f"/api/v1/webhooks/{subscription.id}")

    return await write(request, caller, work)


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut, responses=responses(401, 403, 404, 422),
            summary="Read a webhook subscription")
async def get_webhook(request: Request, webhook_id: ResourceId, caller: ApiCaller = Depends(READ)) -> Response:
    """The subscription with its state, failure count and last errors, and its ETag."""
    s = services_of(request)
    subscription = await s.db.run(lambda db: s.webhooks.get(db, caller.actor, webhook_id))
    return read(WebhookOut.of(subscription))


@router.patch("/webhooks/{webhook_id}", response_model=WebhookOut,
              responses=responses(400, 401, 403, 404, 412, 422), summary="Change a webhook subscription")
async def update_webhook(request: Request, webhook_id: ResourceId, body: WebhookPatch,
                         caller: ApiCaller = Depends(write_events)) -> Response:
    """Change only the fields the body names. With If-Match, a stale ETag is 412. The events
    are audit events: the token needs `idp:audit:read` too."""
    s = services_of(request)

    async def work(db) -> Written:
        subscription = await s.webhooks.get(db, caller.actor, webhook_id, for_update=True)
        check_if_match(request, WebhookOut.of(subscription))
        changed = await s.webhooks.update(db, caller.actor, subscription,
                                          body.model_dump(include=body.model_fields_set))
        return Written(WebhookOut.of(changed))

    return await write(request, caller, work)


@router.delete("/webhooks/{webhook_id}", status_code=204, response_class=Response,
               responses=responses(401, 403, 404, 412, 422), summary="Delete a webhook subscription")
async def delete_webhook(request: Request, webhook_id: ResourceId, caller: ApiCaller = Depends(WRITE)) -> Response:
    """The subscription and its deliveries; those not yet sent are dropped."""
    s = services_of(request)

    async def work(db) -> Written:
        subscription = await s.webhooks.get(db, caller.actor, webhook_id, for_update=True)
        check_if_match(request, WebhookOut.of(subscription))
        await s.webhooks.delete(db, caller.actor, subscription)
        return Written(None, 204)

    return await write(request, caller, work)


@router.post("/webhooks/{webhook_id}/secret", response_model=WebhookWithSecret,
             responses=responses(400, 401, 403, 404, 409, 422), summary="Rotate a subscription's secret")
async def rotate_webhook_secret(request: Request, webhook_id: ResourceId,
                                caller: ApiCaller = Depends(WRITE)) -> Response:
    """A new signing secret, shown only now; every attempt from now on is signed with it."""
    s = services_of(request)

    async def work(db) -> Written:
        subscription = await s.webhooks.get(db, caller.actor, webhook_id, for_update=True)
        secret = await s.webhooks.rotate_secret(db, caller.actor, subscription)
        return _with_secret(subscription, secret)

    return await write(request, caller, work)


@router.post("/webhooks/{webhook_id}/enable", response_model=WebhookOut,
             responses=responses(400, 401, 403, 404, 409, 422), summary="Re-enable a disabled subscription")
async def enable_webhook(request: Request, webhook_id: ResourceId, caller: ApiCaller = Depends(WRITE)) -> Response:
    """Turn on a subscription the server disabled after failures, with a clean failure count;
    its waiting deliveries are sent again. An enabled subscription stays as it is."""
    s = services_of(request)

    async def work(db) -> Written:
        subscription = await s.webhooks.get(db, caller.actor, webhook_id, for_update=True)
        return Written(WebhookOut.of(await s.webhooks.enable(db, caller.actor, subscription)))

    return await write(request, caller, work)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Page[DeliveryOut],
            responses=responses(400, 401, 403, 404, 422), summary="List a subscription's deliveries")
async def list_deliveries(request: Request, webhook_id: ResourceId, caller: ApiCaller = Depends(READ),
                          page: PageParams = Depends(page_params)) -> Page[DeliveryOut]:
    """Newest first: each event sent (or to be sent) to the subscription, its state and attempts."""
    s = services_of(request)

    async def work(db):
        subscription = await s.webhooks.get(db, caller.actor, webhook_id)
        return await s.webhooks.deliveries(db, subscription, limit=page.limit, cursor=page.cursor)

    rows, cursor = await s.db.run(work)
    return Page[DeliveryOut](items=[DeliveryOut.of(row) for row in rows], next_cursor=cursor)
