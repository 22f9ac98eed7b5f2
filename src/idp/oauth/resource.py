"""Endpoints that read tokens: userinfo (OIDC Core §5.3), introspection (RFC 7662) and
revocation (RFC 7009)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.service import user_claims
from idp.db import utcnow
from idp.keys.service import TokenInvalid
from idp.oauth.errors import InsufficientScope, InvalidToken
from idp.oauth.grants.base import revoke_grant
from idp.oauth.models import Client, Grant, RefreshToken, RevokedAccessToken
from idp.oauth.tokens import grant_of_jti
from idp.orgs import claims as org_claims
from idp.security import token_hash

if TYPE_CHECKING:
    from idp.services import Services


class ResourceService:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def access_token_claims(self, db: AsyncSession, token: str) -> dict | None:
        """Claims of a live access token we issued, or None (expired, revoked, not ours)."""
        await self.s.keyring.load(db)
        try:
            claims = self.s.keyring.verify(token, typ="at+jwt", issuer=self.s.settings.issuer)
        except TokenInvalid:
            return None
        jti = claims.get("jti")
        if not isinstance(jti, str) or await db.get(RevokedAccessToken, jti) is not None:
            return None
        grant_id = grant_of_jti(jti)
        if grant_id is not None:
            grant = await db.get(Grant, grant_id)
            if grant is None or grant.revoked_at is not None:
                return None
        elif await self.s.clients.get(db, claims.get("client_id")) is None:
            return None  # a client_credentials token of a client deleted since
        return claims

    async def userinfo(self, db: AsyncSession, token: str | None) -> dict:
        if not token:
            raise InvalidToken("access token required")
        claims = await self.access_token_claims(db, token)
        if claims is None:
            raise InvalidToken("access token invalid, expired or revoked")
        scopes = set(claims.get("scope", "").split())
        if "openid" not in scopes:
            raise InsufficientScope("the openid scope is required")
        user = await self.s.accounts.get(db, claims["sub"])
        if user is None:
            raise InvalidToken("the account no longer exists")
        result = user_claims(user, scopes)
        if scopes & {org_claims.ORG_SCOPE, org_claims.ALL_ORGS_SCOPE}:
            # The organisation as it stands now, not as the access token (minutes old) says.
            grant_id = grant_of_jti(claims.get("jti"))
            grant = await db.get(Grant, grant_id) if grant_id else None
            client = await self.s.clients.get(db, claims.get("client_id"))
            result.update(await org_claims.for_userinfo(self.s, db, grant=grant, client=client, scopes=scopes))
        return result

    async def introspect(self, db: AsyncSession, client: Client, token: str | None) -> dict:
        """RFC 7662 §2.2. Anything not active is just {"active": false}, with no reason given."""
        inactive = {"active": False}
        if not token:
            return inactive
        claims = await self.access_token_claims(db, token)
        if claims is not None:
            return {"active": True, "token_type": "Bearer", **{
                name: claims[name] for name in
                ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "auth_time", "acr", "amr", "sid")
                if name in claims}}
        refresh = await self._live_refresh_token(db, token)
        # A refresh token is only described to the client it was issued to.
        if refresh is None or refresh.client_id != client.client_id:
            return inactive
        grant = await db.get(Grant, refresh.grant_id)
        return {
            "active": True, "token_type": "refresh_token", "scope": refresh.scope,
            "client_id": refresh.client_id, "sub": grant.user_id, "iss": self.s.settings.issuer,
            "exp": int(refresh.expires_at.timestamp()), "iat": int(refresh.created_at.timestamp()),
        }

    async def revoke(self, db: AsyncSession, client: Client, token: str | None) -> None:
        """RFC 7009 §2.1. Revoking a refresh token ends its grant and the grant's access tokens.
        Unknown tokens and tokens of other clients are ignored (§2.2: respond 200 anyway)."""
        if not token:
            return
        refresh = (await db.execute(select(RefreshToken).where(
            RefreshToken.token_hash == token_hash(token)))).scalar_one_or_none()
        if refresh is not None:
            if refresh.client_id == client.client_id:
                await revoke_grant(db, refresh.grant_id)
            return
        claims = await self.access_token_claims(db, token)
        if claims is not None and claims.get("client_id") == client.client_id:
            try:
                async with db.begin_nested():
                    db.add(RevokedAccessToken(jti=claims["jti"],
                                              expires_at=datetime.fromtimestamp(claims["exp"], UTC)))
            except IntegrityError:
                pass  # revoked by a parallel request: the token is revoked either way

    async def _live_refresh_token(self, db: AsyncSession, token: str) -> RefreshToken | None:
        row = (await db.execute(select(RefreshToken).where(
            RefreshToken.token_hash == token_hash(token)))).scalar_one_or_none()
        if row is None or row.used_at is not None or row.expires_at <= utcnow():
            return None
        grant = await db.get(Grant, row.grant_id)
        return row if grant is not None and grant.revoked_at is None else None
