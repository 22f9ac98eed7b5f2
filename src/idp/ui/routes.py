"""Pages: consent and logout (the sign-in pages are in login.py). Each parses the form, checks
CSRF, calls one service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from idp.flows.models import FlowState
from idp.flows.service import FlowError
from idp.oauth.logout import LogoutError
from idp.ui.i18n import N_
from idp.ui.login import SESSION_COOKIE, interaction_redirect
from idp.ui.web import FORM_EXPIRED, Csrf, browser_cookie, clear_cookie, error_page, get_cookie, render, services

__all__ = ["SESSION_COOKIE", "current_session", "interaction_redirect", "router"]

router = APIRouter(include_in_schema=False)

SCOPE_TEXTS = {
    "openid": N_("Know who you are"),
    "profile": N_("See your name and profile"),
    "email": N_("See your email address"),
    "offline_access": N_("Keep access when you are not using it"),
    "organization": N_("Know which organisation you act for and your roles there"),
    "organization:*": N_("See every organisation you belong to"),
}


async def current_session(request: Request, db):
    return await services(request).sessions.from_cookie(db, get_cookie(request, SESSION_COOKIE))


# ---- consent -----------------------------------------------------------------------------------

@router.get("/consent")
async def consent_page(request: Request, flow: str | None = None) -> Response:
    s = services(request)
    try:
        view = await s.db.run(lambda db: s.flows.load(db, flow, FlowState.CONSENT, browser=browser_cookie(request), named=True))
    except FlowError as exc:
        return error_page(request, str(exc))
    csrf = Csrf(request)
    return render(request, "consent.html", {
        "flow_id": view.flow.id, "client_name": view.client_name, "scopes": view.request.scopes,
        "scope_texts": SCOPE_TEXTS, "csrf_token": csrf.token(view.flow.id),
    }, ui_locales=view.request.ui_locales, csrf=csrf)


@router.post("/consent")
async def consent_submit(request: Request) -> Response:
    s = services(request)
    form = await request.form()
    flow_id = form.get("flow")
    if not Csrf(request).valid(form.get("csrf_token"), str(flow_id)):
        return error_page(request, FORM_EXPIRED, status_code=403)
    allow = form.get("decision") == "allow"

    async def work(db):
        session = await current_session(request, db)
        return await s.flows.submit_consent(db, flow_id, allow, session.id if session else None,
                                            browser_cookie(request))

    try:
        outcome = await s.db.run(work)
    except FlowError as exc:
        return error_page(request, str(exc))
    return interaction_redirect(outcome)


# ---- RP-initiated logout -----------------------------------------------------------------------

@router.api_route("/logout", methods=["GET", "POST"])
async def logout(request: Request) -> Response:
    s = services(request)
    items = list(request.query_params.multi_items())
    if request.method == "POST":
        items += list((await request.form()).multi_items())

    async def work(db):
        logout_request = await s.logout.validate(db, items)
        session = await current_session(request, db)
        if s.logout.needs_confirmation(logout_request, session):
            return logout_request, None, True
        return logout_request, await s.logout.log_out(db, logout_request, session), False

    try:
        logout_request, location, confirm = await s.db.run(work)
    except LogoutError as exc:
        return error_page(request, str(exc))
    if confirm:
        csrf = Csrf(request)
        return render(request, "logout_confirm.html", {
            "params": logout_request.params, "csrf_token": csrf.token("logout"),
        }, ui_locales=logout_request.params.get("ui_locales"), csrf=csrf)
    return _after_logout(request, location)


@router.post("/logout/confirm")
async def logout_confirm(request: Request) -> Response:
    s = services(request)
    form = await request.form()
    if not Csrf(request).valid(form.get("csrf_token"), "logout"):
        return error_page(request, FORM_EXPIRED, status_code=403)
    items = [(k, str(v)) for k, v in form.multi_items() if k not in ("csrf_token", "decision")]
    if form.get("decision") != "logout":
        return render(request, "logged_out.html", {"heading": N_("You are still signed in.")})

    async def work(db):
        logout_request = await s.logout.validate(db, items)
        return await s.logout.log_out(db, logout_request, await current_session(request, db))

    try:
        location = await s.db.run(work)
    except LogoutError as exc:
        return error_page(request, str(exc))
    return _after_logout(request, location)


def _after_logout(request: Request, location: str | None) -> Response:
    if location is not None:
        response: Response = RedirectResponse(location, status_code=303)
    else:
        response = render(request, "logged_out.html", {"heading": N_("You have been signed out.")})
    clear_cookie(request, response, SESSION_COOKIE)
    return response
