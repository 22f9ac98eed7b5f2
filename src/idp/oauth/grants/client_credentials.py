"""RFC 6749 §4.4 client credentials: a confidential client acting for itself.

No refresh token (§4.4.3: "A refresh token SHOULD NOT be included") and no ID token (there is no
end-user)."""

from __future__ import annotations

from idp.oauth.errors import InvalidScope, UnauthorizedClient
from idp.oauth.grants.base import TokenRequest, token_response

GRANT_TYPE = "client_credentials"
USER_SCOPES = {"openid", "profile", "email", "offline_access", "organization", "organization:*"}


async def handle(request: TokenRequest) -> dict:
    client, params = request.client, request.params
    if client.client_type != "confidential":
        raise UnauthorizedClient("client_credentials needs a confidential client")
    allowed = [scope for scope in client.scopes if scope not in USER_SCOPES]
    requested = params.get("scope")
    scopes = requested.split() if requested is not None else allowed
    if not set(scopes) <= set(allowed):
        raise InvalidScope("scope not allowed for this client")
    scope = " ".join(dict.fromkeys(scopes))
    minter = request.services.minter
    access_token = minter.access_token(client_id=client.client_id, alg=client.access_token_signed_response_alg,
                                       sub=client.client_id, scope=scope)
    return token_response(access_token, minter.access_ttl, scope)
