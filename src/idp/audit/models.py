from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, UTCDateTime, new_id, utcnow


class AuditEvent(Base):
    """One change, written in the transaction that made it (so it exists exactly when the change
    does). `before` and `after` hold the changed fields only, never secrets."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_org_id_at", "org_id", "at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # "user" (a signed-in person), "operator" (the CLI), "client" (an integrator), "system".
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(100))
    client_id: Mapped[str | None] = mapped_column(String(100))  # the client the actor came through
    ip: Mapped[str | None] = mapped_column(String(64))  # of the request that made the change
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))  # e.g. "member.role_changed"
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(100))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
