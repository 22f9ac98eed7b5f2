"""Helpers shared by the token-side tests (token, refresh, client auth, races, userinfo,
introspection, revocation): what a relying party or a resource server would call over HTTP, and
a few read-only looks into the database to check the state a request left behind."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import func, select, update

from idp.db import utcnow
from idp.oauth.models import AuthorizationCode, Grant, RefreshToken
from idp.security import token_hash
from tests.conftest import ISSUER
from tests.rp import AuthResult, RegisteredClient, RelyingParty

TOKEN_ENDPOINT = f"{ISSUER}/token"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OFFLINE = "openid offline_access"


@dataclass
class Session:
    """One completed code flow: the client, the user, the authorization result and token body."""

    client: RegisteredClient
    email: str
    sub: str
    result: AuthResult
    body: dict

    @property
    def access_token(self) -> str:
        return self.body["access_token"]

    @property
    def refresh_token(self) -> str:
        return self.body["refresh_token"]


async def authorized(http: httpx.AsyncClient, rp: RelyingParty, client: RegisteredClient | None = None,
                     *, scope: str = "openid profile email", **extra) -> tuple[RegisteredClient, str, str, AuthResult]:
    """A client (registered unless given), a user, and an unredeemed code for them."""
    client = client or await rp.register()
    email, sub = await rp.user()
    async with rp.browser() as browser:  # its own cookie jar: a new user signs in
        result = await rp.sign_in(browser, client, email, scope=scope, **extra)
    assert "code" in result.params, result.location
    return client, email, sub, result


async def signed_in(http: httpx.AsyncClient, rp: RelyingParty, client: RegisteredClient | None = None,
                    *, scope: str = OFFLINE, auth: str = "basic", **extra) -> Session:
    """A completed code exchange (with a refresh token for the default scope)."""
    client, email, sub, result = await authorized(http, rp, client, scope=scope, **extra)
    reply = await rp.exchange(http, client, result, auth=auth)
    assert reply.status_code == 200, reply.text
    return Session(client, email, sub, result, reply.json())


async def refresh(http: httpx.AsyncClient, rp: RelyingParty, client: RegisteredClient, refresh_token: str,
                  *, auth: str = "basic", **extra) -> httpx.Response:
    return await rp.token(http, client, {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra},
                          auth=auth)


def basic(client: RegisteredClient) -> dict[str, str]:
    return {"Authorization": httpx.BasicAuth(client.client_id, client.secret)._auth_header}


async def userinfo(http: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


async def introspect(http: httpx.AsyncClient, client: RegisteredClient, token: str) -> dict:
    reply = await http.post("/introspect", data={"token": token}, headers=basic(client))
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    return reply.json()


async def revoke(http: httpx.AsyncClient, client: RegisteredClient, token: str, **extra) -> httpx.Response:
    return await http.post("/revoke", data={"token": token, **extra}, headers=basic(client))


def assert_error(reply: httpx.Response, status: int, error: str) -> dict:
    assert reply.status_code == status, (reply.status_code, reply.text)
    body = reply.json()
    assert body["error"] == error, body
    assert reply.headers["cache-control"] == "no-store"
    return body


def grant_id_of(access_token: str) -> str:
    """Our access tokens' jti is "<grant id>.<random>" (read without verifying: a test helper)."""
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims["jti"].split(".", 1)[0]


# ---- database looks (the state a request left behind) -----------------------------------------

async def expire_code(services, code: str) -> None:
    async def work(db):
        await db.execute(update(AuthorizationCode).where(AuthorizationCode.code_hash == token_hash(code))
                         .values(expires_at=utcnow() - timedelta(seconds=1)))
    await services.db.run(work)


async def code_row(services, code: str) -> AuthorizationCode | None:
    async def work(db):
        return (await db.execute(select(AuthorizationCode).where(
            AuthorizationCode.code_hash == token_hash(code)))).scalar_one_or_none()
    return await services.db.run(work)


async def expire_refresh_token(services, refresh_token: str) -> None:
    async def work(db):
        await db.execute(update(RefreshToken).where(RefreshToken.token_hash == token_hash(refresh_token))
                         .values(expires_at=utcnow() - timedelta(seconds=1)))
    await services.db.run(work)


async def live_refresh_tokens(services, grant_id: str) -> int:
    """Refresh tokens of a grant that could still be redeemed."""
    async def work(db):
        grant = await db.get(Grant, grant_id)
        if grant is None or grant.revoked_at is not None:
            return 0
        return (await db.execute(select(func.count()).select_from(RefreshToken).where(
            RefreshToken.grant_id == grant_id, RefreshToken.used_at.is_(None),
            RefreshToken.expires_at > utcnow()))).scalar_one()
    return await services.db.run(work)


async def grant_revoked(services, grant_id: str) -> bool:
    async def work(db):
        grant = await db.get(Grant, grant_id)
        return grant is not None and grant.revoked_at is not None
    return await services.db.run(work)


# ---- private_key_jwt ---------------------------------------------------------------------------

@dataclass
class KeyClient:
    client: RegisteredClient
    key: RSAKey | ECKey
    alg: str

    def assertion(self, **overrides) -> str:
        """A client assertion (RFC 7523 §3); an override of None removes that claim."""
        now = int(time.time())
        claims = {"iss": self.client.client_id, "sub": self.client.client_id, "aud": TOKEN_ENDPOINT,
                  "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(16)}
        header = {"alg": self.alg, "kid": self.key.kid}
        header.update(overrides.pop("header", {}))
        header = {name: value for name, value in header.items() if value is not None}
        key = overrides.pop("key", self.key)
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(header, claims, key, algorithms=[header["alg"]])

    def form(self, assertion: str | None = None) -> dict[str, str]:
        return {"client_assertion_type": JWT_BEARER, "client_assertion": assertion or self.assertion()}


def new_key(kind: str = "EC") -> RSAKey | ECKey:
    kid = secrets.token_hex(6)
    if kind == "RSA":
        return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"})
    return ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig"})


async def key_client(rp: RelyingParty, kind: str = "EC", **overrides) -> KeyClient:
    key = new_key(kind)
    client = await rp.register(jwks={"keys": [key.as_dict(private=False)]},
                               token_endpoint_auth_method="private_key_jwt", **overrides)
    return KeyClient(client, key, "RS256" if kind == "RSA" else "ES256")


def unsigned_jwt(header: dict, claims: dict, signature: bytes = b"") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    return ".".join((b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)))


# ---- concurrency -------------------------------------------------------------------------------

async def all_at_once(count: int, request) -> list[httpx.Response]:
    """Run `request()` `count` times concurrently, released together behind an event."""
    start = asyncio.Event()

    async def one():
        await start.wait()
        return await request()

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    await asyncio.sleep(0)
    start.set()
    return await asyncio.gather(*tasks)
