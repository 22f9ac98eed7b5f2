from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, UTCDateTime, new_id, utcnow


class TotpFactor(Base):
    """An authenticator app (RFC 6238). Counts as a second factor only once `confirmed_at` is set.

    `secret_sealed` is the base32 secret under AES-256-GCM with a key derived from the KEK for
    "totp"; the row id is the associated data, so a sealed secret copied to another row fails.
    `last_used_step` is the highest 30 s step ever accepted: RFC 6238 §5.2 says a code must not be
    accepted twice, and pyotp keeps no state.
    """

    __tablename__ = "totp_factors"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """One single-use recovery code, stored as HMAC-SHA-256 under a key derived from the KEK.

    The codes carry 60 bits of randomness, so a keyed hash is enough (no password hash needed).
    """

    __tablename__ = "recovery_codes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
