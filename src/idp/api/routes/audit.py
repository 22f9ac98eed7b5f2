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

ID = r"^[A-Za-z0-9_.@-]+$"  # our ids (base64url), as ResourceId takes them in paths
ACTION = r"^[A-Za-z0-9_.-]+$"  # dotted lower snake case, e.g. member.role_changed (matched exactly)
TARGET = r"^[\x21-\x7e]+$"  # an id of ours, a client id (any printable ASCII), a key id, a contact kind


@router.get("/audit-events", response_model=Page[AuditEventOut], responses=responses(400, 401, 403, 422),
            summary="List audit events, newest first")
async def list_audit_events(
    request: Request,
    caller: ApiCaller = Depends(scope("idp:audit:read")),
    page: PageParams = Depends(page_params),
    # Patterned, not only bounded: a NUL or other control character is a 422 here, never a
    # database error (PostgreSQL text cannot hold NUL).
    org_id: str | None = Query(None, max_length=64, pattern=ID, description="Only this organisation's events"),
    action: str | None = Query(None, max_length=64, pattern=ACTION,
                               description="Only this action, e.g. member.added"),
    target_id: str | None = Query(None, max_length=100, pattern=TARGET,
                                  description="Only events about this target"),
) -> Page[AuditEventOut]:
    """An organisation-bound client sees its own organisation's events only."""
    s = services_of(request)
    events, cursor = await s.db.run(lambda db: s.audit.page(
        db, limit=page.limit, cursor=page.cursor, org_id=org_id, action=action, target_id=target_id,
        only_org=caller.org_id))
    return Page[AuditEventOut](items=[AuditEventOut.of(event) for event in events], next_cursor=cursor)
