"""Who calls the API: a client with a client-credentials access token from our own /token.

`Depends(scope("idp:orgs:write"))` gives the route an `ApiCaller` or answers 401 (no token, or not
a live one of ours) or 403 naming the missing scope (RFC 6750 §3.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request

from idp.api.problems import Problem
from idp.api.scopes import SCOPES
from idp.audit.service import Actor


@dataclass(frozen=True)
class ApiCaller:
    client_id: str
    scopes: frozenset[str]
    # Set for a client bound to one organisation: it sees and changes that organisation only.
    org_id: str | None

    @property
    def actor(self) -> Actor:
        return Actor.client(self.client_id, self.org_id)

    @property
    def platform(self) -> bool:
        """A platform client (not bound to an organisation): may use platform-wide resources."""
        return self.org_id is None


def _unauthorized(detail: str, error: str | None = "invalid_token") -> Problem:
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return Problem("unauthorized", detail, headers={"WWW-Authenticate": challenge})


async def authenticate(request: Request) -> ApiCaller:
    header = request.headers.get("authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise _unauthorized("send an access token: Authorization: Bearer <token>", error=None)
    services = request.app.state.services

    async def look_up(db):
        claims = await services.resources.access_token_claims(db, token.strip())
        if claims is None:
            return None, None
        return claims, await services.clients.get(db, claims.get("client_id"))

    claims, client = await services.db.run(look_up)
    if claims is None or client is None:
        raise _unauthorized("the access token is invalid, expired or revoked")
    if claims.get("sub") != client.client_id:
        # A token a person's sign-in produced speaks for that person, not for an integrator.
        raise _unauthorized("the API takes client-credentials tokens only")
    # The token's scopes as far as the client still has them: a scope taken from the client (a
    # PATCH, the CLI) ends at once, not when its tokens expire.
    granted = frozenset(claims.get("scope", "").split()) & frozenset(client.scopes)
    return ApiCaller(client.client_id, granted, client.org_id)


def scope(required: str):
    """A dependency: the caller, if its token carries `required`."""
    if required not in SCOPES:
        raise ValueError(f"unknown API scope {required!r}")

    async def dependency(caller: ApiCaller = Depends(authenticate)) -> ApiCaller:
        if required not in caller.scopes:
            raise Problem("insufficient-scope", f"this request needs the scope {required}",
                          missing_scope=required, headers={
                              "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{required}"'})
        return caller

    dependency.required_scope = required  # api/openapi.py documents each operation's scope from it
    return dependency


def require_platform(caller: ApiCaller) -> None:
    """Platform-wide resources (accounts, clients, products) are not for an organisation's own
    integration: it gets 404, as for anything outside its organisation."""
    if not caller.platform:
        raise Problem("not-found", "not found")
