"""Webhook subscriptions and their deliveries on the API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from idp.api.schemas.common import ShortText
from idp.events.delivery import failing_since
from idp.events.models import WebhookDelivery, WebhookSubscription

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2000,
                                       pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\x00-\x1f\x7f]+$")]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                             pattern=r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$")]
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=100, description=(
    'Audit action names to receive, e.g. ["member.added", "member.removed"], or ["*"] for every event'))]

_URL = ("Where to POST the events: https (http to the loopback host only where the server allows it "
        "for development); no user name or password in the URL")
_ORG = ("Receive only this organisation's events (null: every event of the platform). An "
        "organisation-bound client's subscriptions are always for its own organisation")

_EXAMPLE = {
    "id": "d2hfc3ViXzE", "url": "https://hr.example.com/idp-events", "event_types": ["member.added"],
    "description": "HR system", "org_id": "b3JnX2FjbWU", "enabled": True, "disabled_reason": None,
    "consecutive_failures": 0, "failing_since": None, "last_errors": [], "created_at": "2026-12-03T08:00:00Z",
    "updated_at": "2026-12-03T08:00:00Z"}


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "url": "https://hr.example.com/idp-events", "event_types": ["member.added", "member.removed"],
        "description": "HR system", "org_id": None}]})

    url: Url = Field(description=_URL)
    event_types: EventTypes
    description: ShortText | None = Field(None, description="A note for people: what receives these")
    org_id: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description=_ORG)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"event_types": ["*"]}]})

    url: Url | None = Field(None, description=_URL)
    event_types: EventTypes | None = None
    description: ShortText | None = Field(None, description="A note for people: what receives these")


class WebhookError(BaseModel):
    at: datetime
    status: int | None = Field(None, description="The HTTP status the endpoint answered")
    error: str | None = Field(None, description="No HTTP answer: timeout, connection, network")
    message: str


class WebhookOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    id: str
    url: str
    event_types: list[str]
    description: str | None
    org_id: str | None
    enabled: bool
    disabled_reason: str | None = Field(description="Why the server disabled it (failed deliveries)")
    consecutive_failures: int = Field(description="Failed attempts in a row; a success resets it")
    failing_since: datetime | None = Field(None, description=(
        "When the current run of failed attempts began (null: the last attempt succeeded). The "
        "server disables the subscription when the run is long enough (24 h and 50 attempts by "
        "default); events are still queued for a disabled one and sent when it is re-enabled"))
    last_errors: list[WebhookError] = Field(description="The last failed attempts, newest first (at most 5)")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, subscription: WebhookSubscription) -> WebhookOut:
        return cls(id=subscription.id, url=subscription.url, event_types=subscription.event_types,
                   description=subscription.description, org_id=subscription.org_id,
                   enabled=subscription.enabled, disabled_reason=subscription.disabled_reason,
                   consecutive_failures=subscription.consecutive_failures,
                   failing_since=failing_since(subscription), last_errors=subscription.last_errors or [],
                   created_at=subscription.created_at, updated_at=subscription.updated_at)


class WebhookWithSecret(WebhookOut):
    model_config = ConfigDict(json_schema_extra={"examples": [
        _EXAMPLE | {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]})

    secret: str = Field(description="The Standard Webhooks signing secret (whsec_...). Shown only "
                                    "now: store it; rotate it if it is lost")


class DeliveryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "ZGVsaXZlcnlfMQ", "event_type": "member.added", "state": "delivered", "attempts": 1,
        "last_error": None, "created_at": "2026-12-03T08:00:00Z", "delivered_at": "2026-12-03T08:00:01Z"}]})

    id: str = Field(description="The webhook-id header: the same on every attempt")
    event_type: str
    state: str = Field(description="pending, delivered or failed")
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryOut:
        return cls(id=delivery.id, event_type=delivery.event_type, state=delivery.state,
                   attempts=delivery.attempts, last_error=delivery.last_error,
                   created_at=delivery.created_at, delivered_at=delivery.delivered_at)
