"""Accounts: /api/v1/users (with identifiers, status and temporary passwords) and their sessions.

Every route calls AccountAdmin (accounts/admin.py). An organisation-bound client may read its
organisation's members and nothing else: every other account, every write and every session is
404 for it, as for anything outside its organisation. What it reads of a member concerns its
organisation only: no membership elsewhere, no other organisation's username, no second factors
or password state (see UserOut).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from idp.accounts.admin import UserFilter
from idp.api.auth import ApiCaller, require_platform, scope
from idp.api.http import ApiRoute, Written, check_if_match, read, write
from idp.api.pagination import Page, PageParams, page_params
from idp.api.problems import responses
from idp.api.routes.common import services_of
from idp.api.schemas.common import ResourceId
from idp.api.schemas.sessions import SessionOut
from idp.api.schemas.users import (IdentifierCreate, IdentifierOut, TemporaryPasswordCreate, TemporaryPasswordOut,
                                   UserCreate, UserOut, UserPatch)

router = APIRouter(route_class=ApiRoute, tags=["users"])


def _location(user_id: str, *rest: str) -> str:
    return "/".join(("/api/v1/users", user_id, *rest))


# ---- users -------------------------------------------------------------------------------------

@router.get("/users", response_model=Page[UserOut], responses=responses(400, 401, 403, 422),
            summary="List accounts, oldest first")
async def list_users(
    request: Request,
    caller: ApiCaller = Depends(scope("idp:users:read")),
    page: PageParams = Depends(page_params),
    email: str | None = Query(None, min_length=1, max_length=320, pattern=r"^[^\x00-\x1f\x7f]*$",
                              description="Only the account with this (verified or primary) email"),
    phone: str | None = Query(None, min_length=1, max_length=32, pattern=r"^[+0-9 ()./-]+$",
                              description="Only the account with this verified phone number, national "
                                          "(default region) or international form"),
    username: str | None = Query(None, min_length=3, max_length=120, pattern=r"^[A-Za-z0-9._@-]+$",
                                 description="Only the account with this organisation username, e.g. maija@acme"),
    status: Literal["active", "disabled"] | None = Query(None, description="Only active or disabled accounts"),
) -> Page[UserOut]:
    """An organisation-bound client lists its organisation's members only, and finds nobody by
    another organisation's username."""
    s = services_of(request)
    filters = UserFilter(email=email, phone=phone, username=username, status=status)
    views, cursor = await s.db.run(lambda db: s.account_admin.page(
        db, limit=page.limit, cursor=page.cursor, filters=filters, only_org=caller.org_id))
    return Page[UserOut](items=[UserOut.of(view) for view in views], next_cursor=cursor)


@router.post("/users", status_code=201, response_model=UserOut,
             responses=responses(400, 401, 403, 404, 409, 422), summary="Create an account")
async def create_user(request: Request, body: UserCreate,
                      caller: ApiCaller = Depends(scope("idp:users:write"))) -> Response:
    """An account with an email and/or a phone number, verified if the integrator vouches for
    them, and optionally a password (checked by the password policy: 422 password-rejected).
    An email or phone number already another account's is 409 identifier-taken. Platform
    clients only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        view = await s.account_admin.create(db, caller.actor, **body.model_dump())
        return Written(UserOut.of(view), 201, _location(view.user.id))

    return await write(request, caller, work)


@router.get("/users/{user_id}", response_model=UserOut, responses=responses(401, 403, 404, 422),
            summary="Read an account")
async def get_user(request: Request, user_id: ResourceId,
                   caller: ApiCaller = Depends(scope("idp:users:read"))) -> Response:
    """The account with its ETag (send it as If-Match to PATCH)."""
    s = services_of(request)
    view = await s.db.run(lambda db: s.account_admin.get(db, user_id, only_org=caller.org_id))
    return read(UserOut.of(view))


@router.patch("/users/{user_id}", response_model=UserOut, responses=responses(401, 403, 404, 412, 422),
              summary="Change an account's profile")
async def patch_user(request: Request, user_id: ResourceId, body: UserPatch,
                     caller: ApiCaller = Depends(scope("idp:users:write"))) -> Response:
    """Only the fields sent change (null clears one). With If-Match, a stale ETag is 412 and
    nothing changes. Platform clients only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        view = await s.account_admin.get(db, user_id, lock=True)
        check_if_match(request, UserOut.of(view))
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        view = await s.account_admin.update_profile(db, caller.actor, view.user, changes)
        return Written(UserOut.of(view))

    return await write(request, caller, work)


@router.post("/users/{user_id}/disable", response_model=UserOut, responses=responses(401, 403, 404, 422),
             summary="Disable an account")
async def disable_user(request: Request, user_id: ResourceId,
                       caller: ApiCaller = Depends(scope("idp:users:write"))) -> Response:
    """The person can no longer sign in or get tokens: every browser session ends and every
    token family is revoked now. Disabling a disabled account changes nothing. Platform clients
    only."""
    require_platform(caller)
    s = services_of(request)
    return await write(request, caller, lambda db: _written(s.account_admin.disable(db, caller.actor, user_id)))


@router.post("/users/{user_id}/enable", response_model=UserOut, responses=responses(401, 403, 404, 422),
             summary="Enable a disabled account")
async def enable_user(request: Request, user_id: ResourceId,
                      caller: ApiCaller = Depends(scope("idp:users:write"))) -> Response:
    """The person may sign in again (their ended sessions and tokens stay ended). Platform
    clients only."""
    require_platform(caller)
    s = services_of(request)
    return await write(request, caller, lambda db: _written(s.account_admin.enable(db, caller.actor, user_id)))


async def _written(viewing) -> Written:
    return Written(UserOut.of(await viewing))


# ---- identifiers -------------------------------------------------------------------------------

@router.post("/users/{user_id}/identifiers", status_code=201, response_model=IdentifierOut,
             responses=responses(400, 401, 403, 404, 409, 422), summary="Add an email or phone number")
async def add_identifier(request: Request, user_id: ResourceId, body: IdentifierCreate,
                         caller: ApiCaller = Depends(scope("idp:users:write"))) -> Response:
    """A verified one signs in at once (and a verified email becomes the primary one if the
    account has none); one verified on another account is 409 identifier-taken. Platform
    clients only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        identifier = await s.account_admin.add_identifier(db, caller.actor, user_id, kind=body.kind,
                                                          value=body.value, verified=body.verified)
        return Written(IdentifierOut.of(identifier), 201, _location(user_id, "identifiers", identifier.id))

    return await write(request, caller, work)


@router.delete("/users/{user_id}/identifiers/{identifier_id}", status_code=204, response_class=Response,
               responses=responses(401, 403, 404, 409, 422), summary="Remove an email or phone number")
async def remove_identifier(request: Request, user_id: ResourceId, identifier_id: ResourceId,
                            caller: ApiCaller = Depends(scope("idp:users:write"))) -> Response:
    """409 when it is the account's last verified identifier, where its sign-in codes go, or its
    primary email with no other verified email to take its place. If-Match compares the
    identifier's representation (as in the user's `identifiers`). Platform clients only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        check_if_match(request, IdentifierOut.of(await s.account_admin.identifier(db, user_id, identifier_id)))
        await s.account_admin.remove_identifier(db, caller.actor, user_id, identifier_id)
        return Written(None, 204)

    return await write(request, caller, work)


# ---- temporary passwords -----------------------------------------------------------------------

@router.post("/users/{user_id}/temporary-password", status_code=202, response_model=TemporaryPasswordOut,
             responses=responses(400, 401, 403, 404, 409, 422), summary="Set and send a temporary password")
async def set_temporary_password(request: Request, user_id: ResourceId, body: TemporaryPasswordCreate,
                                 caller: ApiCaller = Depends(scope("idp:users:write"))) -> Response:
    """A generated password goes to the account's verified email or phone number (409 when it
    has none, or when the account is disabled); the next sign-in must replace it. Every session
    and token family of the account ends now. The password is never returned. Platform clients
    only."""
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        sent = await s.account_admin.temporary_password(db, caller.actor, user_id, via=body.via)
        return Written(TemporaryPasswordOut.of(sent), 202)

    return await write(request, caller, work)


# ---- sessions ----------------------------------------------------------------------------------

@router.get("/users/{user_id}/sessions", response_model=Page[SessionOut], responses=responses(401, 403, 404, 422),
            tags=["sessions"], summary="List an account's live browser sessions")
async def list_sessions(request: Request, user_id: ResourceId,
                        caller: ApiCaller = Depends(scope("idp:sessions:read"))) -> Page[SessionOut]:
    """Newest first; all of them on one page. Platform clients only."""
    require_platform(caller)
    s = services_of(request)
    sessions = await s.db.run(lambda db: s.account_admin.sessions(db, user_id))
    return Page[SessionOut](items=[SessionOut.of(session) for session in sessions], next_cursor=None)


@router.delete("/users/{user_id}/sessions/{session_id}", status_code=204, response_class=Response,
               responses=responses(401, 403, 404, 422), tags=["sessions"], summary="End one session")
async def end_session(request: Request, user_id: ResourceId, session_id: ResourceId,
                      caller: ApiCaller = Depends(scope("idp:sessions:write"))) -> Response:
    """The session ends and the token families signed in through it are revoked. A session
    that already ended is 404; If-Match compares the session's representation as listed.
    Platform clients only."""
    return await _end_sessions(request, caller, user_id, session_id)


@router.delete("/users/{user_id}/sessions", status_code=204, response_class=Response,
               responses=responses(401, 403, 404, 422), tags=["sessions"], summary="End every session")
async def end_all_sessions(request: Request, user_id: ResourceId,
                           caller: ApiCaller = Depends(scope("idp:sessions:write"))) -> Response:
    """Every live session ends with the token families signed in through them. If-Match is not
    compared here: the collection has no ETag. Platform clients only."""
    return await _end_sessions(request, caller, user_id, None)


async def _end_sessions(request: Request, caller: ApiCaller, user_id: str, session_id: str | None) -> Response:
    require_platform(caller)
    s = services_of(request)

    async def work(db) -> Written:
        if session_id is not None:
            check_if_match(request, SessionOut.of(await s.account_admin.session(db, user_id, session_id)))
        await s.account_admin.end_sessions(db, caller.actor, user_id, session_id)
        return Written(None, 204)

    return await write(request, caller, work)
