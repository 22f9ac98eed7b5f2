"""What every grant receives, and the steps they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import User
from idp.accounts.service import user_claims
from idp.db import utcnow
from idp.oauth.errors import InvalidGrant, InvalidScope
from idp.oauth.models import Client, Grant, RefreshToken
from idp.orgs import claims as org_claims

if TYPE_CHECKING:
    from idp.services import Services


@dataclass
class TokenRequest:
    db: AsyncSession
    client: Client
    params: dict[str, str]
    services: Services


def token_response(access_token: str, expires_in: int, scope: str, **extra: str | None) -> dict:
    """RFC 6749 §5.1 successful response."""
    body = {"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in, "scope": scope}
    body.update({name: value for name, value in extra.items() if value is not None})
    return body


def narrowed_scope(requested: str | None, granted: str) -> str:
    """RFC 6749 §6: a refresh request may ask for the same or fewer scopes, never more."""
    if requested is None:
        return granted
    asked, allowed = requested.split(), set(granted.split())
    if not set(asked) <= allowed:
        raise InvalidScope("scope exceeds what was granted")
    return " ".join(dict.fromkeys(asked))


async def revoke_grant(db: AsyncSession, grant_id: str | None) -> None:
    """End a token family: the grant (so its access tokens fail introspection and userinfo) and
    every refresh token in it."""
    if grant_id is None:
        return
    now = utcnow()
    await db.execute(update(Grant).where(Grant.id == grant_id, Grant.revoked_at.is_(None)).values(revoked_at=now))
    await db.execute(update(RefreshToken).where(RefreshToken.grant_id == grant_id,
                                                RefreshToken.used_at.is_(None)).values(used_at=now))


async def organisation_claims(request: TokenRequest, grant: Grant, scope: str, *,
                              enforce_policy: bool) -> dict:
    """The grant's organisation claims (orgs/claims.py), read from the database now. A person no
    longer a member, without the product's licence, or (on refresh) whose session no longer
    satisfies the organisation's policy gets invalid_grant: the grant no longer holds for them."""
    if grant.org_id is None and request.client.product_id is None:
        return {}  # the common case costs no query
    try:
        return await org_claims.for_grant(request.services, request.db, grant=grant, client=request.client,
                                          scopes=set(scope.split()), enforce_policy=enforce_policy)
    except org_claims.OrgRefused as refused:
        raise InvalidGrant(str(refused)) from None


def user_tokens(request: TokenRequest, grant: Grant, user: User, scope: str,
                nonce: str | None, org: dict | None = None) -> tuple[str, str | None]:
    """The access token and, when `openid` was granted, the ID token for a person's grant;
    both carry `org` (the organisation claims) when there are any."""
    minter, client = request.services.minter, request.client
    scopes = set(scope.split())
    access_token = minter.access_token(client_id=client.client_id, alg=client.access_token_signed_response_alg,
                                       sub=grant.user_id, scope=scope, grant=grant,
                                       extra_claims=org)
    if "openid" not in scopes:
        return access_token, None
    id_token = minter.id_token(
        client_id=client.client_id, alg=client.id_token_signed_response_alg, grant=grant,
        access_token=access_token, extra_claims={**user_claims(user, scopes), **(org or {})}, nonce=nonce,
    )
    return access_token, id_token


def wants_refresh_token(client: Client, scope: str) -> bool:
    """Refresh tokens go to clients allowed the grant that were granted offline_access (OIDC Core §11)."""
    return "refresh_token" in client.grant_types and "offline_access" in scope.split()
