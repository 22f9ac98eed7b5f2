from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, UTCDateTime, new_id, utcnow


class OneTimeCode(Base):
    """One code sent to one destination for one purpose. Neither the code nor the destination is
    stored: `subject` is an HMAC of (purpose, destination), `code_hash` an HMAC of both and the code.
    Usable while consumed_at and voided_at are NULL, expires_at is ahead and attempts < the cap."""

    __tablename__ = "otp_codes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    purpose: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(64), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # housekeeping's
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OtpSubject(Base):
    """One row per (purpose, destination): the resend cooldown and the consecutive failures across
    codes (NIST SP 800-63B: a new code does not reset them; only a success or the lockout's end does)."""

    __tablename__ = "otp_subjects"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
