"""Bodies of POST /api/v1/users/{id}/password-reset: what to send, and where it went."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from idp.flows.reset_links import LinkSent


class PasswordResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"via": "email"}, {"via": "sms"}]})

    via: Literal["email", "sms"] = Field(
        "email", description="Where the link goes: the account's verified email address, or its verified "
                             "phone number by SMS.")


class PasswordResetRequested(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "sent_to": "m***@example.com", "channel": "email", "expires_at": "2026-12-04T08:00:00Z"}]})

    sent_to: str = Field(description="Where the link went, masked: `m***@example.com`, `+358 40 *** **67`.")
    channel: Literal["email", "sms"] = Field(description="How the link was sent.")
    expires_at: datetime = Field(description="When the link stops working (a newer request voids it sooner).")

    @classmethod
    def of(cls, sent: LinkSent) -> PasswordResetRequested:
        return cls(sent_to=sent.sent_to, channel=sent.channel, expires_at=sent.expires_at)
