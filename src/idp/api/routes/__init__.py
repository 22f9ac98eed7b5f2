"""/api/v1: every resource router, each speaking through ApiRoute (problem+json)."""

from fastapi import APIRouter

from idp.api.http import ApiRoute
from idp.api.routes import accounts, audit, clients, contacts, organisations, password_resets, products, webhooks

router = APIRouter(prefix="/api/v1", route_class=ApiRoute)
for module in (accounts, password_resets, organisations, contacts, products, clients, audit, webhooks):
    router.include_router(module.router)
