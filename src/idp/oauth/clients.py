"""Clients: registration rules, redirect-URI matching and client authentication (RFC 6749 §2.3)."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import User
from idp.keys.service import TokenInvalid, unverified_claims, verify_with_client_keys
from idp.oauth.errors import InvalidClient, InvalidRequest, OAuthError
from idp.oauth.models import Client, UsedClientAssertion
from idp.orgs.models import Organisation, Product
from idp.security import keyed_hash, random_token, same

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
# Scopes about the person's organisations (orgs/claims.py): `organization` makes the person choose
# one at sign-in and puts it in the tokens; `organization:*` lists every membership in userinfo.
ORG_SCOPES = ("organization", "organization:*")
ID_TOKEN_ALGS = ("RS256", "ES256", "Ed25519", "EdDSA")
T = TypeVar("T")
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# RFC 8252 §7.3: loopback redirects use an IP literal; only the port may vary at request time.
_LOOPBACK = re.compile(r"^http://(127\.0\.0\.1|\[::1\])(?::\d{1,5})?(?=/|\?|$)")


class ClientError(Exception):
    """A client registration that breaks the rules (message says which)."""


@dataclass
class ClientSpec:
    name: str
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    public: bool = False
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])
    scopes: list[str] = field(default_factory=lambda: ["openid", "profile", "email", "offline_access"])
    token_endpoint_auth_method: str | None = None
    first_party: bool = False
    id_token_signed_response_alg: str = "RS256"
    application_type: str | None = None
    jwks: dict | None = None
    client_id: str | None = None
    # The product (id or handle) the client belongs to: its sign-in then needs a licence.
    product: str | None = None
    # The organisation (id or handle) an integrator client is bound to: the REST API then shows
    # it that organisation only.
    org: str | None = None


def _check_redirect_uri(uri: str, native: bool) -> None:
    """RFC 9700 §2.1/§4.1.3 and OIDC Registration: absolute, no fragment, no wildcard, https
    except loopback; native apps may also use a private-use scheme (RFC 8252 §7.1)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not parts.scheme or "#" in uri or "*" in uri or any(c.isspace() for c in uri):
        raise ClientError(f"redirect URI must be absolute, without fragment or wildcard: {uri}")
    if scheme in ("javascript", "data", "vbscript", "file"):
        raise ClientError(f"redirect URI scheme not allowed: {uri}")
    if parts.username is not None or parts.password is not None:
        raise ClientError(f"redirect URI must not contain user information: {uri}")
    if scheme == "https" and parts.hostname:
        return
    if scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        return
    if native and scheme not in ("http", "https") and "." in scheme:
        return  # private-use URI scheme in reverse-domain form, e.g. com.example.app:/cb
    raise ClientError(f"redirect URI must use https (or loopback http): {uri}")


def redirect_uri_matches(client: Client, uri: str) -> bool:
    """Exact string comparison (RFC 9700 §4.1.3). For native clients a loopback URI matches with
    any port (RFC 8252 §7.3): the registered and requested URIs must be equal once the port is
    removed from both."""
    if uri in client.redirect_uris:
        return True
    if client.application_type != "native":
        return False
    requested = _LOOPBACK.match(uri)
    if requested is None:
        return False
    requested_without_port = f"http://{requested.group(1)}{uri[requested.end():]}"
    for registered in client.redirect_uris:
        match = _LOOPBACK.match(registered)
        if match and f"http://{match.group(1)}{registered[match.end():]}" == requested_without_port:
            return True
    return False


class ClientService:
    def __init__(self, secret_key: bytes, *, token_endpoint: str, issuer: str,
                 assertion_max_age: int) -> None:
        self._secret_key = secret_key
        self._audiences = {token_endpoint, issuer}
        self._assertion_max_age = assertion_max_age

    def _hash_secret(self, secret: str) -> str:
        return keyed_hash(self._secret_key, secret)

    # ---- registration ------------------------------------------------------------------------

    async def create(self, db: AsyncSession, spec: ClientSpec) -> tuple[Client, str | None]:
        """Register a client; returns it and its secret (shown once; only a keyed hash is kept)."""
        native = (spec.application_type or ("native" if spec.public else "web")) == "native"
        method = spec.token_endpoint_auth_method or ("none" if spec.public else "client_secret_basic")
        if method not in AUTH_METHODS:
            raise ClientError(f"unknown token endpoint auth method: {method}")
        if spec.public != (method == "none"):
            raise ClientError("public clients use auth method 'none'; confidential clients must authenticate")
        if method == "private_key_jwt" and not (spec.jwks and spec.jwks.get("keys")):
            raise ClientError("private_key_jwt needs the client's public keys (jwks)")
        unknown = set(spec.grant_types) - set(GRANT_TYPES)
        if unknown or not spec.grant_types:
            raise ClientError(f"unknown or missing grant types: {sorted(unknown)}")
        if spec.public and "client_credentials" in spec.grant_types:
            raise ClientError("a public client cannot use client_credentials")
        if "authorization_code" in spec.grant_types and not spec.redirect_uris:
            raise ClientError("authorization_code clients need at least one redirect URI")
        if spec.id_token_signed_response_alg not in ID_TOKEN_ALGS:
            raise ClientError(f"unsupported ID token algorithm: {spec.id_token_signed_response_alg}")
        for uri in spec.redirect_uris + spec.post_logout_redirect_uris:
            _check_redirect_uri(uri, native)
        if spec.client_id is not None and await db.get(User, spec.client_id) is not None:
            # RFC 9700 §4.15: a client_credentials token's sub is the client_id; it must never
            # be mistaken for a user's sub.
            raise ClientError("client_id must not equal a user's subject identifier")
        product_id = None
        if spec.product is not None:
            product = (await db.execute(select(Product).where(
                (Product.id == spec.product) | (Product.handle == spec.product.lower())))).scalars().first() \
                if len(spec.product) <= 64 and "\x00" not in spec.product else None
            if product is None:
                raise ClientError(f"unknown product: {spec.product}")
            product_id = product.id
        org_id = None
        if spec.org is not None:
            org = (await db.execute(select(Organisation).where(
                (Organisation.id == spec.org) | (Organisation.handle == spec.org.lower())))).scalars().first() \
                if len(spec.org) <= 64 and "\x00" not in spec.org else None
            if org is None:
                raise ClientError(f"unknown organisation: {spec.org}")
            org_id = org.id
        # Only the secret methods get a secret: a private_key_jwt client's credential is its key.
        secret = random_token("idpcs_") if method in ("client_secret_basic", "client_secret_post") else None
        client = Client(
            client_id=spec.client_id or random_token("idpc_", 16), name=spec.name,
            secret_hash=self._hash_secret(secret) if secret else None,
            client_type="public" if spec.public else "confidential",
            application_type="native" if native else "web",
            token_endpoint_auth_method=method, redirect_uris=list(spec.redirect_uris),
            post_logout_redirect_uris=list(spec.post_logout_redirect_uris),
            grant_types=list(spec.grant_types), scopes=list(dict.fromkeys(spec.scopes)),
            first_party=spec.first_party, id_token_signed_response_alg=spec.id_token_signed_response_alg,
            jwks=spec.jwks, product_id=product_id, org_id=org_id,
        )
        db.add(client)
        try:
            await db.flush()
        except IntegrityError as exc:
            raise ClientError(f"client_id already taken: {client.client_id}") from exc
        return client, secret

    async def get(self, db: AsyncSession, client_id: str | None) -> Client | None:
        if not client_id or len(client_id) > 100 or "\x00" in client_id:
            return None  # PostgreSQL text cannot hold NUL: such an id is no client, not a DB error
        return await db.get(Client, client_id)

    async def list(self, db: AsyncSession) -> list[Client]:
        return list((await db.execute(select(Client).order_by(Client.created_at))).scalars())

    # ---- authentication at the token, introspection and revocation endpoints ---------------

    async def authenticate(self, db: AsyncSession, form: dict[str, str],
                           authorization: str | None) -> Client:
        """RFC 6749 §2.3: exactly one authentication method per request, and it must be the one
        the client registered. Raises InvalidClient (401) or InvalidRequest."""
        basic = _parse_basic(authorization)
        used = [name for name, present in (
            ("client_secret_basic", basic is not None),
            ("client_secret_post", "client_secret" in form),
            ("private_key_jwt", "client_assertion" in form or "client_assertion_type" in form),
        ) if present]
        if len(used) > 1:
            raise InvalidRequest("more than one client authentication method used")
        method = used[0] if used else "none"

        if method == "client_secret_basic":
            client_id, secret = basic
        elif method == "private_key_jwt":
            client_id, secret = self._assertion_subject(form), None
        else:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        if form.get("client_id") not in (None, client_id):
            raise InvalidRequest("client_id does not match the authenticated client")

        client = await self.get(db, client_id)
        if client is None or client.token_endpoint_auth_method != method:
            raise InvalidClient("client authentication failed")
        if method in ("client_secret_basic", "client_secret_post"):
            if not (secret and client.secret_hash and same(self._hash_secret(secret), client.secret_hash)):
                raise InvalidClient("client authentication failed")
        elif method == "private_key_jwt":
            await self._verify_assertion(db, client, form["client_assertion"])
        return client

    @staticmethod
    def _assertion_subject(form: dict[str, str]) -> str | None:
        if form.get("client_assertion_type") != JWT_BEARER or "client_assertion" not in form:
            raise InvalidRequest("client_assertion_type must be " + JWT_BEARER)
        try:
            sub = unverified_claims(form["client_assertion"]).get("sub")
        except TokenInvalid:
            raise InvalidClient("malformed client assertion") from None
        return sub if isinstance(sub, str) else None

    async def _verify_assertion(self, db: AsyncSession, client: Client, assertion: str) -> None:
        """RFC 7523 §3: iss and sub are the client_id, aud names us, exp is in the future, and
        (RFC 7521 §5.2 / OIDC Core §9) a jti is never accepted twice."""
        try:
            claims = verify_with_client_keys(assertion, client.jwks or {"keys": []})
        except TokenInvalid:
            raise InvalidClient("client assertion signature invalid") from None
        now = int(time.time())
        audience = claims.get("aud")
        audience = audience if isinstance(audience, list) else [audience]
        audiences = {aud for aud in audience if isinstance(aud, str)}
        exp, jti = claims.get("exp"), claims.get("jti")
        if (claims.get("iss") != client.client_id or claims.get("sub") != client.client_id
                or not audiences & self._audiences or not isinstance(exp, int) or exp <= now
                or exp > now + self._assertion_max_age or not isinstance(jti, str) or not jti
                or len(jti) > 255 or "\x00" in jti):
            raise InvalidClient("client assertion claims invalid")
        try:
            async with db.begin_nested():
                db.add(UsedClientAssertion(client_id=client.client_id, jti=jti,
                                           expires_at=datetime.fromtimestamp(exp, UTC)))
        except IntegrityError:
            raise InvalidClient("client assertion replayed") from None


async def after_authentication(db: AsyncSession, client: Client, work: Callable[[], Awaitable[T]]) -> T:
    """Run what an authenticated request asks for. A private_key_jwt assertion stays spent even
    when that work fails (OIDC Core §9: "These tokens MUST only be used once"): the work runs in a
    savepoint, so its failure undoes only its own writes, and the error keeps the recorded jti."""
    if client.token_endpoint_auth_method != "private_key_jwt":
        return await work()
    savepoint = await db.begin_nested()
    try:
        result = await work()
    except OAuthError as error:
        await (savepoint.commit() if error.keeps_changes else savepoint.rollback())
        error.keeps_changes = True
        raise
    await savepoint.commit()
    return result


def _parse_basic(authorization: str | None) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: client_id and secret are form-urlencoded, then joined by ':' in Basic."""
    if not authorization or not authorization[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        client_id, _, secret = decoded.partition(":")
    except (ValueError, UnicodeDecodeError):
        raise InvalidClient("malformed Basic credentials") from None
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))
