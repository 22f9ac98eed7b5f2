"""Account pages: /account (profile), /account/identifiers, /account/password,
/account/security (second factors) and /account/sessions.

Each route finds the session from the cookie, checks CSRF (bound to the session id and the form's
name), calls one method of accounts/self_service.py and answers 303 (to its page) after a
success. The only exceptions are the two POSTs whose answer holds recovery codes: those codes exist
nowhere else (stored as keyed hashes), so they are shown in that one response (200, no-store).

No session → the browser signs in on an account flow and comes back to the page. A sensitive
change with a sign-in older than `reauth_seconds` → the same, with max_age=0, and nothing changes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.password_policy import PasswordRejected
from idp.accounts.self_service import SelfService, SelfServiceError, SignInRequired
from idp.flows.password_check import run_pausing_for_hashes
from idp.otp.service import CodeProblem, ResendTooSoon, TooManyAttempts
from idp.ratelimit.errors import RateLimited
from idp.sessions.models import BrowserSession
from idp.ui.i18n import N_, negotiate
from idp.ui.routes import SESSION_COOKIE, current_session
from idp.ui.web import (CODE_NOT_VALID, FORM_EXPIRED, POLICY_TEXTS, Csrf, clear_cookie, client_ip, error_page,
                        render, services, too_many_page)

router = APIRouter(include_in_schema=False)

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Every form on the account pages; each CSRF token is bound to "<session id>|<form>".
FORMS = ("profile", "identifier_add", "identifier_confirm", "identifier_resend", "identifier_remove",
         "password", "totp_start", "totp_confirm", "totp_remove", "recovery_codes", "code_factor",
         "session_end", "sessions_end_others")
# Languages named in themselves, never translated.
LANGUAGE_NAMES = {"en": "English", "fi": "Suomi", "sv": "Svenska", "hu": "Magyar"}
# What the page says after a successful POST (?done=<key>); a fixed table, nothing reflected.
DONE_TEXTS = {
    "profile": N_("Your profile was saved."),
    "verified": N_("Confirmed. You can now sign in with it."),
    "removed": N_("Removed."),
    "password": N_("Your password was changed."),
    "password_others": N_("Your password was changed and your other sessions were signed out."),
    "totp": N_("The authenticator app was added."),
    "totp_removed": N_("The authenticator app was removed."),
    "code_factor": N_("Your second factor settings were saved."),
    "ended": N_("The session was signed out."),
    "ended_others": N_("Your other sessions were signed out."),
}
RESEND_TOO_SOON = N_("A code was sent a moment ago. Wait a little before asking for another.")


class _Forged(Exception):
    """The form's CSRF token does not match this browser and session."""


# Page loaders and form actions get the account service, the transaction and the live session.
Loader = Callable[[SelfService, AsyncSession, BrowserSession], Awaitable[dict]]
Action = Callable[[SelfService, AsyncSession, BrowserSession, object], Awaitable[Response]]


@dataclass(frozen=True)  # the fixed pages are module constants
class Page:
    """A GET page: where it lives (the return_to of a sign-in), its template and its data."""

    path: str
    template: str
    load: Loader


def _locale(request: Request) -> str:
    s = services(request)
    return negotiate(None, request.headers.get("accept-language"), s.settings.default_locale)


def _id_ok(value: str | None) -> bool:
    """Safe to put in a return_to path (the alphabet of db.new_id())."""
    return isinstance(value, str) and bool(_ID.fullmatch(value))


def _field(form, name: str, maximum: int = 1000) -> str:
    """A text field; a file part or a missing field reads as empty, and overlong input is cut."""
    value = form.get(name)
    return value[:maximum] if isinstance(value, str) else ""


async def _session(request: Request, db: AsyncSession) -> BrowserSession:
    return services(request).self_service.require_session(await current_session(request, db))


async def _sign_in(request: Request, return_to: str, exc: SignInRequired) -> Response:
    s, csrf = services(request), Csrf(request)  # the flow is bound to this browser's CSRF cookie
    flow_id = await s.db.run(lambda db: s.flows.start_account_flow(db, return_to=return_to, browser=csrf.cookie,
                                                                   max_age=exc.max_age))
    response = RedirectResponse(f"/login?flow={flow_id}", status_code=303)
    csrf.persist(response)
    return response


async def _show(request: Request, page: Page, *, error: str | None = None, error_params: dict | None = None,
                status_code: int = 200, retry_after: int | None = None) -> Response:
    s, csrf = services(request), Csrf(request)

    async def work(db):
        session = await _session(request, db)
        return session, await page.load(s.self_service, db, session)

    try:
        session, context = await s.db.run(work)
    except SignInRequired as exc:
        return await _sign_in(request, page.path, exc)
    except SelfServiceError as exc:  # e.g. a confirm page for an address no longer pending
        return error_page(request, exc.message, status_code=exc.status)
    done = request.query_params.get("done")
    response = render(request, page.template, {
        **context, "csrf": {form: csrf.token(f"{session.id}|{form}") for form in FORMS},
        "error": error, "error_params": error_params or {}, "done": DONE_TEXTS.get(done or ""),
        "recent": s.self_service.is_recent(session),
    }, status_code=status_code, csrf=csrf)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def _act(request: Request, form_name: str, page: Page, action: Action) -> Response:
    """Check the session and CSRF, run `action` in one transaction, map refusals to the page. An
    action that needs a password hash returns a PasswordCheck (flows/password_check.py): its
    transaction commits, the hash runs with none open, and it resumes in a second one."""
    s, csrf = services(request), Csrf(request)
    form = await request.form()

    async def work(db):
        session = await _session(request, db)
        if not csrf.valid(form.get("csrf_token"), f"{session.id}|{form_name}"):
            raise _Forged()
        return await action(s.self_service, db, session, form)

    try:
        return await run_pausing_for_hashes(s.db, s.hasher, work)
    except SignInRequired as exc:  # and ReauthRequired: nothing was changed (rolled back)
        return await _sign_in(request, page.path, exc)
    except _Forged:
        return error_page(request, FORM_EXPIRED, status_code=403)
    except (RateLimited, TooManyAttempts) as exc:
        return too_many_page(request, exc.retry_after)
    except ResendTooSoon as exc:
        return await _show(request, page, error=RESEND_TOO_SOON, status_code=429, retry_after=exc.retry_after)
    except CodeProblem:
        return await _show(request, page, error=CODE_NOT_VALID, status_code=400)
    except PasswordRejected as exc:
        return await _show(request, page, error=POLICY_TEXTS[exc.reason], error_params=exc.params,
                           status_code=400)
    except SelfServiceError as exc:
        return await _show(request, page, error=exc.message, error_params=exc.params, status_code=exc.status)


def _see(location: str) -> Response:
    return RedirectResponse(location, status_code=303)


def _codes_page(request: Request, codes: list[str]) -> Response:
    """Recovery codes, shown in this one response and never again."""
    return render(request, "account_recovery_codes.html", {"codes": codes, "active": "security"})


# ---- profile -------------------------------------------------------------------------------------

async def _load_profile(ss: SelfService, db: AsyncSession, session: BrowserSession) -> dict:
    return {"active": "profile", "user": await ss.user(db, session),
            "languages": [(code, LANGUAGE_NAMES.get(code, code)) for code in ss.locales()]}


PROFILE = Page("/account", "account_profile.html", _load_profile)


@router.get("/account")
async def profile_page(request: Request) -> Response:
    return await _show(request, PROFILE)


@router.post("/account")
async def profile_submit(request: Request) -> Response:
    async def action(ss, db, session, form):
        await ss.update_profile(
            db, session, given_name=_field(form, "given_name"), family_name=_field(form, "family_name"),
            name=_field(form, "name"), locale=_field(form, "locale", 32))
        return _see("/account?done=profile")
    return await _act(request, "profile", PROFILE, action)


# ---- identifiers ---------------------------------------------------------------------------------

async def _load_identifiers(ss: SelfService, db: AsyncSession, session: BrowserSession) -> dict:
    return {"active": "identifiers", "user": await ss.user(db, session),
            "identifiers": await ss.identifiers(db, session)}


IDENTIFIERS = Page("/account/identifiers", "account_identifiers.html", _load_identifiers)


def _confirm_page(identifier_id: str | None) -> Page:
    async def load(ss, db, session):
        return {"active": "identifiers", "identifier": await ss.pending_identifier(db, session, identifier_id)}
    path = f"/account/identifiers/confirm?id={identifier_id}" if _id_ok(identifier_id) else "/account/identifiers"
    return Page(path, "account_identifier_confirm.html", load)


@router.get("/account/identifiers")
async def identifiers_page(request: Request) -> Response:
    return await _show(request, IDENTIFIERS)


@router.post("/account/identifiers/add")
async def identifier_add(request: Request) -> Response:
    async def action(ss, db, session, form):
        identifier = await ss.add_identifier(
            db, session, _field(form, "kind", 16), _field(form, "value", 400), ip=client_ip(request),
            locale=_locale(request))
        return _see(f"/account/identifiers/confirm?id={identifier.id}")
    return await _act(request, "identifier_add", IDENTIFIERS, action)


@router.get("/account/identifiers/confirm")
async def identifier_confirm_page(request: Request, id: str | None = None) -> Response:
    return await _show(request, _confirm_page(id))


@router.post("/account/identifiers/confirm")
async def identifier_confirm(request: Request) -> Response:
    identifier_id = _field(await request.form(), "id", 64)

    async def action(ss, db, session, form):
        await ss.confirm_identifier(db, session, identifier_id, _field(form, "code", 32), locale=_locale(request))
        return _see("/account/identifiers?done=verified")
    return await _act(request, "identifier_confirm", _confirm_page(identifier_id), action)


@router.post("/account/identifiers/resend")
async def identifier_resend(request: Request) -> Response:
    identifier_id = _field(await request.form(), "id", 64)

    async def action(ss, db, session, form):
        await ss.resend_code(db, session, identifier_id, ip=client_ip(request), locale=_locale(request))
        return _see(f"/account/identifiers/confirm?id={identifier_id}")
    return await _act(request, "identifier_resend", _confirm_page(identifier_id), action)


@router.post("/account/identifiers/remove")
async def identifier_remove(request: Request) -> Response:
    async def action(ss, db, session, form):
        await ss.remove_identifier(db, session, _field(form, "id", 64), locale=_locale(request))
        return _see("/account/identifiers?done=removed")
    return await _act(request, "identifier_remove", IDENTIFIERS, action)


# ---- password ------------------------------------------------------------------------------------

async def _load_password(ss: SelfService, db: AsyncSession, session: BrowserSession) -> dict:
    return {"active": "password", "has_password": await ss.has_password(db, session)}


PASSWORD = Page("/account/password", "account_password.html", _load_password)


@router.get("/account/password")
async def password_page(request: Request) -> Response:
    return await _show(request, PASSWORD)


@router.post("/account/password")
async def password_submit(request: Request) -> Response:
    async def action(ss, db, session, form):
        end_others = form.get("end_other_sessions") == "yes"
        check = await ss.change_password(
            db, session, current=_field(form, "current_password"), new=_field(form, "new_password"),
            end_other_sessions=end_others, locale=_locale(request))
        return check.then(_see("/account/password?done=" + ("password_others" if end_others else "password")))
    return await _act(request, "password", PASSWORD, action)


# ---- second factors ------------------------------------------------------------------------------

async def _load_security(ss: SelfService, db: AsyncSession, session: BrowserSession) -> dict:
    return {"active": "security", "view": await ss.security(db, session)}


SECURITY = Page("/account/security", "account_security.html", _load_security)


def _totp_page(factor_id: str | None) -> Page:
    async def load(ss, db, session):
        enrolment = await ss.pending_totp(db, session, factor_id)
        secret = enrolment.secret
        return {"active": "security", "enrolment": enrolment,
                "secret_groups": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))}
    path = f"/account/security/totp?factor={factor_id}" if _id_ok(factor_id) else "/account/security"
    return Page(path, "account_totp.html", load)


@router.get("/account/security")
async def security_page(request: Request) -> Response:
    return await _show(request, SECURITY)


@router.post("/account/security/totp")
async def totp_start(request: Request) -> Response:
    async def action(ss, db, session, form):
        enrolment = await ss.start_totp(db, session)
        return _see(f"/account/security/totp?factor={enrolment.factor_id}")
    return await _act(request, "totp_start", SECURITY, action)


@router.get("/account/security/totp")
async def totp_page(request: Request, factor: str | None = None) -> Response:
    return await _show(request, _totp_page(factor))


@router.post("/account/security/totp/confirm")
async def totp_confirm(request: Request) -> Response:
    factor_id = _field(await request.form(), "factor", 64)

    async def action(ss, db, session, form):
        codes = await ss.confirm_totp(db, session, factor_id, _field(form, "code", 32), locale=_locale(request))
        return _codes_page(request, codes) if codes else _see("/account/security?done=totp")
    return await _act(request, "totp_confirm", _totp_page(factor_id), action)


@router.post("/account/security/totp/remove")
async def totp_remove(request: Request) -> Response:
    async def action(ss, db, session, form):
        await ss.remove_totp(db, session, _field(form, "factor", 64), locale=_locale(request))
        return _see("/account/security?done=totp_removed")
    return await _act(request, "totp_remove", SECURITY, action)


@router.post("/account/security/recovery-codes")
async def recovery_codes(request: Request) -> Response:
    async def action(ss, db, session, form):
        return _codes_page(request, await ss.new_recovery_codes(db, session))
    return await _act(request, "recovery_codes", SECURITY, action)


@router.post("/account/security/code")
async def code_factor(request: Request) -> Response:
    async def action(ss, db, session, form):
        channel = _field(form, "channel", 8)
        await ss.set_code_second_factor(db, session, channel if channel in ("sms", "email") else None,
                                        locale=_locale(request))
        return _see("/account/security?done=code_factor")
    return await _act(request, "code_factor", SECURITY, action)


# ---- sessions ------------------------------------------------------------------------------------

async def _load_sessions(ss: SelfService, db: AsyncSession, session: BrowserSession) -> dict:
    return {"active": "sessions", "sessions": await ss.sessions(db, session)}


SESSIONS = Page("/account/sessions", "account_sessions.html", _load_sessions)


@router.get("/account/sessions")
async def sessions_page(request: Request) -> Response:
    return await _show(request, SESSIONS)


@router.post("/account/sessions/end")
async def session_end(request: Request) -> Response:
    async def action(ss, db, session, form):
        if await ss.end_session(db, session, _field(form, "session", 64)):  # this browser signed itself out
            response = _see("/account/sessions")
            clear_cookie(request, response, SESSION_COOKIE)
            return response
        return _see("/account/sessions?done=ended")
    return await _act(request, "session_end", SESSIONS, action)


@router.post("/account/sessions/end-others")
async def sessions_end_others(request: Request) -> Response:
    async def action(ss, db, session, form):
        await ss.end_other_sessions(db, session)
        return _see("/account/sessions?done=ended_others")
    return await _act(request, "sessions_end_others", SESSIONS, action)
