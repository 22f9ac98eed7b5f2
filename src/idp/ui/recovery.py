"""Password reset pages: /reset → /reset/code → /reset/password → done. Each parses the form,
checks CSRF, calls one step of flows/recovery.py (which checks the state).

A reset an integrator asked for starts at the emailed or texted link instead: /reset/link/{token}
(GET shows a button and spends nothing; POST binds the flow to this browser) → /reset/password."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from idp.accounts.password_policy import PasswordRejected
from idp.flows.password_check import run_pausing_for_hashes
from idp.flows.recovery import READY, RecoveryError, ResetState
from idp.flows.reset_links import ResetLinkGone, ResetLinkNotFound
from idp.otp.service import CodeProblem
from idp.ratelimit.errors import RateLimited
from idp.ui.i18n import negotiate
from idp.ui.web import (
    FORM_EXPIRED, POLICY_TEXTS, Csrf, browser_cookie, client_ip, error_page, render, services, too_many_page,
)

router = APIRouter(include_in_schema=False)

START = "reset"  # the CSRF purpose of the first form (no flow exists yet)


# ---- start -------------------------------------------------------------------------------------

@router.get("/reset")
async def reset_page(request: Request, flow: str | None = None) -> Response:
    csrf = Csrf(request)
    return render(request, "reset_start.html", {"login_flow_id": flow, "csrf_token": csrf.token(START)},
                  csrf=csrf)


@router.post("/reset")
async def reset_submit(request: Request) -> Response:
    s = services(request)
    form = await request.form()
    csrf = Csrf(request)
    if not csrf.valid(form.get("csrf_token"), START):
        return error_page(request, FORM_EXPIRED, status_code=403)
    locale = negotiate(None, request.headers.get("accept-language"), s.settings.default_locale)
    login_flow = form.get("login_flow")
    try:
        flow = await s.db.run(lambda db: s.recovery.start(
            db, str(form.get("identifier", "")), ip=client_ip(request), locale=locale,
            browser=csrf.cookie, login_flow_id=login_flow if isinstance(login_flow, str) else None))
    except RateLimited as exc:
        return too_many_page(request, exc.retry_after)
    return RedirectResponse(f"/reset/code?flow={flow.id}", status_code=303)


# ---- code --------------------------------------------------------------------------------------

def _code_page(request: Request, flow, csrf: Csrf, *, error: str | None = None,
               status_code: int = 200) -> Response:
    return render(request, "reset_code.html", {
        "flow_id": flow.id, "login_flow_id": flow.login_flow_id, "error": error,
        "csrf_token": csrf.token(flow.id),
    }, status_code=status_code, csrf=csrf)


@router.get("/reset/code")
async def code_page(request: Request, flow: str | None = None) -> Response:
    s, csrf = services(request), Csrf(request)
    try:
        view = await s.db.run(lambda db: s.recovery.load(db, flow, ResetState.AWAITING_CODE,
                                                         browser=browser_cookie(request)))
    except RecoveryError as exc:
        return error_page(request, str(exc))
    return _code_page(request, view, csrf)


@router.post("/reset/code")
async def code_submit(request: Request) -> Response:
    s, csrf = services(request), Csrf(request)
    form = await request.form()
    flow_id = form.get("flow")
    if not csrf.valid(form.get("csrf_token"), str(flow_id)):
        return error_page(request, FORM_EXPIRED, status_code=403)
    try:
        await s.db.run(lambda db: s.recovery.verify_code(db, flow_id, str(form.get("code", "")),
                                                         browser=browser_cookie(request)))
    except RecoveryError as exc:
        return error_page(request, str(exc))
    except CodeProblem as exc:
        if getattr(exc, "retry_after", None):
            return too_many_page(request, exc.retry_after)
        try:  # a parallel request may have moved the flow on meanwhile
            view = await s.db.run(lambda db: s.recovery.load(db, flow_id, ResetState.AWAITING_CODE,
                                                             browser=browser_cookie(request)))
        except RecoveryError as gone:
            return error_page(request, str(gone))
        return _code_page(request, view, csrf, error=exc.public_message, status_code=400)
    return RedirectResponse(f"/reset/password?flow={flow_id}", status_code=303)


# ---- a link an integrator had sent ---------------------------------------------------------------

LINK = "reset-link"  # the CSRF purpose of the link page's button


def _link_refused(request: Request, exc: ResetLinkNotFound | ResetLinkGone) -> Response:
    return error_page(request, str(exc), status_code=exc.status)


@router.get("/reset/link/{token}")
async def link_page(request: Request, token: str) -> Response:
    """Only a button: a mail scanner that fetches the link must not spend it."""
    s, csrf = services(request), Csrf(request)
    try:
        await s.db.run(lambda db: s.recovery.links.check(db, token))
    except (ResetLinkNotFound, ResetLinkGone) as exc:
        return _link_refused(request, exc)
    return render(request, "reset_link.html", {"action": f"/reset/link/{token}", "csrf_token": csrf.token(LINK)},
                  csrf=csrf)


@router.post("/reset/link/{token}")
async def link_open(request: Request, token: str) -> Response:
    s, csrf = services(request), Csrf(request)
    form = await request.form()
    if not csrf.valid(form.get("csrf_token"), LINK):
        return error_page(request, FORM_EXPIRED, status_code=403)
    try:
        flow_id = await s.db.run(lambda db: s.recovery.links.open(db, token, browser=csrf.cookie))
    except (ResetLinkNotFound, ResetLinkGone) as exc:
        return _link_refused(request, exc)
    return RedirectResponse(f"/reset/password?flow={flow_id}", status_code=303)


# ---- new password ------------------------------------------------------------------------------

def _password_page(request: Request, flow_id: str, csrf: Csrf, *, error: str | None = None,
                   error_params: dict | None = None, status_code: int = 200) -> Response:
    return render(request, "reset_password.html", {
        "flow_id": flow_id, "error": error, "error_params": error_params or {},
        "csrf_token": csrf.token(flow_id),
    }, status_code=status_code, csrf=csrf)


@router.get("/reset/password")
async def password_page(request: Request, flow: str | None = None) -> Response:
    s, csrf = services(request), Csrf(request)
    try:
        view = await s.db.run(lambda db: s.recovery.load(db, flow, READY, browser=browser_cookie(request)))
    except RecoveryError as exc:
        return error_page(request, str(exc))
    return _password_page(request, view.id, csrf)


@router.post("/reset/password")
async def password_submit(request: Request) -> Response:
    s, csrf = services(request), Csrf(request)
    form = await request.form()
    flow_id = form.get("flow")
    if not csrf.valid(form.get("csrf_token"), str(flow_id)):
        return error_page(request, FORM_EXPIRED, status_code=403)
    typed, browser = str(form.get("password", "")), browser_cookie(request)
    try:
        done = await run_pausing_for_hashes(s.db, s.hasher, lambda db: s.recovery.set_password(
            db, flow_id, typed, browser=browser))
    except RecoveryError as exc:
        return error_page(request, str(exc))
    except PasswordRejected as exc:
        return _password_page(request, str(flow_id), csrf, error=POLICY_TEXTS[exc.reason],
                              error_params=exc.params, status_code=400)
    return render(request, "reset_done.html", {"login_flow_id": done.login_flow_id})
