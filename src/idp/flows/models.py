from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, UTCDateTime, new_id, utcnow


class FlowState(enum.StrEnum):
    """States of a sign-in interaction (the diagram is in flows/service.py)."""

    LOGIN = "login"  # waiting for an identifier (or identifier and password)
    PASSWORD = "password"  # waiting for the password of the identifier typed
    CODE = "code"  # a sign-in code was sent (if the identifier has an account)
    SECOND_FACTOR = "factor"  # the first factor passed; waiting for the second
    NEW_PASSWORD = "new_password"  # a temporary password must be replaced first
    ORGANISATION = "organisation"  # authenticated, choosing the organisation (flows/organisation.py)
    NO_ACCESS = "no_access"  # refused at the organisation step; a page leads back to the client
    CONSENT = "consent"  # authenticated, waiting for consent
    COMPLETE = "complete"  # a code was issued; the flow is spent
    DENIED = "denied"  # the person refused; the flow is spent


class AuthorizationFlow(Base):
    """A validated authorization request waiting for login and/or consent.

    Every step reads and writes this row, so any node can serve any step.
    """

    __tablename__ = "authorization_flows"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    # None for a sign-in to our own account pages (then `request` holds only where to return).
    client_id: Mapped[str | None] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    request: Mapped[dict] = mapped_column(JSON)  # the validated authorization request
    # What the login steps learned so far: the login typed, the factors passed, the next step.
    data: Mapped[dict | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
