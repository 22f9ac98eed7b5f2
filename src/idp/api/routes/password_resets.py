"""POST /api/v1/users/{id}/password-reset: a help desk or back office starts a password reset for a
person. The person gets a single-use link (flows/reset_links.py) and chooses the password in their
own browser; the API never sees the link or the password."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from idp.api.auth import ApiCaller, require_platform, scope
from idp.api.http import ApiRoute, Written, write
from idp.api.problems import responses
from idp.api.routes.common import services_of
from idp.api.schemas.common import ResourceId
from idp.api.schemas.password_resets import PasswordResetIn, PasswordResetRequested

router = APIRouter(route_class=ApiRoute, tags=["users"])


@router.post("/users/{user_id}/password-reset", status_code=202, response_model=PasswordResetRequested,
             responses=responses(401, 403, 404, 409, 422), summary="Send the person a password reset link")
async def request_password_reset(request: Request, user_id: ResourceId, body: PasswordResetIn,
                                 caller: ApiCaller = Depends(scope("idp:users:write"))):
    """Sends a single-use link to the account's verified email address (or, with `"via": "sms"`, its
    verified phone number), valid for `password_reset_link_ttl` (24 h by default). A new request
    voids the previous unused link. Opening the link lets the person choose a new password, which
    ends every session and token of the account. 404: no such user; 409: the account is disabled
    or has no verified destination for the channel. Platform clients only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        sent = await s.recovery.links.request(db, caller.actor, user_id, body.via)
        return Written(PasswordResetRequested.of(sent), 202)

    return await write(request, caller, work)
