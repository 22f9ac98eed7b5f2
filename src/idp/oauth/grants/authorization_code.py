"""RFC 6749 §4.1.3 authorization code grant, with PKCE (RFC 7636) and code-replay revocation."""

from __future__ import annotations

import base64
import hashlib
import re

from sqlalchemy import select, update

from idp.db import new_id, utcnow
from idp.oauth.errors import InvalidGrant, InvalidRequest
from idp.oauth.grants.base import (
    TokenRequest, organisation_claims, revoke_grant, token_response, user_tokens, wants_refresh_token,
)
from idp.oauth.models import AuthorizationCode, Grant
from idp.security import same, token_hash

GRANT_TYPE = "authorization_code"

# RFC 7636 §4.1: code-verifier = 43*128unreserved
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def _check_pkce(code: AuthorizationCode, verifier: str | None) -> None:
    if code.code_challenge is None:
        if verifier is not None:
            # RFC 9700 §4.8.2: a verifier for a code issued without a challenge is a downgrade.
            raise InvalidGrant("code_verifier sent but the authorization request had no code_challenge")
        return
    if verifier is None:
        raise InvalidGrant("code_verifier is required")
    if not _VERIFIER.match(verifier):
        raise InvalidRequest("code_verifier must be 43-128 unreserved characters")
    if not same(s256(verifier), code.code_challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")


async def handle(request: TokenRequest) -> dict:
    db, client, params, services = request.db, request.client, request.params, request.services
    code_value = params.get("code")
    if code_value is None:
        raise InvalidRequest("code is required")
    code_hash = token_hash(code_value)
    code = (await db.execute(select(AuthorizationCode).where(AuthorizationCode.code_hash == code_hash))).scalar_one_or_none()
    now = utcnow()
    if code is None:
        raise InvalidGrant("unknown authorization code")
    if code.used_at is not None:
        # RFC 6749 §4.1.2: "If an authorization code is used more than once, the authorization
        # server MUST deny the request and SHOULD revoke (when possible) all tokens previously
        # issued based on that authorization code."
        await revoke_grant(db, code.grant_id)
        raise InvalidGrant("authorization code already used", keeps_changes=True)
    if code.client_id != client.client_id:
        raise InvalidGrant("authorization code was issued to another client")
    if code.expires_at <= now:
        raise InvalidGrant("authorization code expired")
    if code.redirect_uri is not None and params.get("redirect_uri") != code.redirect_uri:
        # RFC 6749 §4.1.3: required and identical if it was in the authorization request.
        raise InvalidGrant("redirect_uri does not match the authorization request")
    _check_pkce(code, params.get("code_verifier"))

    user = await services.accounts.get(db, code.user_id)
    if user is None:
        raise InvalidGrant("the account no longer exists")
    if user.disabled_at is not None:  # disabled after the code was issued: the code is left unused
        raise InvalidGrant("the account is disabled")

    # Consume atomically: of two parallel redemptions exactly one updates the row. The checks
    # above ran first so that bad input never burns a code.
    grant_id = new_id()
    consumed = await db.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.code_hash == code_hash, AuthorizationCode.used_at.is_(None))
        .values(used_at=now, grant_id=grant_id)
    )
    if consumed.rowcount != 1:
        winner = (await db.execute(select(AuthorizationCode.grant_id).where(
            AuthorizationCode.code_hash == code_hash))).scalar_one_or_none()
        await revoke_grant(db, winner)
        raise InvalidGrant("authorization code already used", keeps_changes=True)
    grant = Grant(id=grant_id, client_id=client.client_id, user_id=code.user_id,
                  session_id=code.session_id, scope=code.scope, auth_time=code.auth_time,
                  amr=code.amr, methods=code.methods, acr=code.acr, org_id=code.org_id)
    db.add(grant)

    # The organisation chosen at sign-in, as it stands now (the membership may have changed).
    org = await organisation_claims(request, grant, code.scope, enforce_policy=False)
    access_token, id_token = user_tokens(request, grant, user, code.scope, code.nonce, org)
    minter = services.minter
    refresh = minter.new_refresh_token(db, grant, code.scope, now) if wants_refresh_token(client, code.scope) else None
    return token_response(access_token, minter.access_ttl, code.scope, id_token=id_token, refresh_token=refresh)
