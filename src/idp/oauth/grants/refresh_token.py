"""RFC 6749 §6 refresh, rotated on every use; a replayed token revokes its family (RFC 9700 §4.14.2).

An `organization` parameter (an organisation's id or handle) switches the token family to that
organisation when the person is a member there: `grants.org_id` is updated in place, so the
family (and its revocation) stays one; access tokens already issued keep their old claims until
they expire (5 minutes by default). The organisation claims are recomputed at every refresh: a
removed member's refresh fails with invalid_grant, a demoted one's carries the new role."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update

from idp.accounts.models import User

from idp.db import utcnow
from idp.oauth.errors import InvalidGrant, InvalidRequest
from idp.oauth.grants import refresh_rotation as rotation
from idp.oauth.grants.base import (
    TokenRequest, narrowed_scope, organisation_claims, revoke_grant, token_response, user_tokens,
)
from idp.oauth.models import Grant, RefreshToken
from idp.security import token_hash

GRANT_TYPE = "refresh_token"


# The presented token, its family and its person in one statement (grants.user_id cascades on
# delete: a family never outlives its person). FOR UPDATE (PostgreSQL; SQLite's writers are
# serialised by BEGIN IMMEDIATE): of parallel refreshes with one token, the later ones wait here
# and then see it used, so they go straight to reuse detection.
_PRESENTED = (
    select(RefreshToken, Grant, User)
    .join(Grant, Grant.id == RefreshToken.grant_id)
    .join(User, User.id == Grant.user_id)
    .where(RefreshToken.token_hash == bindparam("presented_hash"))
    .with_for_update(of=RefreshToken)
)
# The spend and the successor as table (Core) statements: the ORM's bulk-update and unit-of-work
# machinery cost several hundred microseconds a refresh, and nothing reads these rows back.
_REFRESH_TOKENS = RefreshToken.__table__
_SPEND = (
    update(_REFRESH_TOKENS)
    .where(_REFRESH_TOKENS.c.token_hash == bindparam("presented_hash"), _REFRESH_TOKENS.c.used_at.is_(None))
    .values(used_at=bindparam("spent_at"))
)
_SUCCESSOR = insert(_REFRESH_TOKENS)


async def handle(request: TokenRequest) -> dict:
    db, client, params, services = request.db, request.client, request.params, request.services
    presented = params.get("refresh_token")
    if presented is None:
        raise InvalidRequest("refresh_token is required")
    presented_hash = token_hash(presented)
    now = utcnow()
    if rotation.applies(params, client.product_id):
        refresh, successor_hash, expires_at = services.minter.refresh_token_value(now)
        rotated = await rotation.rotate(db, presented_hash, client.client_id, now,
                                        rotation.Successor(successor_hash, expires_at), services.db.sqlite_writer)
        if rotated is not None:
            access_token, id_token = user_tokens(request, rotated.grant, rotated.user, rotated.scope, nonce=None)
            return token_response(access_token, services.minter.access_ttl, rotated.scope, id_token=id_token,
                                  refresh_token=refresh)
    # The ORM path: a request the driver path does not cover, and every refusal.
    found = (await db.execute(_PRESENTED, {"presented_hash": presented_hash})).one_or_none()
    if found is None or found.RefreshToken.client_id != client.client_id:
        # Another client's token is treated as unknown: it must not revoke that client's family.
        raise InvalidGrant("unknown refresh token")
    row, grant, user = found.RefreshToken, found.Grant, found.User
    if row.used_at is not None:
        await revoke_grant(db, row.grant_id)
        raise InvalidGrant("refresh token already used; its token family is revoked", keeps_changes=True)
    if row.expires_at <= now:
        raise InvalidGrant("refresh token expired")
    if grant.revoked_at is not None:
        raise InvalidGrant("refresh token revoked")
    scope = narrowed_scope(params.get("scope"), row.scope)
    if user.disabled_at is not None:  # disabling revokes the families too; this holds regardless
        raise InvalidGrant("the account is disabled")
    # Switching organisation without signing in again: the family now speaks for the named
    # organisation. Every check (membership, licence, that organisation's policy) runs before
    # the token is spent, so a refusal changes nothing and the same token still works.
    previous_org = grant.org_id
    if "organization" in params:
        org = await services.orgs.find(db, params["organization"])
        if org is None or await services.orgs.membership(db, org.id, grant.user_id) is None:
            # invalid_grant, not invalid_request: the request is well formed, but this grant
            # (the person's authorisation) does not extend to that organisation (RFC 6749 §5.2).
            # The same answer for an unknown organisation: nothing says whether it exists.
            raise InvalidGrant("the person is not a member of that organisation")
        grant.org_id = org.id
    # Membership, licence and the organisation's policy on the grant's methods by name (an
    # emailed code is not an authenticator app's): any refusal is invalid_grant.
    org_claims = await organisation_claims(request, grant, scope, enforce_policy=True)

    # Rotate atomically: of parallel refreshes with one token, one wins; the others are replays.
    rotated = await db.execute(_SPEND, {"presented_hash": presented_hash, "spent_at": now})
    if rotated.rowcount != 1:
        await revoke_grant(db, row.grant_id)
        raise InvalidGrant("refresh token already used; its token family is revoked", keeps_changes=True)

    # OIDC Core §12.2: the refreshed ID token keeps iss, sub, aud and auth_time, has a new iat
    # and no nonce.
    access_token, id_token = user_tokens(request, grant, user, scope, nonce=None, org=org_claims)
    if grant.org_id != previous_org:
        await db.flush()  # grants.org_id: later refreshes and userinfo follow the switch
    # The new refresh token keeps the original scope, so a narrowed request can widen again later.
    refresh, successor = services.minter.refresh_token_row(grant, row.scope, now)
    await db.execute(_SUCCESSOR, successor)
    return token_response(access_token, services.minter.access_ttl, scope, id_token=id_token, refresh_token=refresh)
