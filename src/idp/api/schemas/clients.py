"""OAuth clients on the API. A client's secret appears in exactly two replies: its registration
and a secret rotation. Reads say `has_secret`; the keyed hash is never shown."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from idp.api.schemas.common import NO_CONTROLS, Name
from idp.oauth.clients import registration
from idp.oauth.models import Client

# Bounded so that nothing reaches the database that it cannot hold; the registration rules
# themselves (https, known grant types, ...) are ClientService's, answered as invalid-client-metadata.
Uri = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NO_CONTROLS)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_CONTROLS)]
Ref = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
ChosenClientId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")]
Uris = Annotated[list[Uri], Field(max_length=20)]
Tokens = Annotated[list[Token], Field(max_length=50)]

_EXAMPLE = {
    "client_id": "idpc_hr_system", "name": "Acme HR sync", "client_type": "confidential",
    "application_type": "web", "token_endpoint_auth_method": "client_secret_basic",
    "redirect_uris": [], "post_logout_redirect_uris": [], "grant_types": ["client_credentials"],
    "scopes": ["idp:orgs:read", "idp:orgs:write"], "first_party": False,
    "id_token_signed_response_alg": "RS256", "access_token_signed_response_alg": "ES256", "jwks": None,
    "product_id": None, "org_id": "b3JnX2FjbWU",
    "has_secret": True, "created_at": "2026-12-03T08:00:00Z"}


class _Registration(BaseModel):
    """The fields a registration and a change share."""

    redirect_uris: Uris = Field(default_factory=list, description=(
        "Exact redirect URIs: https, or http on a loopback address; no fragment or wildcard"))
    post_logout_redirect_uris: Uris = Field(default_factory=list, description="Post-logout redirect URIs")
    grant_types: Tokens = Field(default_factory=lambda: ["authorization_code", "refresh_token"], description=(
        "authorization_code, refresh_token and/or client_credentials"))
    scopes: Tokens = Field(default_factory=lambda: ["openid", "profile", "email", "offline_access"], description=(
        "Scopes the client may ask for: OpenID scopes, `organization`, and the API scopes (idp:...); "
        "of these, only those your own token carries (else 403)"))
    first_party: bool = Field(False, description=(
        "Our own application: the consent page is skipped. Operators only (the idp command): "
        "true is 403 here"))
    id_token_signed_response_alg: Token = Field("RS256", description="RS256, ES256, Ed25519 or EdDSA")
    access_token_signed_response_alg: Token = Field("ES256", description=(
        "The JWT access tokens' (RFC 9068) algorithm: ES256, RS256, Ed25519 or EdDSA, for what "
        "the client's resource servers can verify"))
    jwks: dict | None = Field(None, description="Public keys (a JWK Set) for private_key_jwt")
    product: Ref | None = Field(None, description="The product (id or handle): sign-in then needs its licence")
    org_id: Ref | None = Field(None, description=(
        "Bind an integrator client to this organisation (id or handle): the API then shows it that "
        "organisation only"))


class ClientIn(_Registration):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "Acme HR sync", "grant_types": ["client_credentials"],
        "scopes": ["idp:orgs:read", "idp:orgs:write"], "org_id": "acme"}]})

    name: Name = Field(description="Shown on the consent page")
    public: bool = Field(False, description="A public client (no secret, PKCE) or a confidential one")
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "private_key_jwt",
                                        "none"] | None = Field(None, description=(
        "client_secret_basic (default for confidential), client_secret_post, private_key_jwt, "
        "or none (public clients)"))
    application_type: Literal["web", "native"] | None = Field(
        None, description="web or native (loopback redirects with any port)")
    client_id: ChosenClientId | None = Field(None, description="Choose the client_id (default: random)")

    def spec_fields(self) -> dict:
        """The ClientSpec fields this body gives."""
        fields = self.model_dump(exclude={"org_id"})
        return fields | {"org": self.org_id}


class ClientPatch(_Registration):
    """Only the fields sent are changed (the rest keep their values). The client_id, the client
    type and the auth method cannot change: register a new client instead."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "Acme HR sync (v2)", "scopes": ["idp:orgs:read"]}]})

    # A field sent must have a value: null is refused where the registration has no "unset".
    name: Name = Field(None, description="Shown on the consent page")
    redirect_uris: Uris = Field(None, description="Replaces the redirect URIs")
    post_logout_redirect_uris: Uris = Field(None, description="Replaces the post-logout redirect URIs")
    grant_types: Tokens = Field(None, description="Replaces the grant types")
    scopes: Tokens = Field(None, description=(
        "Replaces the allowed scopes: API scopes (idp:...) only those your own token carries (else 403)"))
    first_party: bool = Field(None, description=(
        "Our own application: the consent page is skipped. Operators only: true is 403 here"))
    id_token_signed_response_alg: Token = Field(None, description="RS256, ES256, Ed25519 or EdDSA")
    access_token_signed_response_alg: Token = Field(None, description=(
        "ES256, RS256, Ed25519 or EdDSA: tokens issued from now on"))

    def changes(self) -> dict:
        """The ClientSpec fields this body names, with their new values."""
        named = self.model_dump(include=self.model_fields_set)
        if "org_id" in named:
            named["org"] = named.pop("org_id")
        return named


class ClientOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    client_id: str
    name: str
    client_type: str = Field(description="public or confidential")
    application_type: str = Field(description="web or native")
    token_endpoint_auth_method: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    scopes: list[str]
    first_party: bool
    id_token_signed_response_alg: str
    access_token_signed_response_alg: str = Field(description="The algorithm of its JWT access tokens")
    jwks: dict | None
    product_id: str | None
    org_id: str | None = Field(description="The organisation an integrator client is bound to")
    has_secret: bool = Field(description="Whether it authenticates with a secret (never shown again)")
    created_at: datetime

    @classmethod
    def of(cls, client: Client) -> ClientOut:
        return cls(**registration(client), has_secret=client.secret_hash is not None,
                   created_at=client.created_at)


class ClientWithSecret(ClientOut):
    """A registration or secret rotation reply: the only replies that carry the secret. A retry
    with the same Idempotency-Key (same caller, within 24 hours) replays this reply, secret
    included: that is what lets a caller that lost the reply recover the secret."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        _EXAMPLE | {"client_secret": "idpcs_3q2-7wAAbb8dGc1uYz0mJw5vTn9kLxQeRr4sPp6oHh0"}]})

    client_secret: str | None = Field(description=(
        "Shown in this reply only (null for public and private_key_jwt clients): store it now"))
