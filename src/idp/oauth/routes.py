"""Protocol endpoints. Each parses the request, calls one service, renders JSON or a redirect."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from idp.db import DATABASE_ERRORS
from idp.oauth.authorization import ClientRedirectError, ErrorPage, Redirect
from idp.oauth.clients import after_authentication
from idp.oauth.errors import InvalidClient, InvalidRequest, InvalidToken, OAuthError
from idp.oauth.params import single_valued
from idp.ratelimit.errors import RateLimited
from idp.ui.login import browser_of, interaction_redirect
from idp.ui.routes import current_session
from idp.ui.web import Csrf, error_page, services, too_many_page

router = APIRouter(include_in_schema=False)

log = logging.getLogger("idp.oauth")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"


def oauth_error_response(error: OAuthError, *, basic_auth: bool = False) -> JSONResponse:
    headers = dict(NO_STORE)
    if isinstance(error, InvalidClient) and basic_auth:
        headers["WWW-Authenticate"] = 'Basic realm="idp"'  # RFC 6749 §5.2
    if isinstance(error, InvalidToken) or error.status_code == 403:
        # RFC 6750 §3
        headers["WWW-Authenticate"] = f'Bearer error="{error.error}"'
    return JSONResponse(error.as_dict(), status_code=error.status_code, headers=headers)


async def _form_items(request: Request) -> list[tuple[str, str]]:
    """RFC 6749 §3.2: token-side requests are application/x-www-form-urlencoded."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM:
        raise InvalidRequest("content type must be application/x-www-form-urlencoded")
    return [(name, str(value)) for name, value in (await request.form()).multi_items()]


# ---- discovery and keys ------------------------------------------------------------------------

class _Document:
    """A JSON document that is the same bytes for every request (ARCHITECTURE.md: serve them
    pre-serialised), answered by a bare ASGI app: no FastAPI request parsing or dependency
    solving. It still passes through the middleware, which adds the security headers, the
    request id and the access log line."""

    def __init__(self, media_type: str, cache_control: str, body: Callable[[Any], Awaitable[bytes]]) -> None:
        self._headers = [(b"content-type", media_type.encode()), (b"cache-control", cache_control.encode()),
                         (b"access-control-allow-origin", b"*")]
        self._body = body

    async def __call__(self, scope, receive, send) -> None:
        body = await self._body(scope["app"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*self._headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


async def _discovery_bytes(app) -> bytes:
    return app.state.discovery_bytes


async def _jwks_bytes(app) -> bytes:
    s = app.state.services
    if s.keyring.stale:  # reloaded every key_cache_seconds: another node may have rotated
        try:
            await s.db.run(s.keyring.load)
        except DATABASE_ERRORS:
            if not s.keyring.loaded:
                raise  # nothing to serve yet: the outage answer (503)
            # The set loaded last is still the truth as far as anyone knows (a rotation publishes
            # the next key long before it signs), and relying parties whose cache ran out need it
            # to verify tokens already issued: serve it rather than a 503.
            s.keyring.keep_for_now()  # and ask again in a cache period, not on every request
            log.warning("JWKS served from the cache: the database is unreachable")
    return s.keyring.jwks_bytes


_discovery = _Document("application/json", "public, max-age=3600", _discovery_bytes)
for _path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
    router.add_route(_path, _discovery, methods=["GET"], include_in_schema=False)
# Short cache: a rotation publishes the next key long before it signs, so 5 minutes is safe.
router.add_route("/jwks", _Document("application/jwk-set+json", "public, max-age=300", _jwks_bytes),
                 methods=["GET"], include_in_schema=False)


# ---- authorization endpoint --------------------------------------------------------------------

@router.api_route("/authorize", methods=["GET", "POST"])
async def authorize(request: Request) -> Response:
    s = services(request)
    items = list(request.query_params.multi_items())
    if request.method == "POST":  # OIDC Core §3.1.2.1: GET and POST must both be supported
        items = [(name, str(value)) for name, value in (await request.form()).multi_items()]

    # A flow started here is bound to this browser's CSRF cookie, set now if it has none.
    csrf = Csrf(request)

    async def work(db):
        return await s.authorization.begin(db, items, await current_session(request, db),
                                           browser=browser_of(request, csrf=csrf))

    try:
        outcome = await s.db.run(work)
    except ErrorPage as exc:
        return error_page(request, str(exc))
    except ClientRedirectError as exc:
        return RedirectResponse(exc.location, status_code=303 if request.method == "POST" else 302)
    except RateLimited as exc:  # a step-up whose code could not be sent yet
        return too_many_page(request, exc.retry_after)
    if isinstance(outcome, Redirect):
        return RedirectResponse(outcome.location, status_code=303 if request.method == "POST" else 302)
    response = interaction_redirect(outcome)
    csrf.persist(response)
    return response


# ---- token endpoint ----------------------------------------------------------------------------

@router.post("/token")
async def token(request: Request) -> Response:
    s = services(request)
    authorization = request.headers.get("authorization")
    try:
        items = await _form_items(request)
        body = await s.db.run(lambda db: s.tokens.exchange(db, items, authorization))
    except OAuthError as error:
        return oauth_error_response(error, basic_auth=bool(authorization))
    return JSONResponse(body, headers=NO_STORE)


# ---- userinfo, introspection, revocation -------------------------------------------------------

def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@router.api_route("/userinfo", methods=["GET", "POST"])
async def userinfo(request: Request) -> Response:
    s = services(request)
    token_value = _bearer(request)
    try:
        if token_value is None and request.method == "POST":
            # RFC 6750 §2.2: the form-encoded body parameter, when no header is used.
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type == FORM:
                token_value = single_valued(await _form_items(request)).get("access_token")
        claims = await s.db.run(lambda db: s.resources.userinfo(db, token_value))
    except OAuthError as error:
        if not isinstance(error, InvalidToken) and error.status_code == 400:
            error = InvalidToken(error.description)
        return oauth_error_response(error)
    return JSONResponse(claims, headers=NO_STORE)


async def _client_call(request: Request, action) -> Response:
    s = services(request)
    authorization = request.headers.get("authorization")
    try:
        params = single_valued(await _form_items(request))

        async def work(db):
            client = await s.clients.authenticate(db, params, authorization)
            return await after_authentication(db, client, lambda: action(db, client, params.get("token")))

        body = await s.db.run(work)
    except OAuthError as error:
        return oauth_error_response(error, basic_auth=bool(authorization))
    return JSONResponse(body if body is not None else {}, headers=NO_STORE)


@router.post("/introspect")
async def introspect(request: Request) -> Response:
    s = services(request)

    async def action(db, client, token_value):
        if client.client_type != "confidential":
            raise InvalidClient("introspection requires a confidential client")
        return await s.resources.introspect(db, client, token_value)

    return await _client_call(request, action)


@router.post("/revoke")
async def revoke(request: Request) -> Response:
    s = services(request)

    async def action(db, client, token_value):
        if token_value is None:
            raise InvalidRequest("token is required")
        await s.resources.revoke(db, client, token_value)

    return await _client_call(request, action)
