"""The pages the organisation emails link to: an invitation (/orgs/invitations/{token}) and an
ownership offer (/orgs/ownership/{token}).

GET shows what the link offers (the organisation, the role) and, to a signed-in person, an Accept
button; without a session the browser is sent to sign in on an account flow that comes back here
(the login page also offers "Create an account", and registration continues the same flow).
POST accepts: the session, the CSRF token (bound to the session and the page) and the service's
rules decide. An unknown link is a 404 page, a spent, withdrawn or expired one a 410 page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from idp.audit.service import Actor
from idp.orgs.errors import OrgError
from idp.orgs.links import LinkGone, LinkNotFound
from idp.ui.i18n import N_
from idp.ui.routes import current_session
from idp.ui.web import FORM_EXPIRED, Csrf, error_page, render, services

router = APIRouter(include_in_schema=False)

ROLE_NAMES = {"owner": N_("Owner"), "admin": N_("Administrator"), "editor": N_("Editor"), "member": N_("Member")}


class _SignIn(Exception):
    """No live session: sign in first, then come back to this page."""


class _Forged(Exception):
    """The form's CSRF token does not match this browser and session."""


@dataclass(frozen=True)
class LinkPage:
    name: str  # also the CSRF purpose
    base: str  # the path before the token
    template: str
    peek: Callable  # (services, db, token) -> view
    accept: Callable  # (services, db, actor, token) -> membership
    context: Callable[..., Awaitable[dict]]  # (services, db, view, session) -> extra template values


async def _invitation_context(s, db: AsyncSession, view, session) -> dict:
    verified = {i.value for i in await s.self_service.identifiers(db, session) if i.kind == "email" and i.verified}
    return {"email_matches": view.email in verified, "invited_email": view.email,
            "role_name": ROLE_NAMES.get(view.role, "")}


async def _offer_context(s, db: AsyncSession, view, session) -> dict:
    return {"for_me": view.to_user_id == session.user_id}


INVITATION = LinkPage(
    "invitation", "/orgs/invitations/", "org_invitation.html",
    lambda s, db, token: s.orgs.invitations.peek(db, token),
    lambda s, db, actor, token: s.orgs.invitations.accept(db, actor, token),
    _invitation_context,
)
OWNERSHIP = LinkPage(
    "ownership", "/orgs/ownership/", "org_ownership_offer.html",
    lambda s, db, token: s.orgs.ownership.peek(db, token),
    lambda s, db, actor, token: s.orgs.ownership.accept(db, actor, token=token),
    _offer_context,
)


async def _sign_in(request: Request, return_to: str) -> Response:
    s, csrf = services(request), Csrf(request)  # the flow is bound to this browser's CSRF cookie
    flow_id = await s.db.run(lambda db: s.flows.start_account_flow(db, return_to=return_to, browser=csrf.cookie))
    response = RedirectResponse(f"/login?flow={flow_id}", status_code=303)
    csrf.persist(response)
    return response


def _link_error(request: Request, exc: OrgError) -> Response:
    return error_page(request, exc.message, status_code=exc.status)


async def _show(request: Request, page: LinkPage, token: str, *, error: str | None = None,
                status_code: int = 200) -> Response:
    s, csrf = services(request), Csrf(request)

    async def work(db):
        view = await page.peek(s, db, token)
        session = await current_session(request, db)
        return view, session, (await page.context(s, db, view, session) if session else {})

    try:
        view, session, extra = await s.db.run(work)
    except OrgError as exc:
        return _link_error(request, exc)
    if session is None:
        return await _sign_in(request, page.base + token)
    return render(request, page.template, {
        **extra, "view": view, "action": page.base + token, "csrf_token": csrf.token(f"{session.id}|{page.name}"),
        "error": error, "accepted": False,
    }, status_code=status_code, csrf=csrf)


async def _accept(request: Request, page: LinkPage, token: str) -> Response:
    s, csrf = services(request), Csrf(request)
    form = await request.form()

    async def work(db):
        session = await current_session(request, db)
        if session is None:
            raise _SignIn()
        if not csrf.valid(form.get("csrf_token"), f"{session.id}|{page.name}"):
            raise _Forged()
        view = await page.peek(s, db, token)
        membership = await page.accept(s, db, Actor.user(session.user_id), token)
        return view, membership

    try:
        view, membership = await s.db.run(work)
    except _SignIn:
        return await _sign_in(request, page.base + token)
    except _Forged:
        return error_page(request, FORM_EXPIRED, status_code=403)
    except (LinkNotFound, LinkGone) as exc:
        return _link_error(request, exc)
    except OrgError as exc:  # the wrong account, no longer a member, …: nothing was changed
        return await _show(request, page, token, error=exc.message, status_code=exc.status)
    return render(request, page.template, {
        "view": view, "accepted": True, "role_name": ROLE_NAMES.get(membership.role, ""),
    })


def _register(page: LinkPage) -> None:
    """The link's page (GET) and its Accept button (POST), at `page.base` + the token."""

    async def show(request: Request, token: str) -> Response:
        return await _show(request, page, token)

    async def accept(request: Request, token: str) -> Response:
        return await _accept(request, page, token)

    router.add_api_route(page.base + "{token}", show, methods=["GET"], name=f"{page.name}_page")
    router.add_api_route(page.base + "{token}", accept, methods=["POST"], name=f"{page.name}_accept")


_register(INVITATION)
_register(OWNERSHIP)
