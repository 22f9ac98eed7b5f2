"""GET /api/v1/audit-events: the audit log, newest first."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from idp.api.auth import ApiCaller, scope
from idp.api.http import ApiRoute
from idp.api.pagination import Page, PageParams, page_params
from idp.api.problems import responses
from idp.api.routes.common import services_of
from idp.api.schemas.audit import AuditEventOut

router = APIRouter(route_class=ApiRoute, tags=["audit"])


@router.get("/audit-events", response_model=Page[AuditEventOut], responses=responses(400, 401, 403, 422),
            summary="List audit events, newest first")
async def list_audit_events(
    request: Request,
    caller: ApiCaller = Depends(scope("idp:audit:read")),
    page: PageParams = Depends(page_params),
    org_id: str | None = Query(None, max_length=64, description="Only this organisation's events"),
    action: str | None = Query(None, max_length=64, description="Only this action, e.g. member.added"),
    target_id: str | None = Query(None, max_length=100, description="Only events about this target"),
) -> Page[AuditEventOut]:
    """An organisation-bound client sees its own organisation's events only."""
    s = services_of(request)
    events, cursor = await s.db.run(lambda db: s.audit.page(
        db, limit=page.limit, cursor=page.cursor, org_id=org_id, action=action, target_id=target_id,
        only_org=caller.org_id))
    return Page[AuditEventOut](items=[AuditEventOut.of(event) for event in events], next_cursor=cursor)
