"""Organisations and what hangs off them: members, products and their access, invitations,
ownership offers, contacts and contact-change requests.

The "exactly one owner" rule lives in two places on purpose: the partial unique index
`uq_memberships_one_owner` makes a second owner impossible whatever the code does ("at most one"),
and the service changes ownership only inside one transaction holding the organisation's row lock
("at least one": nobody removes or demotes the owner, or transfers twice, in parallel).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, UTCDateTime, new_id, utcnow

ROLES = ("owner", "admin", "editor", "member")  # highest first
CONTACT_KINDS = ("admin", "technical", "billing")


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    # Lower-case letters, digits and single hyphens; the `acme` of `maija@acme`. Never reused.
    handle: Mapped[str] = mapped_column(String(40), unique=True)
    business_id: Mapped[str | None] = mapped_column(String(40))
    # Operator/integrator flag (seed 002: unpaid invoices): billing-contact changes are refused.
    billing_contact_locked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # The organisation's sign-in policy (orgs/policy.py), validated there; {} = the platform defaults.
    policy: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("org_id", "user_id"),
        CheckConstraint("role IN ('owner', 'admin', 'editor', 'member')", name="role"),
        # At most one owner per organisation, whatever happens concurrently.
        Index("uq_memberships_one_owner", "org_id", unique=True,
              sqlite_where=text("role = 'owner'"), postgresql_where=text("role = 'owner'")),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Product(Base):
    """A product groups clients (a website and its app) and declares its own role set."""

    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    handle: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list] = mapped_column(JSON)  # the product's own roles, highest first
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProductAccess(Base):
    """A licence: this member of this organisation may use this product, with this product role."""

    __tablename__ = "product_access"
    __table_args__ = (UniqueConstraint("org_id", "product_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Invitation(Base):
    """An email invitation with a role; the link's token is stored as an HMAC, used once."""

    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OwnershipOffer(Base):
    """The owner offers ownership to a member, who accepts with a single-use token or in the UI."""

    __tablename__ = "ownership_offers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    from_user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    to_user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OrgContact(Base):
    """The organisation's admin, technical and billing contact (each a member)."""

    __tablename__ = "org_contacts"
    __table_args__ = (
        UniqueConstraint("org_id", "kind"),
        CheckConstraint("kind IN ('admin', 'technical', 'billing')", name="kind"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContactChangeRequest(Base):
    """A change of one contact that both the old and the new contact must confirm, each with a
    personal single-use token (stored as HMACs)."""

    __tablename__ = "contact_change_requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    from_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    to_user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    requested_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # pending → completed | refused | withdrawn (expiry is read from expires_at)
    state: Mapped[str] = mapped_column(String(16))
    old_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    new_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    old_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    new_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
