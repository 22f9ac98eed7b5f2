"""Registration pages: /register → /register/code → signed in (the application, or /account).

Each parses the form, checks CSRF, calls one step of flows/registration.py (which checks the
flow's state and the settings) and renders or redirects. A closed method is a 404 whatever the
form holds, so the check comes before CSRF.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from idp.accounts.password_policy import PasswordRejected
from idp.flows.registration import (
    AlreadyRegistered, RegistrationClosed, RegistrationError, RegistrationInvalid,
)
from idp.otp.service import CodeProblem
from idp.ratelimit.errors import RateLimited
from idp.ui.i18n import N_, negotiate
from idp.ui.routes import SESSION_COOKIE, interaction_redirect
from idp.ui.web import (
    FORM_EXPIRED, POLICY_TEXTS, Csrf, browser_cookie, client_ip, error_page, get_cookie, render,
    services, set_cookie, too_many_page,
)

router = APIRouter(include_in_schema=False)

START = "register"  # the CSRF purpose of the first forms (no flow exists yet)
CLOSED = N_("Creating an account this way is not available.")


def _field(form, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""  # a file part is no text


def _closed(request: Request) -> Response:
    return error_page(request, CLOSED, status_code=404)


# ---- start -------------------------------------------------------------------------------------

def _start_page(request: Request, csrf: Csrf, *, login_flow_id: str | None, method: str | None = None,
                values: dict | None = None, error: str | None = None, error_params: dict | None = None,
                status_code: int = 200) -> Response:
    s = services(request)
    return render(request, "register_start.html", {
        "methods": s.registration.methods(), "login_flow_id": login_flow_id,
        "csrf_token": csrf.token(START), "method": method, "values": values or {},
        "error": error, "error_params": error_params or {},
        "password_min_length": s.password_policy.min_length,
    }, status_code=status_code, csrf=csrf)


@router.get("/register")
async def register_page(request: Request, flow: str | None = None) -> Response:
    if not services(request).registration.methods():
        return _closed(request)
    return _start_page(request, Csrf(request), login_flow_id=flow)


@router.post("/register")
async def register_submit(request: Request) -> Response:
    s, csrf = services(request), Csrf(request)
    form = await request.form()
    method = _field(form, "method")
    if method not in s.registration.methods():
        return _closed(request)
    if not csrf.valid(form.get("csrf_token"), START):
        return error_page(request, FORM_EXPIRED, status_code=403)
    login_flow = _field(form, "login_flow") or None
    identifier = _field(form, "email" if method == "email" else "phone")
    values = {"identifier": identifier, "name": _field(form, "name")}
    locale = negotiate(None, request.headers.get("accept-language"), s.settings.default_locale)
    try:
        flow = await s.db.run(lambda db: s.registration.start(
            db, method, identifier, password=_field(form, "password"), name=values["name"],
            ip=client_ip(request), locale=locale, browser=csrf.cookie, login_flow_id=login_flow))
    except RegistrationClosed:
        return _closed(request)
    except RegistrationInvalid as exc:
        return _start_page(request, csrf, login_flow_id=login_flow, method=method, values=values,
                           error=str(exc), status_code=400)
    except PasswordRejected as exc:
        return _start_page(request, csrf, login_flow_id=login_flow, method=method, values=values,
                           error=POLICY_TEXTS[exc.reason], error_params=exc.params, status_code=400)
    except RateLimited as exc:
        return too_many_page(request, exc.retry_after)
    return RedirectResponse(f"/register/code?flow={flow.id}", status_code=303)


# ---- code --------------------------------------------------------------------------------------

def _code_page(request: Request, flow, csrf: Csrf, *, error: str | None = None, resent: bool = False,
               status_code: int = 200) -> Response:
    return render(request, "register_code.html", {
        "flow_id": flow.id, "channel": flow.channel, "login_flow_id": flow.login_flow_id,
        "error": error, "resent": resent, "csrf_token": csrf.token(flow.id),
    }, status_code=status_code, csrf=csrf)


async def _show_code(request: Request, flow_id: str | None, **context) -> Response:
    """The code page of a flow this browser may continue, or the page saying why not."""
    s = services(request)
    try:
        view = await s.db.run(lambda db: s.registration.load(db, flow_id, browser=browser_cookie(request)))
    except RegistrationError as exc:
        return error_page(request, str(exc))
    return _code_page(request, view, Csrf(request), **context)


async def _flow_form(request: Request) -> tuple[FormData, str] | None:
    """The posted form and its flow id, or None when its CSRF token is not for that flow."""
    form = await request.form()
    flow_id = _field(form, "flow")
    return (form, flow_id) if Csrf(request).valid(form.get("csrf_token"), flow_id) else None


@router.get("/register/code")
async def code_page(request: Request, flow: str | None = None, resent: str | None = None) -> Response:
    return await _show_code(request, flow, resent=resent == "1")


@router.post("/register/code")
async def code_submit(request: Request) -> Response:
    s = services(request)
    if (posted := await _flow_form(request)) is None:
        return error_page(request, FORM_EXPIRED, status_code=403)
    form, flow_id = posted
    try:
        result = await s.db.run(lambda db: s.registration.complete(
            db, flow_id, _field(form, "code"), browser=browser_cookie(request),
            previous_cookie=get_cookie(request, SESSION_COOKIE),
            user_agent=request.headers.get("user-agent")))
    except RegistrationClosed:
        return _closed(request)
    except RegistrationError as exc:
        return error_page(request, str(exc), status_code=409 if isinstance(exc, AlreadyRegistered) else 400)
    except CodeProblem as exc:
        if getattr(exc, "retry_after", None):
            return too_many_page(request, exc.retry_after)
        return await _show_code(request, flow_id, error=exc.public_message, status_code=400)
    response = interaction_redirect(result.outcome)
    if result.session_cookie:
        set_cookie(request, response, SESSION_COOKIE, result.session_cookie)
    return response


@router.post("/register/code/resend")
async def code_resend(request: Request) -> Response:
    s = services(request)
    if (posted := await _flow_form(request)) is None:
        return error_page(request, FORM_EXPIRED, status_code=403)
    _, flow_id = posted
    try:
        await s.db.run(lambda db: s.registration.resend(db, flow_id, ip=client_ip(request),
                                                        browser=browser_cookie(request)))
    except RegistrationClosed:
        return _closed(request)
    # RegistrationInvalid: the number's country was struck off meanwhile.
    except (RegistrationError, RegistrationInvalid) as exc:
        return error_page(request, str(exc))
    except (RateLimited, CodeProblem) as exc:  # the SMS limits, the code cooldown, a lockout
        return too_many_page(request, getattr(exc, "retry_after", None))
    return RedirectResponse(f"/register/code?flow={flow_id}&resent=1", status_code=303)
