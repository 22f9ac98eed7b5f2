"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

We redirect to `post_logout_redirect_uri` only when it is registered for the client, and only
after a valid `id_token_hint` for the current session or the person's own confirmation (§2, §3:
"the OP ... SHOULD ask the End-User whether to log out").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from idp.keys.service import TokenInvalid
from idp.oauth.authorization import add_query
from idp.oauth.params import repeated
from idp.sessions.models import BrowserSession

if TYPE_CHECKING:
    from idp.services import Services

FORWARDED = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales", "logout_hint")


class LogoutError(Exception):
    """A logout request we refuse to act on (shown on an error page, never redirected)."""


@dataclass
class LogoutRequest:
    params: dict[str, str]  # the request's own parameters, to carry through a confirmation form
    client_id: str | None = None
    post_logout_redirect_uri: str | None = None
    state: str | None = None
    hint_sub: str | None = None
    hint_sid: str | None = None

    @property
    def has_valid_hint(self) -> bool:
        return self.hint_sub is not None


class LogoutService:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def validate(self, db: AsyncSession, items: list[tuple[str, str]]) -> LogoutRequest:
        twice = repeated(items)
        if twice:
            raise LogoutError("a parameter is repeated")
        params = {name: value for name, value in items if value != "" and name in FORWARDED}
        request = LogoutRequest(params=params, state=params.get("state"))
        client_id = params.get("client_id")
        if "id_token_hint" in params:
            await self.s.keyring.load(db)
            try:
                # typ "JWT": an ID token, never an access token (typ "at+jwt") passed off as one.
                claims = self.s.keyring.verify(params["id_token_hint"], typ="jwt",
                                               issuer=self.s.settings.issuer, check_expiry=False)
            except TokenInvalid:
                raise LogoutError("the id_token_hint is not an ID token we issued") from None
            audience = claims.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
            if client_id is not None and client_id not in audiences:
                raise LogoutError("client_id does not match the id_token_hint")
            client_id = client_id or (audiences[0] if len(audiences) == 1 else None)
            request.hint_sub, request.hint_sid = claims.get("sub"), claims.get("sid")
        request.client_id = client_id
        uri = params.get("post_logout_redirect_uri")
        if uri is not None:
            client = await self.s.clients.get(db, client_id)
            if client is None or uri not in client.post_logout_redirect_uris:
                raise LogoutError("post_logout_redirect_uri is not registered for this client")
            request.post_logout_redirect_uri = uri
        return request

    def needs_confirmation(self, request: LogoutRequest, session: BrowserSession | None) -> bool:
        if not request.has_valid_hint:
            return True
        if session is None:
            return False
        return not (request.hint_sid == session.id or (request.hint_sid is None and request.hint_sub == session.user_id))

    async def log_out(self, db: AsyncSession, request: LogoutRequest,
                      session: BrowserSession | None) -> str | None:
        """End the session; return where to send the browser, if anywhere."""
        if session is None and request.hint_sid is not None:
            # No session cookie came (a cross-site POST does not carry a SameSite=Lax cookie):
            # the verified hint names the session to end.
            hinted = await self.s.sessions.get(db, request.hint_sid)
            if hinted is not None and hinted.user_id == request.hint_sub:
                session = hinted
        if session is not None:
            await self.s.sessions.end(db, session.id)
        if request.post_logout_redirect_uri is None:
            return None
        params = {"state": request.state} if request.state is not None else {}
        return add_query(request.post_logout_redirect_uri, params) if params else request.post_logout_redirect_uri
