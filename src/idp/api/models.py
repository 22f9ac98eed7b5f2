"""Idempotency records: the first response to a POST with an `Idempotency-Key`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, UTCDateTime, utcnow


class IdempotencyRecord(Base):
    """Written in the same transaction as the POST's change: it exists exactly when the change
    does, and a parallel request with the same key waits on its primary key, then replays it."""

    __tablename__ = "idempotency_records"

    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 of method, path and body: the same key with another request is refused (422).
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict | None] = mapped_column(JSON)  # {"sealed": ...}: may hold a secret shown once
    headers: Mapped[dict] = mapped_column(JSON, default=dict)  # Location, ETag
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
