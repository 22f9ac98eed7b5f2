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
from idp.flows.password_check import run_pausing_for_hashes
from idp.flows.service import (
    IDENTIFIER_STATES, AccountDisabled, Browser, FlowError, FlowView, LoginFailed, SecondFactorFailed,
)
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
# Said only after a right password or code (a wrong one gets the ordinary answer).
ACCOUNT_DISABLED = N_("This account is disabled. Contact your administrator.")
PAGES = {
    FlowState.LOGIN: "/login", FlowState.PASSWORD: "/login/password", FlowState.CODE: "/login/code",
    FlowState.SECOND_FACTOR: "/login/factor", FlowState.NEW_PASSWORD: "/login/new-password",
    FlowState.CONSENT: "/consent", FlowState.ORGANISATION: "/login/organisation",
    FlowState.NO_ACCESS: "/login/no-access",
}
# Why the organisation step refused (flows/organisation.py), as the no-access page says it.
NO_ACCESS_TEXTS = {
    "product": N_("You do not have access to %(product)s in %(org)s. Ask an administrator of the organisation for access."),
    "product_no_org": N_("You do not have access to %(product)s. Ask an administrator of your organisation for access."),
    "second_factor": N_("%(org)s requires a second sign-in step that your account cannot offer. Add an authenticator app or a verified phone number to your account first."),
    "policy": N_("%(org)s does not allow this kind of sign-in."),
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
        "code_login": s.flows.code_login_enabled("sms" if data.get("kind") == "phone" else "email")
        and not data.get("password_only"),
        "registration": s.settings.registration_email or s.settings.registration_phone,
        "channel": data.get("channel"), "factor": data.get("factor"), "methods": data.get("methods") or [],
        **context,
    }, status_code=status_code, ui_locales=view.request.ui_locales, csrf=csrf)


async def _load(request: Request, flow: str | None, state) -> FlowView | Response:
    s = services(request)
    try:
        return await s.db.run(lambda db: s.flows.load(db, flow, state, browser=browser_cookie(request), named=True))
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
    """Run one flow step; map the errors every step shares to their pages. A step that needs a
    password hash pauses before it (flows/password_check.py): its first transaction commits, the
    hash runs with no connection held, and the step resumes in a second transaction."""
    s = services(request)
    try:
        result = await run_pausing_for_hashes(s.db, s.hasher, step)
    except FlowError as exc:
        return error_page(request, str(exc))
    except AccountDisabled:
        return error_page(request, ACCOUNT_DISABLED, status_code=403)
    except RateLimited as exc:
        return too_many_page(request, exc.retry_after)
    except (LoginFailed, SecondFactorFailed, CodeProblem, PasswordRejected, SameAsTemporary) as exc:
        await s.flows.count_failure(exc)  # now that the failure is committed
        return await on_error(exc)
    if isinstance(result, Interaction):
        return interaction_redirect(result)
    return _signed_in(request, result)


async def _show(request: Request, flow_id: str | None, state, template: str, **context) -> Response:
    """A step's page (GET), or the error page when the flow is not at that step."""
    view = await _load(request, flow_id, state)
    if isinstance(view, Response):
        return view
    return _page(request, template, view, Csrf(request), **context)


async def _submit(request: Request, state, template: str, step, on_error) -> Response:
    """A step's form (POST): CSRF, then `step(flows, db, flow_id, form, browser)`; a refusal
    shows the page again with `on_error(exc, form, view)` (error text and status)."""
    s = services(request)
    form, flow_id, ok = await _form(request)
    if not ok:
        return error_page(request, FORM_EXPIRED, status_code=403)
    browser = browser_of(request)

    async def failed(exc):
        view = await s.db.run(lambda db: s.flows.load(db, flow_id, state, browser=browser.cookie, named=True))
        return _page(request, template, view, Csrf(request), **on_error(exc, form, view))

    return await _run_step(request, lambda db: step(s.flows, db, flow_id, form, browser), failed)


# ---- identifier (and the one-form login) ---------------------------------------------------------

@router.get("/login")
async def login_page(request: Request, flow: str | None = None) -> Response:
    view = await _load(request, flow, IDENTIFIER_STATES)
    if isinstance(view, Response):
        return view
    return _page(request, "login.html", view, Csrf(request), username=view.request.login_hint)


@router.post("/login")
async def login_submit(request: Request) -> Response:
    def step(flows, db, flow_id, form, browser):
        username, password = form.get("username", "").strip(), form.get("password", "")
        if password:  # both fields in one post: a password manager, or a client of the one-form login
            return flows.submit_password(db, flow_id, username, password, browser)
        return flows.submit_identifier(db, flow_id, username, browser)

    return await _submit(request, IDENTIFIER_STATES, "login.html", step, lambda exc, form, view: {
        "error": LOGIN_FAILED, "username": form.get("username", "").strip(), "status_code": 401})


# ---- password ------------------------------------------------------------------------------------

@router.get("/login/password")
async def password_page(request: Request, flow: str | None = None) -> Response:
    return await _show(request, flow, FlowState.PASSWORD, "login_password.html")


@router.post("/login/password")
async def password_submit(request: Request) -> Response:
    def step(flows, db, flow_id, form, browser):
        if form.get("action") == "code":  # "send me a code instead"
            return flows.request_login_code(db, flow_id, browser)
        return flows.submit_password_step(db, flow_id, form.get("password", ""), browser)

    return await _submit(request, FlowState.PASSWORD, "login_password.html", step,
                         lambda exc, form, view: {"error": LOGIN_FAILED, "status_code": 401})


# ---- sign-in code --------------------------------------------------------------------------------

@router.get("/login/code")
async def code_page(request: Request, flow: str | None = None) -> Response:
    return await _show(request, flow, FlowState.CODE, "login_code.html")


@router.post("/login/code")
async def code_submit(request: Request) -> Response:
    def step(flows, db, flow_id, form, browser):
        if form.get("action") == "resend":
            return flows.request_login_code(db, flow_id, browser, resend=True)
        return flows.submit_login_code(db, flow_id, form.get("code", ""), browser)

    return await _submit(request, FlowState.CODE, "login_code.html", step,
                         lambda exc, form, view: {"error": CODE_NOT_VALID, "status_code": 400})


# ---- second factor -------------------------------------------------------------------------------

@router.get("/login/factor")
async def factor_page(request: Request, flow: str | None = None) -> Response:
    return await _show(request, flow, FlowState.SECOND_FACTOR, "login_factor.html")


@router.post("/login/factor")
async def factor_submit(request: Request) -> Response:
    def step(flows, db, flow_id, form, browser):
        if form.get("use"):  # another method, or a new code by this one
            return flows.choose_factor(db, flow_id, form["use"], browser)
        return flows.submit_second_factor(db, flow_id, form.get("answer", ""), browser)

    def refused(exc, form, view):
        return {"error": WRONG_PASSWORD if view.data.get("factor") == "pwd" else CODE_NOT_VALID,
                "status_code": 400}

    return await _submit(request, FlowState.SECOND_FACTOR, "login_factor.html", step, refused)


# ---- a new password in place of a temporary one --------------------------------------------------

@router.get("/login/new-password")
async def new_password_page(request: Request, flow: str | None = None) -> Response:
    return await _show(request, flow, FlowState.NEW_PASSWORD, "login_new_password.html")


@router.post("/login/new-password")
async def new_password_submit(request: Request) -> Response:
    def step(flows, db, flow_id, form, browser):
        return flows.submit_new_password(db, flow_id, form.get("password", ""), browser)

    def refused(exc, form, view):
        if isinstance(exc, PasswordRejected):
            return {"error": POLICY_TEXTS[exc.reason], "error_params": exc.params, "status_code": 400}
        return {"error": SAME_AS_TEMPORARY, "status_code": 400}

    return await _submit(request, FlowState.NEW_PASSWORD, "login_new_password.html", step, refused)


# ---- the organisation (flows/organisation.py) ----------------------------------------------------

@router.get("/login/organisation")
async def organisation_page(request: Request, flow: str | None = None) -> Response:
    s = services(request)
    view = await _load(request, flow, FlowState.ORGANISATION)
    if isinstance(view, Response):
        return view
    orgs = await s.db.run(lambda db: s.flows.organisation.choices(db, view.flow))
    return _page(request, "login_organisation.html", view, Csrf(request), orgs=orgs)


@router.post("/login/organisation")
async def organisation_submit(request: Request) -> Response:
    def step(flows, db, flow_id, form, browser):
        return flows.organisation.choose(db, flow_id, form.get("organisation"), browser)

    return await _submit(request, FlowState.ORGANISATION, "login_organisation.html", step,
                         lambda exc, form, view: {"status_code": 400})


@router.get("/login/no-access")
async def no_access_page(request: Request, flow: str | None = None) -> Response:
    """Refused at the organisation step: why, and a way back (the client receives access_denied)."""
    s = services(request)
    view = await _load(request, flow, FlowState.NO_ACCESS)
    if isinstance(view, Response):
        return view
    refusal = view.data.get("no_access") or {}
    reason = refusal.get("reason", "product")
    if reason == "product" and not refusal.get("org"):
        reason = "product_no_org"
    return _page(request, "login_no_access.html", view, Csrf(request), status_code=403,
                 message=NO_ACCESS_TEXTS.get(reason, NO_ACCESS_TEXTS["product"]),
                 message_params={"org": refusal.get("org") or "", "product": refusal.get("product") or view.client_name},
                 back=s.authorization.denied_location(view.request))
