"""Webhook subscriptions and their deliveries (the outbox)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, UTCDateTime, new_id, utcnow


class WebhookSubscription(Base):
    """An endpoint that wants some event types: of the whole platform (org_id None) or of one
    organisation only. The signing secret is sealed under the KEK: we need it in clear to sign."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    org_id: Mapped[str | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list] = mapped_column(JSON, default=list)  # ["*"] = every event
    description: Mapped[str | None] = mapped_column(String(200))
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # sealed "whsec_..." (Standard Webhooks)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # Consecutive failed attempts; reset by a success. At the limit the subscription is disabled.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    last_errors: Mapped[list] = mapped_column(JSON, default=list)  # newest first, a few at most
    created_by: Mapped[str | None] = mapped_column(String(100))  # the client that created it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription: pending → delivered | failed. `id` is the Standard Webhooks
    `webhook-id` (the same on every retry, so receivers can deduplicate). While a worker sends,
    `next_attempt_at` is its lease, as in the courier."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(64))  # the audit event
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
