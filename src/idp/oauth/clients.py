"""Clients: registration rules, redirect-URI matching and client authentication (RFC 6749 §2.3)."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.models import User
from idp.api.scopes import SCOPES as API_SCOPES
from idp.audit.service import Actor, AuditLog
from idp.db.paging import paginate
from idp.keys.service import TokenInvalid, unverified_claims, verify_with_client_keys
from idp.oauth.client_cache import ClientCache
from idp.oauth.errors import InvalidClient, InvalidRequest, OAuthError
from idp.oauth.models import Client, UsedClientAssertion
from idp.oauth.tokens import DEFAULT_ACCESS_TOKEN_ALG
from idp.orgs.models import Organisation, Product
from idp.security import keyed_hash, random_token, same

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
# Scopes about the person's organisations (orgs/claims.py): `organization` makes the person choose
# one at sign-in and puts it in the tokens; `organization:*` lists every membership in userinfo.
ORG_SCOPES = ("organization", "organization:*")
# The REST API's scopes (api/scopes.py) may be registered; any other idp:* name is a mistake.
API_SCOPE_PREFIX = "idp:"
ID_TOKEN_ALGS = ("RS256", "ES256", "Ed25519", "EdDSA")
# The keyring signs access tokens with the same keys (published in the same JWKS), so a client
# whose resource servers only know RS256 (or EdDSA) can have its access tokens in that.
ACCESS_TOKEN_ALGS = ID_TOKEN_ALGS
T = TypeVar("T")
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# RFC 6749 §3.3 scope-token: printable ASCII except space, '"' and '\\'.
_SCOPE_TOKEN = re.compile(r'^[\x21\x23-\x5b\x5d-\x7e]{1,100}$')
_CLIENT_ID = re.compile(r"^[\x21-\x7e]+$")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")

# RFC 8252 §7.3: loopback redirects use an IP literal; only the port may vary at request time.
_LOOPBACK = re.compile(r"^http://(127\.0\.0\.1|\[::1\])(?::\d{1,5})?(?=/|\?|$)")


class ClientError(Exception):
    """A client registration that breaks the rules (message says which)."""


class ClientConflict(ClientError):
    """The change is well formed but the state forbids it (a client deleting or changing itself)."""


class ClientForbidden(ClientError):
    """The caller may not do this: it would give a client more than the caller itself holds."""


def _grantor(actor: Actor, grantor_scopes) -> frozenset[str] | None:
    """The scopes an API caller acts with, or None for an operator (the CLI), who may do anything.
    An integrator's client must say what it holds: without that it would act with an operator's
    power (SECURITY-CHECKLIST 89: `idp:clients:write` must not lead to every other scope)."""
    if grantor_scopes is None:
        if actor.type == "client":
            raise ValueError("an API caller's scopes (grantor_scopes) are required")
        return None
    return frozenset(grantor_scopes)


def _api_scopes(scopes) -> set[str]:
    return {scope for scope in scopes if scope.startswith(API_SCOPE_PREFIX)}


def _check_may_manage(client: Client, grantor: frozenset[str] | None) -> None:
    """An API caller changes, rotates and deletes only clients that have no API power beyond its
    own (else it could take over a stronger client through its secret) and that are not
    first-party (those skip consent: operators keep them)."""
    if grantor is None:
        return
    if client.first_party:
        raise ClientForbidden("a first-party client is managed by operators only (the idp command)")
    beyond = sorted(_api_scopes(client.scopes) - grantor)
    if beyond:
        raise ClientForbidden(f"this client has API scopes your token does not carry: {' '.join(beyond)}")


def _check_may_grant(columns: dict, grantor: frozenset[str] | None) -> None:
    """An API caller gives a client only API scopes its own token carries, and never first-party
    status (which skips the consent page)."""
    if grantor is None:
        return
    if columns["first_party"]:
        raise ClientForbidden("only an operator (the idp command) may make a client first-party")
    beyond = sorted(_api_scopes(columns["scopes"]) - grantor)
    if beyond:
        raise ClientForbidden(f"you may give a client only the API scopes your token carries; "
                              f"not these: {' '.join(beyond)}")


def registration(client: Client) -> dict:
    """The registration as shown to operators and integrators and kept in the audit log: never
    the secret or its hash."""
    return {name: getattr(client, name) for name in _REGISTRATION}


_REGISTRATION = ("client_id", "name", "client_type", "application_type", "token_endpoint_auth_method",
                 "redirect_uris", "post_logout_redirect_uris", "grant_types", "scopes", "first_party",
                 "id_token_signed_response_alg", "access_token_signed_response_alg", "jwks", "product_id",
                 "org_id")


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
    access_token_signed_response_alg: str = DEFAULT_ACCESS_TOKEN_ALG
    application_type: str | None = None
    jwks: dict | None = None
    client_id: str | None = None
    # The product (id or handle) the client belongs to: its sign-in then needs a licence.
    product: str | None = None
    # The organisation (id or handle) an integrator client is bound to: the REST API then shows
    # it that organisation only.
    org: str | None = None


# What `ClientService.update` may change, by ClientSpec field name.
UPDATABLE = ("name", "redirect_uris", "post_logout_redirect_uris", "grant_types", "scopes", "first_party",
             "id_token_signed_response_alg", "access_token_signed_response_alg", "jwks", "product", "org")


def spec_of(client: Client) -> ClientSpec:
    """The spec a client stands for now: an update replaces some of its fields and is checked
    by the same rules as a registration."""
    return ClientSpec(
        name=client.name, redirect_uris=list(client.redirect_uris),
        post_logout_redirect_uris=list(client.post_logout_redirect_uris),
        public=client.client_type == "public", grant_types=list(client.grant_types),
        scopes=list(client.scopes), token_endpoint_auth_method=client.token_endpoint_auth_method,
        first_party=client.first_party, id_token_signed_response_alg=client.id_token_signed_response_alg,
        access_token_signed_response_alg=client.access_token_signed_response_alg,
        application_type=client.application_type, jwks=client.jwks, product=client.product_id,
        org=client.org_id)


def _public_jwks(jwks: dict | None) -> dict | None:
    """The client's keys for private_key_jwt, as public JWKs; ClientError for anything that is
    not a set of public asymmetric keys (a private or shared key must never be stored here)."""
    if jwks is None:
        return None
    try:
        keys = KeySet.import_key_set(jwks).keys
    except Exception:  # noqa: BLE001 - joserfc raises JoseError, ValueError, TypeError, KeyError...
        raise ClientError("jwks must be a JSON Web Key Set of public keys") from None
    raw = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(raw, list) or len(raw) > 10 or any(
            not isinstance(key, dict) or key.get("kty") == "oct" or "d" in key for key in raw):
        raise ClientError("jwks must hold at most 10 public asymmetric keys")
    return {"keys": [key.as_dict(private=False) for key in keys]}


async def _id_of(db: AsyncSession, model, ref: str | None, what: str) -> str | None:
    """The id of the product or organisation `ref` names (its id or handle)."""
    if ref is None:
        return None
    found = (await db.execute(select(model.id).where(
        (model.id == ref) | (model.handle == ref.lower())))).scalars().first() \
        if len(ref) <= 64 and "\x00" not in ref else None
    if found is None:
        raise ClientError(f"unknown {what}: {ref}")
    return found


def _check_redirect_uri(uri: str, native: bool) -> None:
    """RFC 9700 §2.1/§4.1.3 and OIDC Registration: absolute, no fragment, no wildcard, https
    except loopback; native apps may also use a private-use scheme (RFC 8252 §7.1)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ClientError(f"redirect URI is not a valid URI: {uri}") from None
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
                 assertion_max_age: int, cache_seconds: float = 0.0) -> None:
        self._secret_key = secret_key
        # Client authentication reads rows from here (client_cache.py says how fresh they are);
        # Services makes it watch the database's sessions for changes.
        self.cache = ClientCache(cache_seconds)
        # The audit log (set by Services): every registration change writes an event with it.
        self.audit: AuditLog | None = None
        self._audiences = {token_endpoint, issuer}
        self._assertion_max_age = assertion_max_age

    def _hash_secret(self, secret: str) -> str:
        return keyed_hash(self._secret_key, secret)

    # ---- registration ------------------------------------------------------------------------

    async def _columns(self, db: AsyncSession, spec: ClientSpec) -> dict:
        """Every registration rule, in one place for creation and change: the column values
        `spec` gives (all but the client_id and the secret), or ClientError saying what is wrong."""
        if not spec.name.strip() or len(spec.name) > 200 or _CONTROLS.search(spec.name):
            raise ClientError("name must be 1-200 characters without control characters")
        if spec.application_type not in (None, "web", "native"):
            raise ClientError(f"application type must be web or native: {spec.application_type}")
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
        if spec.access_token_signed_response_alg not in ACCESS_TOKEN_ALGS:
            raise ClientError(f"unsupported access token algorithm: {spec.access_token_signed_response_alg}")
        for uri in spec.redirect_uris + spec.post_logout_redirect_uris:
            _check_redirect_uri(uri, native)
        for scope in spec.scopes:
            if not _SCOPE_TOKEN.match(scope):
                raise ClientError(f"not a scope (RFC 6749 §3.3): {scope!r}")
            if scope.startswith(API_SCOPE_PREFIX) and scope not in API_SCOPES:
                raise ClientError(f"unknown API scope: {scope}")
        return {
            "name": spec.name, "client_type": "public" if spec.public else "confidential",
            "application_type": "native" if native else "web", "token_endpoint_auth_method": method,
            "redirect_uris": list(spec.redirect_uris),
            "post_logout_redirect_uris": list(spec.post_logout_redirect_uris),
            "grant_types": list(dict.fromkeys(spec.grant_types)), "scopes": list(dict.fromkeys(spec.scopes)),
            "first_party": spec.first_party, "id_token_signed_response_alg": spec.id_token_signed_response_alg,
            "access_token_signed_response_alg": spec.access_token_signed_response_alg,
            "jwks": _public_jwks(spec.jwks), "product_id": await _id_of(db, Product, spec.product, "product"),
            "org_id": await _id_of(db, Organisation, spec.org, "organisation"),
        }

    async def create(self, db: AsyncSession, spec: ClientSpec, *, actor: Actor = Actor.operator(),
                     grantor_scopes: Collection[str] | None = None) -> tuple[Client, str | None]:
        """Register a client; returns it and its secret (shown once; only a keyed hash is kept).
        `grantor_scopes`: an API caller's scopes (None for an operator); see _check_may_grant."""
        grantor = _grantor(actor, grantor_scopes)
        columns = await self._columns(db, spec)
        _check_may_grant(columns, grantor)
        if spec.client_id is not None:
            if not 1 <= len(spec.client_id) <= 100 or not _CLIENT_ID.match(spec.client_id):
                raise ClientError("client_id must be 1-100 printable characters without spaces")
            if await db.get(User, spec.client_id) is not None:
                # RFC 9700 §4.15: a client_credentials token's sub is the client_id; it must never
                # be mistaken for a user's sub.
                raise ClientError("client_id must not equal a user's subject identifier")
        # Only the secret methods get a secret: a private_key_jwt client's credential is its key.
        method = columns["token_endpoint_auth_method"]
        secret = random_token("idpcs_") if method in SECRET_METHODS else None
        client = Client(client_id=spec.client_id or random_token("idpc_", 16),
                        secret_hash=self._hash_secret(secret) if secret else None, **columns)
        db.add(client)
        try:
            await db.flush()
        except IntegrityError as exc:
            raise ClientError(f"client_id already taken: {client.client_id}") from exc
        await self._record(db, actor, "client.created", client, after=registration(client))
        return client, secret

    async def update(self, db: AsyncSession, client: Client, changes: dict, *, actor: Actor,
                     grantor_scopes: Collection[str] | None = None) -> Client:
        """Change registration fields (UPDATABLE, by their ClientSpec names) under the creation
        rules. The client_id, the client type and the auth method stay: the credential depends
        on them. `grantor_scopes`: an API caller's scopes (None for an operator)."""
        grantor = _grantor(actor, grantor_scopes)
        if actor.type == "client" and actor.id == client.client_id:
            # Else a client could widen its own scopes: its registration is for others to change.
            raise ClientConflict("a client cannot change its own registration; use another client or the CLI")
        _check_may_manage(client, grantor)
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise ClientError(f"these fields cannot be changed: {sorted(unknown)}")
        columns = await self._columns(db, replace(spec_of(client), **changes))
        _check_may_grant(columns, grantor)
        before = registration(client)
        for name, value in columns.items():
            setattr(client, name, value)
        await db.flush()
        after = registration(client)
        changed = [name for name in after if after[name] != before[name]]
        if changed:
            await self._record(db, actor, "client.updated", client, before={n: before[n] for n in changed},
                               after={n: after[n] for n in changed})
        return client

    async def delete(self, db: AsyncSession, client: Client, *, actor: Actor,
                     grantor_scopes: Collection[str] | None = None) -> None:
        """Remove the client. Its codes, grants (so refresh tokens) and consents go with it (ON
        DELETE CASCADE); its access tokens stop working because every check looks it up."""
        grantor = _grantor(actor, grantor_scopes)
        if actor.type == "client" and actor.id == client.client_id:
            # It would cut off its own access halfway through its work (schemathesis did this).
            raise ClientConflict("a client cannot delete itself; use another client or the CLI")
        _check_may_manage(client, grantor)
        before = registration(client)
        await db.delete(client)
        await db.flush()
        await self._record(db, actor, "client.deleted", client, before=before)

    async def rotate_secret(self, db: AsyncSession, client: Client, *, actor: Actor,
                            grantor_scopes: Collection[str] | None = None) -> str:
        """A new secret (returned once); the old one stops working when this transaction commits.
        A client may always rotate its own (it holds the secret already: that is hygiene, not
        power); another client's only under _check_may_manage."""
        grantor = _grantor(actor, grantor_scopes)
        if not (actor.type == "client" and actor.id == client.client_id):
            _check_may_manage(client, grantor)
        if client.token_endpoint_auth_method not in SECRET_METHODS:
            raise ClientError(f"this client has no secret: it authenticates with "
                              f"{client.token_endpoint_auth_method}")
        secret = random_token("idpcs_")
        client.secret_hash = self._hash_secret(secret)
        await db.flush()
        await self._record(db, actor, "client.secret_rotated", client)
        return secret

    async def _record(self, db: AsyncSession, actor: Actor, action: str, client: Client, *,
                      before: dict | None = None, after: dict | None = None) -> None:
        if self.audit is not None:
            await self.audit.record(db, actor, action, org_id=client.org_id, target_type="client",
                                    target_id=client.client_id, before=before, after=after)

    async def get(self, db: AsyncSession, client_id: str | None, *, for_update: bool = False) -> Client | None:
        if not client_id or len(client_id) > 100 or "\x00" in client_id:
            return None  # PostgreSQL text cannot hold NUL: such an id is no client, not a DB error
        return await db.get(Client, client_id, with_for_update=for_update or None)

    async def get_cached(self, db: AsyncSession, client_id: str | None) -> Client | None:
        """The client as authentication and sign-ins see it: from the cache when it is there
        (client_cache.py: a change through this node is seen at once, through another within the
        cache time). The object may be shared with other requests and belongs to no session: read
        it, never change it."""
        cached = self.cache.get(client_id) if client_id else None
        if cached is not None:
            return cached
        generation = self.cache.generation
        client = await self.get(db, client_id)
        return None if client is None else self.cache.put(client, generation)

    async def list(self, db: AsyncSession) -> list[Client]:
        return list((await db.execute(select(Client).order_by(Client.created_at))).scalars())

    async def page(self, db: AsyncSession, *, limit: int, cursor: str | None, org_id: str | None = None,
                   product: str | None = None) -> tuple[list[Client], str | None]:
        """Oldest first. `product`: its id or handle."""
        query = select(Client)
        if org_id is not None:
            query = query.where(Client.org_id == org_id)
        if product is not None:
            query = query.where(Client.product_id.in_(select(Product.id).where(
                (Product.id == product) | (Product.handle == product.lower()))))
        return await paginate(db, query, time_column=Client.created_at, id_column=Client.client_id,
                              limit=limit, cursor=cursor)

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

        client = await self.get_cached(db, client_id)
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
