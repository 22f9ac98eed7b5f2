"""Webhook subscriptions, and the outbox every audit event feeds.

A subscription is platform-wide (org_id None: every event) or an organisation's (only events of
that organisation). Its signing secret is shown once (creation, rotation) and stored sealed: we need
it in clear to sign. `enqueue_for_event` runs as an audit-log listener inside the transaction of
the change, so a delivery exists exactly when its event does; delivery.py sends them.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from idp.audit.models import AuditEvent
from idp.audit.service import Actor, AuditLog
from idp.db import Database, new_id, utcnow
from idp.db.paging import paginate
from idp.events.delivery import DeliveryWorker
from idp.events.models import WebhookDelivery, WebhookSubscription
from idp.events.signing import new_secret
from idp.events.urls import WebhookRejected, check_url, redacted
from idp.keys.crypto import seal
from idp.orgs.errors import OrgNotFound
from idp.orgs.models import Organisation

EVERY_EVENT = "*"
# An audit action name: dotted lower snake case, <object>.<past_tense_verb> (audit/service.py).
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
MAX_EVENT_TYPES = 100


class WebhookNotFound(OrgNotFound):
    """No such subscription, or one outside the caller's organisation: the same answer."""


@dataclass(frozen=True)
class Limits:
    """The delivery settings (settings.py, "Webhooks")."""

    allow_http_loopback: bool = False
    timeout_seconds: float = 10.0
    max_attempts: int = 10
    backoff_seconds: float = 30.0
    backoff_max_seconds: float = 6 * 3600.0
    lease_seconds: float = 120.0
    disable_after: int = 50  # failed attempts in a row, at least ...
    disable_after_seconds: float = 24 * 3600.0  # ... over at least this long, to disable
    retention_seconds: float = 7 * 24 * 3600.0  # finished deliveries are kept this long


def check_event_types(event_types: list[str]) -> list[str]:
    types = list(dict.fromkeys(event_types))  # drop repeats, keep the order
    if not types or len(types) > MAX_EVENT_TYPES:
        raise WebhookRejected(f"name 1 to {MAX_EVENT_TYPES} event types, or [\"*\"] for every event")
    if EVERY_EVENT in types and types != [EVERY_EVENT]:
        raise WebhookRejected('"*" stands alone: it already means every event')
    for name in types:
        if name != EVERY_EVENT and not EVENT_TYPE.match(name):
            raise WebhookRejected(f"{name[:64]!r} is not an event type such as member.added")
    return types


def _wants(event_types: list, action: str) -> bool:
    return EVERY_EVENT in event_types or action in event_types


def _worker_made(event: AuditEvent) -> bool:
    """The delivery worker's own bookkeeping (a subscription it disabled) is audited but not sent
    as a webhook: a failing endpoint must not feed the outbox that failed it."""
    return event.actor_type == "system" and event.action.startswith("webhook.")


class WebhookService:
    def __init__(self, key: bytes, audit: AuditLog | None = None, limits: Limits = Limits()) -> None:
        self.key = key
        self.audit = audit or AuditLog()
        self.limits = limits
        self.worker = DeliveryWorker(key, self.audit, limits)

    # ---- the outbox ---------------------------------------------------------------------------

    async def enqueue_for_event(self, db: AsyncSession, event: AuditEvent) -> None:
        """Queue a delivery of `event` for every subscription that wants it, in the caller's
        transaction. One query on a small table when nobody subscribes. A disabled subscription's
        deliveries are queued too: they wait, and go out if it is enabled again (nothing is lost
        to an outage); the worker expires those that wait longer than the retention."""
        if _worker_made(event):
            return
        scope = WebhookSubscription.org_id.is_(None)
        if event.org_id is not None:
            scope = or_(scope, WebhookSubscription.org_id == event.org_id)
        subscriptions = (await db.execute(
            select(WebhookSubscription.id, WebhookSubscription.event_types)
            .where(scope))).all()
        wanting = [sub_id for sub_id, types in subscriptions if _wants(types or [], event.action)]
        if not wanting:
            return
        payload = {"type": event.action, "timestamp": event.at.isoformat().replace("+00:00", "Z"),
                   "data": {
                       "id": event.id, "actor": {"type": event.actor_type, "id": event.actor_id},
                       "client_id": event.client_id, "ip": event.ip, "org_id": event.org_id,
                       "target": ({"type": event.target_type, "id": event.target_id}
                                  if event.target_type else None),
                       "before": event.before, "after": event.after}}
        now = utcnow()
        for subscription_id in wanting:
            db.add(WebhookDelivery(id=new_id(), subscription_id=subscription_id, event_id=event.id,
                                   event_type=event.action[:64], payload=payload, state="pending",
                                   attempts=0, next_attempt_at=now, created_at=now))
        await db.flush()

    async def deliver_due(self, database: Database, **kwargs):
        return await self.worker.deliver_due(database, **kwargs)

    async def run_forever(self, database: Database, *, interval: float, stop: asyncio.Event) -> None:
        await self.worker.run_forever(database, interval=interval, stop=stop)

    # ---- subscriptions ------------------------------------------------------------------------

    async def create(self, db: AsyncSession, actor: Actor, *, url: str, event_types: list[str],
                     description: str | None = None, org_id: str | None = None
                     ) -> tuple[WebhookSubscription, str]:
        """A new subscription and its secret (shown to the caller once). An organisation-bound
        actor's subscription is always for its own organisation."""
        if actor.org_id is not None:
            if org_id not in (None, actor.org_id):
                raise OrgNotFound("organisation not found")
            org_id = actor.org_id
        elif org_id is not None and await db.get(Organisation, org_id) is None:
            raise OrgNotFound("organisation not found")
        url = check_url(url, allow_http_loopback=self.limits.allow_http_loopback)
        types = check_event_types(event_types)
        subscription_id, secret, now = new_id(), new_secret(), utcnow()
        subscription = WebhookSubscription(
            id=subscription_id, org_id=org_id, url=url, event_types=types, description=description,
            secret=seal(self.key, secret.encode(), subscription_id), enabled=True,
            consecutive_failures=0, last_errors=[], created_by=actor.client_id or actor.id,
            created_at=now, updated_at=now)
        db.add(subscription)
        await db.flush()
        await self._audit(db, actor, "webhook.created", subscription, after={
            "url": redacted(url), "event_types": types, "description": description})
        return subscription, secret

    async def get(self, db: AsyncSession, actor: Actor, subscription_id: str, *,
                  for_update: bool = False) -> WebhookSubscription:
        query = select(WebhookSubscription).where(WebhookSubscription.id == subscription_id)
        if actor.org_id is not None:
            query = query.where(WebhookSubscription.org_id == actor.org_id)
        if for_update:
            query = query.with_for_update()
        subscription = (await db.execute(query)).scalar_one_or_none()
        if subscription is None:
            raise WebhookNotFound("webhook subscription not found")
        return subscription

    async def page(self, db: AsyncSession, actor: Actor, *, limit: int, cursor: str | None,
                   org_id: str | None = None) -> tuple[list[WebhookSubscription], str | None]:
        """Newest first; an organisation-bound actor sees its organisation's only."""
        query = select(WebhookSubscription)
        for wanted in (actor.org_id, org_id):
            if wanted is not None:
                query = query.where(WebhookSubscription.org_id == wanted)
        return await paginate(db, query, time_column=WebhookSubscription.created_at,
                              id_column=WebhookSubscription.id, limit=limit, cursor=cursor,
                              newest_first=True)

    async def update(self, db: AsyncSession, actor: Actor, subscription: WebhookSubscription,
                     changes: dict) -> WebhookSubscription:
        """Change the URL, the event types or the description (only those named in `changes`)."""
        for required in ("url", "event_types"):
            if required in changes and changes[required] is None:
                raise WebhookRejected(f"{required} cannot be removed, only changed")
        before, after = {}, {}
        if "url" in changes and changes["url"] != subscription.url:
            url = check_url(changes["url"], allow_http_loopback=self.limits.allow_http_loopback)
            before["url"], after["url"] = redacted(subscription.url), redacted(url)
            subscription.url = url
        if "event_types" in changes:
            types = check_event_types(changes["event_types"])
            if types != subscription.event_types:
                before["event_types"], after["event_types"] = subscription.event_types, types
                subscription.event_types = types
        if "description" in changes and changes["description"] != subscription.description:
            before["description"], after["description"] = subscription.description, changes["description"]
            subscription.description = changes["description"]
        if after:
            subscription.updated_at = utcnow()
            await db.flush()
            await self._audit(db, actor, "webhook.updated", subscription, before=before, after=after)
        return subscription

    async def delete(self, db: AsyncSession, actor: Actor, subscription: WebhookSubscription) -> None:
        """The subscription and its deliveries (pending ones are not sent)."""
        await self._audit(db, actor, "webhook.deleted", subscription,
                          before={"url": redacted(subscription.url)})
        await db.delete(subscription)
        await db.flush()

    async def rotate_secret(self, db: AsyncSession, actor: Actor, subscription: WebhookSubscription) -> str:
        """A new secret, used from the next attempt on (retries of old deliveries included)."""
        secret = new_secret()
        subscription.secret = seal(self.key, secret.encode(), subscription.id)
        subscription.updated_at = utcnow()
        await db.flush()
        await self._audit(db, actor, "webhook.secret_rotated", subscription)
        return secret

    async def enable(self, db: AsyncSession, actor: Actor, subscription: WebhookSubscription) -> WebhookSubscription:
        """Turn a disabled subscription on again with a clean failure count; its deliveries that
        were waiting are sent again. Enabling an enabled one changes nothing."""
        if subscription.enabled:
            return subscription
        before = {"enabled": False, "disabled_reason": subscription.disabled_reason}
        subscription.enabled, subscription.disabled_reason = True, None
        subscription.consecutive_failures = 0
        subscription.updated_at = utcnow()
        await db.flush()
        await self._audit(db, actor, "webhook.enabled", subscription, before=before, after={"enabled": True})
        return subscription

    async def deliveries(self, db: AsyncSession, subscription: WebhookSubscription, *, limit: int,
                         cursor: str | None) -> tuple[list[WebhookDelivery], str | None]:
        """The subscription's deliveries, newest first."""
        query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id)
        return await paginate(db, query, time_column=WebhookDelivery.created_at,
                              id_column=WebhookDelivery.id, limit=limit, cursor=cursor, newest_first=True)

    async def _audit(self, db: AsyncSession, actor: Actor, action: str, subscription: WebhookSubscription,
                     *, before: dict | None = None, after: dict | None = None) -> None:
        await self.audit.record(db, actor, action, org_id=subscription.org_id, target_type="webhook",
                                target_id=subscription.id, before=before, after=after)
