"""Minting tokens: RFC 9068 JWT access tokens, OpenID Connect ID tokens, opaque refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import time
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from idp.db import new_id, utcnow
from idp.keys.service import KeyRing
from idp.oauth.models import Grant, RefreshToken
from idp.security import random_token, token_hash

# A client's access tokens are signed with its access_token_signed_response_alg, by default
# this: 30–40 µs to sign on the event loop (ARCHITECTURE.md), verifiable offline. RS256 (a
# 2048-bit RSA signature) costs several times as much: for resource servers that need it.
DEFAULT_ACCESS_TOKEN_ALG = "ES256"

# The access token's jti is "<grant id>.<random>" for tokens of a grant, so revoking the grant
# (code replay, refresh replay, revocation) can be checked from the token alone.
def grant_of_jti(jti: str | None) -> str | None:
    if not jti or "." not in jti:
        return None
    return jti.split(".", 1)[0]


def _left_half_hash(value: str, alg: str) -> str:
    """OIDC Core §3.1.3.6 at_hash: left half of the hash used by the ID token's alg, base64url.
    Ed25519 signs with SHA-512 internally, and the conformance suite hashes with SHA-512."""
    digest = (hashlib.sha512 if alg in ("Ed25519", "EdDSA") else hashlib.sha256)(value.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


class TokenMinter:
    def __init__(self, keyring: KeyRing, *, issuer: str, access_ttl: int, id_ttl: int,
                 refresh_ttl: int) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.access_ttl = access_ttl
        self.id_ttl = id_ttl
        self.refresh_ttl = timedelta(seconds=refresh_ttl)

    def access_token(self, *, client_id: str, alg: str, sub: str, scope: str, grant: Grant | None = None,
                     audience: str | None = None, extra_claims: dict | None = None) -> str:
        """RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti; header typ "at+jwt", signed
        with `alg`, the client's access_token_signed_response_alg (§2.1: servers "MUST include
        RS256 among their supported signature algorithms"; ES256 stays our default, it is cheaper).
        `extra_claims` (the organisation's, orgs/claims.py) never override the registered ones."""
        now = int(time.time())
        claims = {
            **(extra_claims or {}),
            "iss": self.issuer, "sub": sub, "aud": audience or client_id, "client_id": client_id,
            "iat": now, "exp": now + self.access_ttl, "scope": scope,
            "jti": f"{grant.id}.{new_id()}" if grant else new_id(),
        }
        if grant is not None:
            claims["auth_time"] = int(grant.auth_time.timestamp())
            claims["amr"] = grant.amr
            if grant.acr:
                claims["acr"] = grant.acr
            if grant.session_id:
                claims["sid"] = grant.session_id
        return self.keyring.sign(claims, alg=alg, typ="at+jwt")

    def id_token(self, *, client_id: str, alg: str, grant: Grant, access_token: str,
                 extra_claims: dict, nonce: str | None) -> str:
        """OIDC Core §2 and §3.1.3.6."""
        now = int(time.time())
        claims = {
            **extra_claims,
            "iss": self.issuer, "sub": grant.user_id, "aud": client_id, "azp": client_id,
            "iat": now, "exp": now + self.id_ttl, "auth_time": int(grant.auth_time.timestamp()),
            "amr": grant.amr, "at_hash": _left_half_hash(access_token, alg),
        }
        if grant.acr:
            claims["acr"] = grant.acr
        if grant.session_id:
            claims["sid"] = grant.session_id
        if nonce is not None:
            claims["nonce"] = nonce
        return self.keyring.sign(claims, alg=alg, typ="JWT")

    def new_refresh_token(self, db: AsyncSession, grant: Grant, scope: str,
                          now: datetime | None = None) -> str:
        """An opaque refresh token (256 bits, stored hashed) in the grant's family."""
        token, row = self.refresh_token_row(grant, scope, now)
        db.add(RefreshToken(**row))
        return token

    def refresh_token_row(self, grant: Grant, scope: str, now: datetime | None = None) -> tuple[str, dict]:
        """A new refresh token and its `refresh_tokens` row, for callers that insert it themselves."""
        token, hashed, expires_at = self.refresh_token_value(now)
        return token, {"token_hash": hashed, "grant_id": grant.id, "client_id": grant.client_id,
                       "scope": scope, "expires_at": expires_at}

    def refresh_token_value(self, now: datetime | None = None) -> tuple[str, str, datetime]:
        """A new refresh token: its value, the hash stored for it and when it expires."""
        token = random_token("idprt_")
        return token, token_hash(token), (now or utcnow()) + self.refresh_ttl
