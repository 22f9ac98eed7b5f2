"""The authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2): validate, decide, issue a code.

The pipeline, in the order the specifications demand:
1. client and redirect URI — until both are known good, errors go to an error page and never to
   a redirect (RFC 6749 §4.1.2.1, RFC 9700 §4.11.2);
2. everything else — errors are redirected to the client with `state` and `iss` (RFC 9207);
3. the decision — issue a code now, or hand an interaction (login, consent) to the pages, which
   resume it through `after_authentication` / `after_consent`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from idp.db import utcnow
from idp.flows.models import AuthorizationFlow, FlowState
from idp.keys.service import TokenInvalid
from idp.oauth import consent
from idp.oauth.clients import redirect_uri_matches
from idp.oauth.errors import (
    AccessDenied, ConsentRequired, InteractionRequired, InvalidRequest, InvalidScope, LoginRequired, OAuthError,
    RequestNotSupported, RequestUriNotSupported, UnauthorizedClient, UnsupportedResponseType,
)
from idp.oauth.models import AuthorizationCode, Client
from idp.oauth.params import MAX_PARAMETER_LENGTH, repeated
from idp.security import random_token, token_hash
from idp.sessions.models import BrowserSession

if TYPE_CHECKING:
    from idp.flows.service import Browser
    from idp.services import Services

PROMPTS = {"none", "login", "consent", "select_account"}
# Authentication context classes: one factor of any kind (password, or a code by SMS or email),
# or two different ones. A client asking acr_values=urn:idp:acr:mfa gets a second-factor step.
ACR_SINGLE_FACTOR = "urn:idp:acr:1fa"
ACR_MFA = "urn:idp:acr:mfa"
ACR_VALUES = (ACR_SINGLE_FACTOR, ACR_MFA)
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # BASE64URL(SHA-256(verifier)), RFC 7636 §4.2
_MAX_AGE = re.compile(r"[0-9]{1,9}")


class ErrorPage(Exception):
    """An authorization error that must not be redirected: unknown client or bad redirect URI."""


class ClientRedirectError(Exception):
    """An OAuth error to be sent back to the client's (validated) redirect URI."""

    def __init__(self, error: OAuthError, redirect_uri: str, state: str | None, issuer: str) -> None:
        super().__init__(error.error)
        params = {**error.as_dict(), "iss": issuer}
        if state is not None:
            params["state"] = state
        self.location = add_query(redirect_uri, params)


@dataclass
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    redirect_uri_sent: bool
    scopes: list[str]
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    prompt: list[str] = field(default_factory=list)
    max_age: int | None = None
    login_hint: str | None = None
    hint_sub: str | None = None  # sub of a valid id_token_hint
    ui_locales: str | None = None
    acr_values: list[str] = field(default_factory=list)
    # The organisation the client names (id or handle); see flows/organisation.py.
    organization: str | None = None

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)


@dataclass
class Redirect:
    """Send the browser to the client with this URL (a code or an error)."""

    location: str


@dataclass
class Interaction:
    """Send the browser to a page of ours: `kind` is a FlowState ("login" or "consent")."""

    flow_id: str
    kind: str


def wants_mfa(request: AuthorizationRequest) -> bool:
    """The client asked for a second factor. acr_values lists what it would accept in order of
    preference (OIDC Core §3.1.2.1); only a list without the single-factor class demands more."""
    return ACR_MFA in request.acr_values and ACR_SINGLE_FACTOR not in request.acr_values


def add_query(uri: str, params: dict[str, str]) -> str:
    """Append response parameters, keeping a query the registered URI already has (RFC 6749 §3.1.2)."""
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


class AuthorizationService:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.issuer = services.settings.issuer

    # ---- 1 + 2: validation ------------------------------------------------------------------

    async def validate(self, db: AsyncSession, items: list[tuple[str, str]]) -> AuthorizationRequest:
        twice = repeated(items)
        params = {name: value for name, value in reversed(items) if value != ""}

        client_id = params.get("client_id")
        if "client_id" in twice or client_id is None:
            raise ErrorPage("client_id is missing or repeated")
        client = await self.s.clients.get_cached(db, client_id)
        if client is None:
            raise ErrorPage("unknown client")
        if "redirect_uri" in twice:
            raise ErrorPage("redirect_uri is repeated")
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is not None:
            if not redirect_uri_matches(client, redirect_uri):
                raise ErrorPage("redirect_uri is not registered for this client")
        elif len(client.redirect_uris) == 1 and "openid" not in params.get("scope", "").split():
            redirect_uri = client.redirect_uris[0]  # RFC 6749 §3.1.2.3; OIDC always requires it
        else:
            raise ErrorPage("redirect_uri is required")

        state = params.get("state") if "state" not in twice else None

        def fail(error: OAuthError) -> ClientRedirectError:
            return ClientRedirectError(error, redirect_uri, state, self.issuer)

        if "id_token_hint" in params:
            await self.s.keyring.load(db)
        try:
            return self._validate_rest(client, params, twice, redirect_uri, state)
        except OAuthError as error:
            raise fail(error) from None

    def _validate_rest(self, client: Client, params: dict[str, str], twice: set[str],
                       redirect_uri: str, state: str | None) -> AuthorizationRequest:
        if twice:
            raise InvalidRequest(f"parameters repeated: {', '.join(sorted(twice))}")
        too_long = [name for name, value in params.items() if len(value) > MAX_PARAMETER_LENGTH]
        if too_long:
            raise InvalidRequest(f"parameter too long: {too_long[0]}")
        if any("\x00" in value for value in params.values()):
            # It would only fail later, when PostgreSQL stores the code's nonce or scope.
            raise InvalidRequest("parameters must not contain NUL characters")
        if "request" in params:
            raise RequestNotSupported("request objects are not supported")
        if "request_uri" in params:
            raise RequestUriNotSupported("request_uri is not supported")
        response_type = params.get("response_type")
        if response_type is None:
            raise InvalidRequest("response_type is required")
        if response_type != "code":
            # Code flow only: no implicit or hybrid (RFC 9700 §2.1.2).
            raise UnsupportedResponseType("only response_type=code is supported")
        if "authorization_code" not in client.grant_types:
            raise UnauthorizedClient("client may not use the authorization code grant")
        if params.get("response_mode", "query") != "query":
            raise InvalidRequest("only response_mode=query is supported")

        scope = params.get("scope")
        if scope is None:
            raise InvalidScope("scope is required")
        scopes = list(dict.fromkeys(scope.split()))
        unknown = [s for s in scopes if s not in client.scopes]
        if unknown:
            raise InvalidScope(f"scope not allowed for this client: {' '.join(unknown)}")

        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if method is not None and method != "S256":
            raise InvalidRequest("code_challenge_method must be S256")
        if challenge is None:
            if method is not None:
                raise InvalidRequest("code_challenge_method without code_challenge")
            if client.client_type == "public":
                raise InvalidRequest("PKCE (code_challenge with S256) is required for public clients")
        elif method is None:
            # RFC 7636 §4.3 defaults to "plain", which we refuse.
            raise InvalidRequest("code_challenge_method=S256 is required")
        elif not _CHALLENGE.fullmatch(challenge):
            raise InvalidRequest("code_challenge must be a base64url SHA-256 value")

        prompt = list(dict.fromkeys(params.get("prompt", "").split()))
        if set(prompt) - PROMPTS:
            raise InvalidRequest("unsupported prompt value")
        if "none" in prompt and len(prompt) > 1:
            raise InvalidRequest("prompt=none cannot be combined with other values")

        max_age = params.get("max_age")
        if max_age is not None and not _MAX_AGE.fullmatch(max_age):  # str.isdigit() accepts "²"
            raise InvalidRequest("max_age must be a non-negative integer")

        hint_sub = None
        if "id_token_hint" in params:
            try:
                claims = self.s.keyring.verify(params["id_token_hint"], typ="jwt", issuer=self.issuer,
                                             check_expiry=False)
            except TokenInvalid:
                raise InvalidRequest("id_token_hint is not an ID token we issued") from None
            hint_sub = claims.get("sub")

        return AuthorizationRequest(
            client_id=client.client_id, redirect_uri=redirect_uri,
            redirect_uri_sent="redirect_uri" in params, scopes=scopes, state=state,
            nonce=params.get("nonce"), code_challenge=challenge, prompt=prompt,
            max_age=int(max_age) if max_age is not None else None,
            login_hint=params.get("login_hint"), hint_sub=hint_sub,
            ui_locales=params.get("ui_locales"), acr_values=params.get("acr_values", "").split(),
            organization=params.get("organization"),
        )

    # ---- 3: the decision -----------------------------------------------------------------------

    async def begin(self, db: AsyncSession, items: list[tuple[str, str]],
                    session: BrowserSession | None, browser: Browser | None = None) -> Redirect | Interaction:
        request = await self.validate(db, items)
        client = await self.s.clients.get_cached(db, request.client_id)
        if session is not None:
            user = await self.s.accounts.get(db, session.user_id)
            if user is None or user.disabled_at is not None:
                session = None  # a disabled account's session counts for nothing: sign in (and be refused)
        # prompt=select_account: for a client that asks for an organisation the choice to make
        # again is the organisation (the chooser, with the session kept); otherwise the account.
        select_account = "select_account" in request.prompt and not self.s.flows.organisation.applies(request, client)
        login_needed = (
            session is None
            or "login" in request.prompt or select_account
            or (request.max_age is not None
                and time.time() - session.auth_time.timestamp() > request.max_age)
            or (request.hint_sub is not None and request.hint_sub != session.user_id)
        )
        step_up_needed = not login_needed and wants_mfa(request) and "mfa" not in session.amr
        if "none" in request.prompt:
            if login_needed:
                raise self._to_client(request, LoginRequired("the user is not signed in"))
            if step_up_needed:
                raise self._to_client(request, InteractionRequired("a second factor is needed"))
            if not await consent.covers(db, session.user_id, client, request.scopes):
                raise self._to_client(request, ConsentRequired("the user has not consented"))
            org_id = None
            if self.s.flows.organisation.applies(request, client):
                decided = await self.s.flows.organisation.decide(db, request, client, session, None, browser)
                if isinstance(decided, (Redirect, Interaction)):
                    return decided  # an error for the client: prompt=none allows no page
                org_id = decided.org_id
            return Redirect(await self._issue_code(db, request, session, org_id))
        if login_needed:
            return await self._new_flow(db, request, FlowState.LOGIN, None, browser)
        if step_up_needed:
            step_up = await self.s.flows.start_step_up(db, request, session, browser)
            if step_up is not None:
                return step_up
        return await self.after_authentication(db, request, client, session, None, browser)

    async def after_authentication(self, db: AsyncSession, request: AuthorizationRequest,
                                   client: Client, session: BrowserSession,
                                   flow: AuthorizationFlow | None,
                                   browser: Browser | None = None) -> Redirect | Interaction:
        """The person is known: ask for consent if needed, else issue the code."""
        if request.hint_sub is not None and request.hint_sub != session.user_id:
            # OIDC Core §3.1.2.1 id_token_hint: the client asked about one person and another
            # signed in; it must not receive a code for someone it did not ask about.
            if flow is not None:
                flow.state = FlowState.DENIED
            return Redirect(self._to_client(request, LoginRequired(
                "the signed-in user is not the one named by id_token_hint")).location)
        org_id = None
        if self.s.flows.organisation.applies(request, client):
            # The organisation step (flows/organisation.py): choose, apply its policy, check the
            # product's licence. It may hand over to a page first.
            decided = await self.s.flows.organisation.decide(db, request, client, session, flow, browser)
            if isinstance(decided, (Redirect, Interaction)):
                return decided
            org_id, flow = decided.org_id, decided.flow
        needs_consent = "consent" in request.prompt or not await consent.covers(
            db, session.user_id, client, request.scopes)
        if needs_consent:
            if flow is None:
                return await self._new_flow(db, request, FlowState.CONSENT, session, browser,
                                            org={"org": org_id, "org_user": session.user_id})
            flow.state, flow.user_id, flow.session_id = FlowState.CONSENT, session.user_id, session.id
            return Interaction(flow.id, FlowState.CONSENT)
        if flow is not None:
            flow.state = FlowState.COMPLETE
        return Redirect(await self._issue_code(db, request, session, org_id))

    async def after_consent(self, db: AsyncSession, request: AuthorizationRequest,
                            flow: AuthorizationFlow, session: BrowserSession, allow: bool) -> Redirect:
        if not allow:
            flow.state = FlowState.DENIED
            return Redirect(self._to_client(request, AccessDenied("the user denied the request")).location)
        await consent.remember(db, session.user_id, request.client_id, request.scopes)
        flow.state = FlowState.COMPLETE
        data = flow.data or {}
        org_id = data.get("org") if data.get("org_user") == session.user_id else None
        return Redirect(await self._issue_code(db, request, session, org_id))

    # ---- helpers -------------------------------------------------------------------------------

    def _to_client(self, request: AuthorizationRequest, error: OAuthError) -> ClientRedirectError:
        return ClientRedirectError(error, request.redirect_uri, request.state, self.issuer)

    def error_location(self, request: AuthorizationRequest, error: OAuthError) -> str:
        """The client's redirect URI carrying `error`, `state` and `iss` (RFC 6749 §4.1.2.1, RFC 9207)."""
        return self._to_client(request, error).location

    def denied_location(self, request: AuthorizationRequest) -> str:
        return self.error_location(request, AccessDenied("the user has no access to this application"))

    async def _new_flow(self, db: AsyncSession, request: AuthorizationRequest, state: FlowState,
                        session: BrowserSession | None, browser: Browser | None,
                        org: dict | None = None) -> Interaction:
        flow = await self.s.flows.new_flow(db, request, state, browser=browser.cookie if browser else None,
                                           session=session, **(org or {}))
        return Interaction(flow.id, state)

    async def _issue_code(self, db: AsyncSession, request: AuthorizationRequest,
                          session: BrowserSession, org_id: str | None = None) -> str:
        code = random_token("idpac_")
        db.add(AuthorizationCode(
            code_hash=token_hash(code), client_id=request.client_id, user_id=session.user_id,
            session_id=session.id, redirect_uri=request.redirect_uri if request.redirect_uri_sent else None,
            scope=request.scope, nonce=request.nonce, code_challenge=request.code_challenge,
            auth_time=session.auth_time, amr=session.amr, methods=session.methods, acr=session.acr,
            org_id=org_id,
            expires_at=utcnow() + timedelta(seconds=self.s.settings.code_ttl),
        ))
        await db.flush()
        params = {"code": code}
        if request.state is not None:
            params["state"] = request.state
        params["iss"] = self.issuer  # RFC 9207 §2
        return add_query(request.redirect_uri, params)
