"""Sign-in pages: identifier → password or code → second factor → new password (if temporary).

Each handler parses its form, checks CSRF, calls one step of flows/service.py (which checks the
flow's state) and redirects (303) to the page of the next step. The steps are in that module.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from idp.accounts.password_policy import PasswordRejected
from idp.accounts.temporary import SameAsTemporary
from idp.flows.models import FlowState
from idp.flows.service import IDENTIFIER_STATES, Browser, FlowError, FlowView, LoginFailed, SecondFactorFailed
from idp.oauth.authorization import Interaction, Redirect
from idp.otp.service import CodeProblem
from idp.ratelimit.errors import RateLimited
from idp.ui.i18n import N_, negotiate
from idp.ui.web import (
    CODE_NOT_VALID, FORM_EXPIRED, POLICY_TEXTS, Csrf, browser_cookie, client_ip, error_page, get_cookie,
    render, services, set_cookie, too_many_page,
)

router = APIRouter(include_in_schema=False)

SESSION_COOKIE = "idp_session"
# One message for an unknown login and a wrong password alike: it must not tell them apart.
LOGIN_FAILED = N_("Incorrect email, phone number or password.")
WRONG_PASSWORD = N_("The password is not correct.")
SAME_AS_TEMPORARY = N_("Choose a password of your own, not the temporary one.")
PAGES = {
    FlowState.LOGIN: "/login", FlowState.PASSWORD: "/login/password", FlowState.CODE: "/login/code",
    FlowState.SECOND_FACTOR: "/login/factor", FlowState.NEW_PASSWORD: "/login/new-password",
    FlowState.CONSENT: "/consent",
}


def interaction_redirect(outcome: Redirect | Interaction) -> RedirectResponse:
    """303 after a form post (RFC 9700 §4.12: never 307, which would re-post the credentials)."""
    if isinstance(outcome, Redirect):
        return RedirectResponse(outcome.location, status_code=303)
    return RedirectResponse(f"{PAGES[FlowState(outcome.kind)]}?flow={outcome.flow_id}", status_code=303)


def browser_of(request: Request, view_locales: str | None = None, *, csrf: Csrf | None = None) -> Browser:
    """Who is asking (address, session cookie, user agent, language, CSRF cookie), for the flow
    steps. Pass `csrf` where a flow may be created before the browser has a CSRF cookie."""
    settings = services(request).settings
    return Browser(
        ip=client_ip(request), previous_cookie=get_cookie(request, SESSION_COOKIE),
        user_agent=request.headers.get("user-agent"),
        locale=negotiate(view_locales, request.headers.get("accept-language"), settings.default_locale),
        cookie=csrf.cookie if csrf is not None else browser_cookie(request),
    )


def _page(request: Request, template: str, view: FlowView, csrf: Csrf, *, status_code: int = 200,
          **context) -> HTMLResponse:
    s = services(request)
    data = view.data
    return render(request, template, {
        "flow_id": view.flow.id, "client_name": view.client_name, "for_account": view.flow.client_id is None,
        "csrf_token": csrf.token(view.flow.id), "typed": data.get("typed"), "kind": data.get("kind"),
        "code_login": s.flows.code_login_enabled("sms" if data.get("kind") == "phone" else "email"),
        "registration": s.settings.registration_email or s.settings.registration_phone,
        **context,
    }, status_code=status_code, ui_locales=view.request.ui_locales, csrf=csrf)


async def _load(request: Request, flow: str | None, state) -> FlowView | Response:
    s = services(request)
    try:
        return await s.db.run(lambda db: s.flows.load(db, flow, state, browser=browser_cookie(request)))
    except FlowError as exc:
        return error_page(request, str(exc))


async def _form(request: Request) -> tuple[dict, str | None, bool]:
    form = await request.form()
    flow_id = form.get("flow")
    flow_id = flow_id if isinstance(flow_id, str) else None
    ok = Csrf(request).valid(form.get("csrf_token"), str(flow_id))
    return {k: v for k, v in form.items() if isinstance(v, str)}, flow_id, ok


def _signed_in(request: Request, result) -> Response:
    response = interaction_redirect(result.outcome)
    if result.session_cookie:
        set_cookie(request, response, SESSION_COOKIE, result.session_cookie)
    return response


async def _run_step(request: Request, step, on_error) -> Response:
    """Run one flow step; map the errors every step shares to their pages."""
    s = services(request)
    try:
        result = await s.db.run(step)
    except FlowError as exc:
        return error_page(request, str(exc))
    except RateLimited as exc:
        return too_many_page(request, exc.retry_after)
    except (LoginFailed, SecondFactorFailed, CodeProblem, PasswordRejected, SameAsTemporary) as exc:
        return await on_error(exc)
    if isinstance(result, Interaction):
        return interaction_redirect(result)
    return _signed_in(request, result)


# ---- identifier (and the one-form login) ---------------------------------------------------------

@router.get("/login")
async def login_page(request: Request, flow: str | None = None) -> Response:
    view = await _load(request, flow, IDENTIFIER_STATES)
    if isinstance(view, Response):
        return view
    return _page(request, "login.html", view, Csrf(request), username=view.request.login_hint)


@router.post("/login")
async def login_submit(request: Request) -> Response:
    s = services(request)
    form, flow_id, ok = await _form(request)
    if not ok:
        return error_page(request, FORM_EXPIRED, status_code=403)
    username, password = form.get("username", "").strip(), form.get("password", "")
    browser = browser_of(request)

    async def failed(exc):
        view = await s.db.run(lambda db: s.flows.load(db, flow_id, IDENTIFIER_STATES, browser=browser.cookie))
        return _page(request, "login.html", view, Csrf(request), error=LOGIN_FAILED, username=username,
                     status_code=401)

    if password:  # both fields in one post: a password manager, or a client of the one-form login
        return await _run_step(request, lambda db: s.flows.submit_password(db, flow_id, username, password, browser),
                               failed)
    return await _run_step(request, lambda db: s.flows.submit_identifier(db, flow_id, username, browser), failed)


# ---- password ------------------------------------------------------------------------------------

@router.get("/login/password")
async def password_page(request: Request, flow: str | None = None) -> Response:
    view = await _load(request, flow, FlowState.PASSWORD)
    if isinstance(view, Response):
        return view
    return _page(request, "login_password.html", view, Csrf(request))


@router.post("/login/password")
async def password_submit(request: Request) -> Response:
    s = services(request)
    form, flow_id, ok = await _form(request)
    if not ok:
        return error_page(request, FORM_EXPIRED, status_code=403)
    browser = browser_of(request)

    async def failed(exc):
        view = await s.db.run(lambda db: s.flows.load(db, flow_id, FlowState.PASSWORD, browser=browser.cookie))
        return _page(request, "login_password.html", view, Csrf(request), error=LOGIN_FAILED, status_code=401)

    if form.get("action") == "code":
        return await _run_step(request, lambda db: s.flows.request_login_code(db, flow_id, browser), failed)
    return await _run_step(request, lambda db: s.flows.submit_password_step(
        db, flow_id, form.get("password", ""), browser), failed)


# ---- sign-in code --------------------------------------------------------------------------------

@router.get("/login/code")
async def code_page(request: Request, flow: str | None = None) -> Response:
    view = await _load(request, flow, FlowState.CODE)
    if isinstance(view, Response):
        return view
    return _page(request, "login_code.html", view, Csrf(request), channel=view.data.get("channel"))


@router.post("/login/code")
async def code_submit(request: Request) -> Response:
    s = services(request)
    form, flow_id, ok = await _form(request)
    if not ok:
        return error_page(request, FORM_EXPIRED, status_code=403)
    browser = browser_of(request)

    async def failed(exc):
        view = await s.db.run(lambda db: s.flows.load(db, flow_id, FlowState.CODE, browser=browser.cookie))
        return _page(request, "login_code.html", view, Csrf(request), channel=view.data.get("channel"),
                     error=CODE_NOT_VALID, status_code=400)

    if form.get("action") == "resend":
        return await _run_step(request, lambda db: s.flows.request_login_code(db, flow_id, browser, resend=True),
                               failed)
    return await _run_step(request, lambda db: s.flows.submit_login_code(db, flow_id, form.get("code", ""), browser),
                           failed)


# ---- second factor -------------------------------------------------------------------------------

def _factor_page(request: Request, view: FlowView, *, error: str | None = None, status_code: int = 200):
    return _page(request, "login_factor.html", view, Csrf(request), factor=view.data.get("factor"),
                 methods=view.data.get("methods") or [], error=error, status_code=status_code)


@router.get("/login/factor")
async def factor_page(request: Request, flow: str | None = None) -> Response:
    view = await _load(request, flow, FlowState.SECOND_FACTOR)
    if isinstance(view, Response):
        return view
    return _factor_page(request, view)


@router.post("/login/factor")
async def factor_submit(request: Request) -> Response:
    s = services(request)
    form, flow_id, ok = await _form(request)
    if not ok:
        return error_page(request, FORM_EXPIRED, status_code=403)
    browser = browser_of(request)

    async def failed(exc):
        view = await s.db.run(lambda db: s.flows.load(db, flow_id, FlowState.SECOND_FACTOR, browser=browser.cookie))
        message = WRONG_PASSWORD if view.data.get("factor") == "pwd" else CODE_NOT_VALID
        return _factor_page(request, view, error=message, status_code=400)

    if form.get("use"):  # another method, or a new code by this one
        return await _run_step(request, lambda db: s.flows.choose_factor(db, flow_id, form["use"], browser), failed)
    return await _run_step(request, lambda db: s.flows.submit_second_factor(
        db, flow_id, form.get("answer", ""), browser), failed)


# ---- a new password in place of a temporary one --------------------------------------------------

@router.get("/login/new-password")
async def new_password_page(request: Request, flow: str | None = None) -> Response:
    view = await _load(request, flow, FlowState.NEW_PASSWORD)
    if isinstance(view, Response):
        return view
    return _page(request, "login_new_password.html", view, Csrf(request))


@router.post("/login/new-password")
async def new_password_submit(request: Request) -> Response:
    s = services(request)
    form, flow_id, ok = await _form(request)
    if not ok:
        return error_page(request, FORM_EXPIRED, status_code=403)
    browser = browser_of(request)

    async def failed(exc):
        view = await s.db.run(lambda db: s.flows.load(db, flow_id, FlowState.NEW_PASSWORD, browser=browser.cookie))
        if isinstance(exc, PasswordRejected):
            error, params = POLICY_TEXTS[exc.reason], exc.params
        else:
            error, params = SAME_AS_TEMPORARY, {}
        return _page(request, "login_new_password.html", view, Csrf(request), error=error,
                     error_params=params, status_code=400)

    return await _run_step(request, lambda db: s.flows.submit_new_password(
        db, flow_id, form.get("password", ""), browser), failed)
