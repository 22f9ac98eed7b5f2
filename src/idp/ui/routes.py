"""Pages: login, consent and logout. Each parses the form, checks CSRF, calls one service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from idp.flows.models import FlowState
from idp.flows.service import FlowError, LoginFailed
from idp.oauth.authorization import Interaction, Redirect
from idp.oauth.logout import LogoutError
from idp.ui.i18n import N_
from idp.ui.web import FORM_EXPIRED, Csrf, clear_cookie, error_page, get_cookie, render, services, set_cookie

router = APIRouter(include_in_schema=False)

SESSION_COOKIE = "idp_session"
SCOPE_TEXTS = {
    "openid": N_("Know who you are"),
    "profile": N_("See your name and profile"),
    "email": N_("See your email address"),
    "offline_access": N_("Keep access when you are not using it"),
}
LOGIN_FAILED = N_("Incorrect email or password.")


def interaction_redirect(outcome: Redirect | Interaction) -> RedirectResponse:
    """303 after a form post (RFC 9700 §4.12: never 307, which would re-post the credentials)."""
    if isinstance(outcome, Redirect):
        return RedirectResponse(outcome.location, status_code=303)
    return RedirectResponse(f"/{outcome.kind}?flow={outcome.flow_id}", status_code=303)


async def current_session(request: Request, db):
    return await services(request).sessions.from_cookie(db, get_cookie(request, SESSION_COOKIE))


# ---- login -------------------------------------------------------------------------------------

def _login_page(request: Request, view, csrf: Csrf, *, error: str | None = None,
                username: str | None = None, status_code: int = 200) -> HTMLResponse:
    return render(request, "login.html", {
        "flow_id": view.flow.id, "client_name": view.client_name, "error": error,
        "csrf_token": csrf.token(view.flow.id), "username": username or view.request.login_hint,
    }, status_code=status_code, ui_locales=view.request.ui_locales, csrf=csrf)


@router.get("/login")
async def login_page(request: Request, flow: str | None = None) -> Response:
    s = services(request)
    try:
        view = await s.db.run(lambda db: s.flows.load(db, flow, FlowState.LOGIN))
    except FlowError as exc:
        return error_page(request, str(exc))
    return _login_page(request, view, Csrf(request))


@router.post("/login")
async def login_submit(request: Request) -> Response:
    s = services(request)
    form = await request.form()
    flow_id, csrf = form.get("flow"), Csrf(request)
    username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    if not csrf.valid(form.get("csrf_token"), str(flow_id)):
        return error_page(request, FORM_EXPIRED, status_code=403)
    try:
        result = await s.db.run(lambda db: s.flows.submit_password(
            db, flow_id, username, password, get_cookie(request, SESSION_COOKIE)))
    except FlowError as exc:
        return error_page(request, str(exc))
    except LoginFailed:
        view = await s.db.run(lambda db: s.flows.load(db, flow_id, FlowState.LOGIN))
        return _login_page(request, view, csrf, error=LOGIN_FAILED, username=username, status_code=401)
    response = interaction_redirect(result.outcome)
    set_cookie(request, response, SESSION_COOKIE, result.session_cookie)
    return response


# ---- consent -----------------------------------------------------------------------------------

@router.get("/consent")
async def consent_page(request: Request, flow: str | None = None) -> Response:
    s = services(request)
    try:
        view = await s.db.run(lambda db: s.flows.load(db, flow, FlowState.CONSENT))
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
        return await s.flows.submit_consent(db, flow_id, allow, session.id if session else None)

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
