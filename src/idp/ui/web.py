"""What every page shares: rendering with translations, cookies, CSRF tokens."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from idp.security import keyed_hash, random_token, same
from idp.services import Services
from idp.ui.i18n import N_, negotiate, translations

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    extensions=["jinja2.ext.i18n"],
)


def services(request: Request) -> Services:
    return request.app.state.services


def cookie_name(request: Request, name: str) -> str:
    # The __Host- prefix needs Secure, which browsers refuse on plain http (development).
    return f"__Host-{name}" if services(request).settings.is_https else name


def set_cookie(request: Request, response, name: str, value: str, *, max_age: int | None = None) -> None:
    response.set_cookie(
        cookie_name(request, name), value, max_age=max_age, path="/", httponly=True,
        samesite="lax", secure=services(request).settings.is_https,
    )


def get_cookie(request: Request, name: str) -> str | None:
    return request.cookies.get(cookie_name(request, name))


def browser_cookie(request: Request) -> str | None:
    """The browser's CSRF cookie: what sign-in flows are bound to (FlowService.load)."""
    return get_cookie(request, Csrf.COOKIE)


def clear_cookie(request: Request, response, name: str) -> None:
    response.delete_cookie(cookie_name(request, name), path="/", httponly=True, samesite="lax",
                           secure=services(request).settings.is_https)


class Csrf:
    """Signed double-submit: the form token is HMAC(key, browser cookie, purpose)."""

    COOKIE = "idp_csrf"

    def __init__(self, request: Request) -> None:
        self.request = request
        self.cookie = get_cookie(request, self.COOKIE)
        self.is_new = self.cookie is None
        if self.cookie is None:
            self.cookie = random_token(nbytes=24)

    def token(self, purpose: str) -> str:
        return keyed_hash(services(self.request).csrf_key, f"{self.cookie}|{purpose}")

    def valid(self, submitted: object, purpose: str) -> bool:
        # A multipart form may carry a file part under the field's name: that is no token.
        return not self.is_new and isinstance(submitted, str) and same(self.token(purpose), submitted)

    def persist(self, response) -> None:
        if self.is_new:
            set_cookie(self.request, response, self.COOKIE, self.cookie)


def render(request: Request, template: str, context: dict, *, status_code: int = 200,
           ui_locales: str | None = None, csrf: Csrf | None = None) -> HTMLResponse:
    settings = services(request).settings
    locale = negotiate(ui_locales, request.headers.get("accept-language"), settings.default_locale)
    gnu = translations(locale)

    def _(message: str, **values) -> str:
        text = gnu.gettext(message)
        return text % values if values else text

    body = _env.get_template(template).render(**context, _=_, gettext=_, ngettext=gnu.ngettext, lang=locale)
    response = HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})
    if csrf is not None:
        csrf.persist(response)
    return response


FORM_EXPIRED = N_("The form expired. Go back to the application and try again.")


def error_page(request: Request, message: str, *, status_code: int = 400, ui_locales: str | None = None) -> HTMLResponse:
    return render(request, "error.html", {"message": message}, status_code=status_code, ui_locales=ui_locales)


TOO_MANY = N_("Too many attempts. Wait a while and try again.")
# otp.CodeProblem.public_message, marked here so the catalogues translate it.
CODE_NOT_VALID = N_("The code is not valid. Check it or ask for a new one.")
POLICY_TEXTS = {
    "too_short": N_("The password must be at least %(minimum)s characters long."),
    "too_long": N_("The password must be at most %(maximum)s characters long."),
    "common": N_("The password is too common. Choose one that is hard to guess."),
    "contains_identifier": N_("The password must not contain your email address, phone number or the service name."),
    "has_spaces": N_("The password must not contain spaces."),
}


def too_many_page(request: Request, retry_after: int | None, *, ui_locales: str | None = None) -> HTMLResponse:
    """429 with Retry-After (RFC 6585 §4): the same page whatever the limit or the account."""
    response = error_page(request, TOO_MANY, status_code=429, ui_locales=ui_locales)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "0.0.0.0"
