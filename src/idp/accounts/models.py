from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, UTCDateTime, new_id, utcnow


class User(Base):
    """A person. `id` is the OpenID Connect `sub`: random, stable, never reassigned."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    # The primary email (stored lower-cased); None for an account registered with a phone number.
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(200))
    given_name: Mapped[str | None] = mapped_column(String(100))
    family_name: Mapped[str | None] = mapped_column(String(100))
    locale: Mapped[str | None] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # A temporary password (set by an admin) works until it expires and forces a new one first.
    password_must_change: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    password_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "sms" or "email": the person chose a code to a verified identifier as a second factor.
    code_second_factor: Mapped[str | None] = mapped_column(String(8))
    # Disabled by an operator or integrator: no sign-in, no token, every session ended.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# "username": an organisation username such as `maija@acme` (orgs/usernames), unique once verified.
IDENTIFIER_KINDS = ("email", "phone", "username")


class Identifier(Base):
    """Something a person signs in with: an email (lower-cased) or a phone number (E.164).

    An account may hold any number of them. A value may sit unverified on several accounts (anyone
    can type any address), but once verified it belongs to one account only: the partial unique
    index makes the database, not a read-then-write in the service, the judge of that.
    """

    __tablename__ = "identifiers"
    __table_args__ = (
        CheckConstraint("kind IN ('email', 'phone', 'username')", name="kind"),
        UniqueConstraint("user_id", "kind", "value"),
        Index("ix_identifiers_kind_value", "kind", "value"),
        Index("uq_identifiers_verified_kind_value", "kind", "value", unique=True,
              sqlite_where=text("verified"), postgresql_where=text("verified")),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(64), ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
