from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, UTCDateTime, new_id, utcnow


class CourierMessage(Base):
    """A message waiting in (or gone through) the transactional outbox: queued → sent | failed.

    `payload` holds the template parameters (the code in clear) sealed with AES-GCM under the
    courier key, the row id as associated data. `last_error` never contains a parameter value.
    While a worker is sending, `next_attempt_at` is its lease: nobody else claims the row before."""

    __tablename__ = "courier_messages"
    # The worker's query: due messages still queued.
    __table_args__ = (Index("ix_courier_messages_state_next_attempt_at", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(16))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(8), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
