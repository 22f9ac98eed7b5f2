"""A person's browser sessions on the API: when and how they signed in, never the cookie."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from idp.sessions.models import BrowserSession


class SessionOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "c2Vzc2lvbl8xMjM0NTY3", "created_at": "2026-12-03T08:00:00Z",
        "auth_time": "2026-12-03T08:00:00Z", "expires_at": "2026-12-04T08:00:00Z",
        "amr": ["pwd", "otp"], "acr": None, "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"}]})

    id: str = Field(description="The session id (the `sid` claim of ID tokens)")
    created_at: datetime
    auth_time: datetime = Field(description="When the person last authenticated in it")
    expires_at: datetime
    amr: list[str] = Field(description="Authentication methods (RFC 8176)")
    acr: str | None
    user_agent: str | None

    @classmethod
    def of(cls, session: BrowserSession) -> SessionOut:
        return cls(id=session.id, created_at=session.created_at, auth_time=session.auth_time,
                   expires_at=session.expires_at, amr=list(session.amr or []), acr=session.acr,
                   user_agent=session.user_agent)

