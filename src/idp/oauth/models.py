"""Rows of the protocol: clients, codes, grants (token families), refresh tokens, consents."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, UTCDateTime, new_id, utcnow


class Client(Base):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # HMAC-SHA-256 of a 256-bit random secret: a keyed hash, not a password hash (see README).
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    client_type: Mapped[str] = mapped_column(String(16))  # "public" | "confidential"
    application_type: Mapped[str] = mapped_column(String(16), default="web")  # "web" | "native"
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    grant_types: Mapped[list] = mapped_column(JSON, default=list)
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(16), default="RS256")
    # RFC 9068 access tokens: ES256 unless the client's resource servers need another algorithm.
    access_token_signed_response_alg: Mapped[str] = mapped_column(String(16), default="ES256",
                                                                  server_default="ES256")
    jwks: Mapped[dict | None] = mapped_column(JSON)  # public keys for private_key_jwt
    # The product this client belongs to (orgs/): its sign-in needs the member's product access.
    product_id: Mapped[str | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    # An integrator client bound to one organisation (a business customer's own integration):
    # the REST API shows it that organisation only, and 404 for everything else.
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(String(64))
    redirect_uri: Mapped[str | None] = mapped_column(Text)  # as sent in the request, if it was
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    amr: Mapped[list] = mapped_column(JSON)
    methods: Mapped[list | None] = mapped_column(JSON)  # as BrowserSession.methods
    acr: Mapped[str | None] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    grant_id: Mapped[str | None] = mapped_column(String(64))
    org_id: Mapped[str | None] = mapped_column(String(64))  # the organisation chosen at sign-in


class Grant(Base):
    """What one code exchange created: a token family. Revoking it ends every token in it."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str | None] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(Text)
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    amr: Mapped[list] = mapped_column(JSON)
    methods: Mapped[list | None] = mapped_column(JSON)  # as BrowserSession.methods
    acr: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)  # housekeeping's
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The organisation the tokens of this family speak for (a refresh may switch it).
    org_id: Mapped[str | None] = mapped_column(String(64))


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Consent(Base):
    __tablename__ = "consents"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"), primary_key=True)
    scopes: Mapped[list] = mapped_column(JSON)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsedClientAssertion(Base):
    """`jti` values of private_key_jwt assertions seen, kept until the assertion expires."""

    __tablename__ = "used_client_assertions"

    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class RevokedAccessToken(Base):
    """Access tokens revoked before they expire (RFC 7009); checked by userinfo and introspection."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
