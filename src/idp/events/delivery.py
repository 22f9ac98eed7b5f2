"""The webhook delivery worker: the courier's outbox pattern (courier/service.py) over HTTP.

1. claim: `UPDATE … SET attempts = attempts + 1, next_attempt_at = now + lease WHERE id = :id AND
   state = 'pending' AND next_attempt_at <= now` — one worker of many wins a row; a worker that
   dies mid-send leaves a lease that runs out, and the delivery is sent again (at least once:
   receivers deduplicate on `webhook-id`, the delivery id, the same on every attempt);
2. POST the signed body, outside any transaction, redirects not followed, to public addresses
   only (egress.py), the whole attempt — connecting, sending, the answer's status and headers —
   within `timeout_seconds` (asyncio.timeout: httpx's own timeouts are per read, which a
   slow-dripping endpoint defeats). The answer's body is never read: only its status counts, and a
   huge or endless body must not hold a worker or its memory;
3. mark, fenced on the claimed `attempts`: delivered on a 2xx, else pending again with exponential
   backoff, or failed after the last attempt. The subscription counts failed attempts in a row and
   keeps its last errors; it is disabled (and the audit log says so) only on a sustained failure:
   at least `disable_after` failed attempts in a row AND failing for `disable_after_seconds` (a
   short outage that fails a backlog of queued deliveries once each does not disable it).

A worker claims only as many deliveries as it sends at once (CONCURRENCY), so every claimed one is
attempted within about `timeout_seconds` of its claim, well inside the lease (settings.py keeps the
lease longer than the timeout): a lease does not run out while its delivery waits its turn, and
another worker does not send it a second time.

Deliveries of a disabled subscription wait — events go on being queued for it — and are sent if
it is enabled again; those still waiting after `retention_seconds` expire (marked failed).

The worker is also the webhooks' and the API's housekeeping loop (`housekeep`, at most every
PURGE_EVERY seconds): it deletes delivered and failed deliveries older than `retention_seconds`,
and expired Idempotency-Key records. It runs in every server process (IDP_WEBHOOKS_IN_PROCESS)
or in `idp webhooks run`; running it on many nodes at once is harmless.

Logs carry the delivery id and the outcome, never the secret or the URL's query.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from idp.audit.service import SYSTEM, AuditLog
from idp.db import Database, utcnow
from idp.db.polling import poll
from idp.events import signing
from idp.events.egress import GuardedTransport
from idp.events.models import WebhookDelivery, WebhookSubscription
from idp.events.urls import redacted
from idp.keys.crypto import unseal

if TYPE_CHECKING:
    from idp.events.service import Limits

log = logging.getLogger("idp.webhooks")

LAST_ERRORS = 5
CONCURRENCY = 10  # deliveries in flight at once: one slow endpoint must not hold up the rest
BATCH_SIZE = CONCURRENCY  # claimed at once: all of them are sent at once, within the lease
PURGE_EVERY = 300.0  # seconds between two rounds of housekeeping in one worker


@dataclass(frozen=True)
class Purged:
    deliveries: int = 0  # delivered or failed, older than the retention
    expired: int = 0  # pending deliveries of a disabled subscription, older than the retention
    idempotency_records: int = 0


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    subscription_id: str
    url: str
    secret: str
    body: bytes
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status (None: no HTTP answer), an error kind and a message."""

    status: int | None
    error: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class DeliveryWorker:
    def __init__(self, key: bytes, audit: AuditLog, limits: Limits) -> None:
        self.key = key
        self.audit = audit
        self.limits = limits
        # The lease must outlast an attempt (bounded by the timeout) and its mark.
        self.lease = timedelta(seconds=max(limits.lease_seconds, limits.timeout_seconds + 30))
        self.retention = timedelta(seconds=limits.retention_seconds)
        self._last_housekeeping: float | None = None

    async def deliver_due(self, database: Database, *, now: datetime | None = None) -> DeliveryReport:
        """Send the deliveries due now: up to BATCH_SIZE, all at once. Safe to run on many nodes
        at once."""
        claimed = await database.run(lambda db: self._claim(db, now or utcnow()))
        if not claimed:
            return DeliveryReport()
        gate = asyncio.Semaphore(CONCURRENCY)
        transport = GuardedTransport(allow_loopback=self.limits.allow_http_loopback)
        async with httpx.AsyncClient(transport=transport, timeout=self.limits.timeout_seconds,
                                     follow_redirects=False, trust_env=False) as client:
            async def one(item: Claimed) -> str:
                async with gate:
                    outcome = await self._send(client, item)
                return await self._mark(database, item, outcome)

            states = await asyncio.gather(*(one(item) for item in claimed))
        return DeliveryReport(delivered=states.count("delivered"), retried=states.count("pending"),
                              failed=states.count("failed"))

    async def run_forever(self, database: Database, *, interval: float, stop: asyncio.Event) -> None:
        """The loop of the server's lifespan (or a process of its own), until `stop` is set. A
        full batch is followed at once by the next round, so a backlog drains without waiting."""
        async def round_() -> bool:
            if self._last_housekeeping is None or time.monotonic() - self._last_housekeeping >= PURGE_EVERY:
                self._last_housekeeping = time.monotonic()
                try:
                    await self.housekeep(database)
                except Exception:  # noqa: BLE001 - housekeeping waits for its next turn
                    log.exception("webhook housekeeping failed")
            report = await self.deliver_due(database)
            return report.delivered + report.retried + report.failed >= BATCH_SIZE

        await poll(round_, interval=interval, stop=stop, log=log, name="webhook")

    async def housekeep(self, database: Database, *, now: datetime | None = None) -> Purged:
        """Delete what nobody needs any more: finished deliveries past the retention, and expired
        Idempotency-Key records; expire what a disabled subscription kept waiting that long."""
        from idp.api.http import purge_expired  # the API's records; imported late: api imports us

        now = now or utcnow()
        cutoff = now - self.retention

        async def purge(db: AsyncSession) -> Purged:
            disabled = select(WebhookSubscription.id).where(WebhookSubscription.enabled.is_(False))
            expired = await db.execute(update(WebhookDelivery).where(
                WebhookDelivery.state == "pending", WebhookDelivery.created_at < cutoff,
                WebhookDelivery.subscription_id.in_(disabled),
            ).values(state="failed", last_error="expired: its subscription stayed disabled",
                     next_attempt_at=now).execution_options(synchronize_session=False))
            # A failed one is kept a full retention from its end, so that an expired one shows.
            deleted = await db.execute(delete(WebhookDelivery).where(or_(
                and_(WebhookDelivery.state == "delivered", WebhookDelivery.delivered_at < cutoff),
                and_(WebhookDelivery.state == "failed", WebhookDelivery.next_attempt_at < cutoff),
            )).execution_options(synchronize_session=False))
            return Purged(deliveries=deleted.rowcount, expired=expired.rowcount,
                          idempotency_records=await purge_expired(db, now))

        purged = await database.run(purge)
        if purged != Purged():
            log.info("webhook housekeeping", extra={"fields": {
                "deliveries_deleted": purged.deliveries, "deliveries_expired": purged.expired,
                "idempotency_records_deleted": purged.idempotency_records}})
        return purged

    # ---- steps ----------------------------------------------------------------------------------

    async def _claim(self, db: AsyncSession, now: datetime) -> list[Claimed]:
        candidates = (await db.execute(
            select(WebhookDelivery.id)
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now,
                   WebhookSubscription.enabled.is_(True))
            .order_by(WebhookDelivery.next_attempt_at).limit(BATCH_SIZE))).scalars().all()
        claimed = []
        for delivery_id in candidates:
            won = await db.execute(update(WebhookDelivery).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.state == "pending",
                WebhookDelivery.next_attempt_at <= now,
            ).values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=now + self.lease))
            if won.rowcount != 1:
                continue  # another worker got it first
            delivery, subscription = (await db.execute(
                select(WebhookDelivery, WebhookSubscription)
                .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
                .where(WebhookDelivery.id == delivery_id))).one()
            try:
                secret = unseal(self.key, subscription.secret, subscription.id).decode()
            except Exception as exc:  # noqa: BLE001 - sealed under another key: no retry can help
                await db.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(
                    state="failed", last_error="cannot open the subscription's secret", next_attempt_at=now))
                log.error("webhook delivery failed: cannot open the secret",
                          extra={"fields": {"delivery_id": delivery_id, "error": type(exc).__name__}})
                continue
            body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
            claimed.append(Claimed(delivery.id, subscription.id, subscription.url, secret, body,
                                   delivery.attempts))
        return claimed

    async def _send(self, client: httpx.AsyncClient, item: Claimed) -> Outcome:
        headers = signing.headers(item.secret, item.delivery_id, int(time.time()), item.body)
        try:
            async with asyncio.timeout(self.limits.timeout_seconds):
                # Streamed, and the body never read: leaving the block closes the connection.
                async with client.stream("POST", item.url, content=item.body, headers=headers) as reply:
                    status, reason = reply.status_code, reply.reason_phrase
        except (httpx.TimeoutException, TimeoutError):
            return Outcome(None, "timeout", f"no answer within {self.limits.timeout_seconds:g} s")
        except httpx.HTTPError as exc:
            kind = "connection" if isinstance(exc, httpx.ConnectError) else "network"
            message = str(exc).replace(item.url, redacted(item.url)) or type(exc).__name__
            return Outcome(None, kind, message[:200])
        except Exception as exc:  # noqa: BLE001 - one bad endpoint must not stop the others
            return Outcome(None, "unexpected", type(exc).__name__)
        if 300 <= status < 400:
            return Outcome(status, message="redirects are not followed")
        return Outcome(status, message=f"HTTP {status} {reason}"[:200])

    async def _mark(self, database: Database, item: Claimed, outcome: Outcome) -> str:
        now = utcnow()
        if outcome.ok:
            state, values = "delivered", {"state": "delivered", "delivered_at": now, "last_error": None}
        elif item.attempts >= self.limits.max_attempts:
            # next_attempt_at of a failed delivery: when it failed (the retention counts from it).
            state, values = "failed", {"state": "failed", "last_error": outcome.message[:500],
                                       "next_attempt_at": now}
        else:
            delay = min(self.limits.backoff_seconds * 2 ** (item.attempts - 1), self.limits.backoff_max_seconds)
            state = "pending"
            values = {"last_error": outcome.message[:500], "next_attempt_at": now + timedelta(seconds=delay)}

        async def mark(db: AsyncSession) -> bool:
            done = await db.execute(update(WebhookDelivery).where(
                WebhookDelivery.id == item.delivery_id, WebhookDelivery.attempts == item.attempts,
                WebhookDelivery.state == "pending").values(**values))
            if done.rowcount != 1:
                return False  # our lease ran out and another worker owns the delivery now
            await self._count(db, item.subscription_id, outcome, now)
            return True

        if not await database.run(mark):
            log.warning("webhook delivery result dropped: its lease ran out or it was deleted",
                        extra={"fields": {"delivery_id": item.delivery_id, "attempt": item.attempts}})
            return "lost"
        log_method = log.info if outcome.ok else log.warning
        log_method("webhook delivery %s", state, extra={"fields": {
            "delivery_id": item.delivery_id, "subscription_id": item.subscription_id,
            "attempt": item.attempts, "status": outcome.status, "error": outcome.error}})
        return state

    async def _count(self, db: AsyncSession, subscription_id: str, outcome: Outcome, now: datetime) -> None:
        """The subscription's failures in a row, its last errors, and disabling on a sustained
        failure. Each error entry carries `since`, when the current run of failures began (the
        first failure after a success or a re-enabling), so the run's age needs no column."""
        subscription = (await db.execute(select(WebhookSubscription).where(
            WebhookSubscription.id == subscription_id).with_for_update())).scalar_one_or_none()
        if subscription is None:
            return  # deleted meanwhile
        if outcome.ok:
            if subscription.consecutive_failures:
                subscription.consecutive_failures = 0
            return
        stamp = now.isoformat().replace("+00:00", "Z")
        since = failing_since(subscription) or stamp
        entry = {"at": stamp, "message": outcome.message}
        entry |= {"status": outcome.status} if outcome.status is not None else {"error": outcome.error}
        subscription.last_errors = [entry | {"since": since}, *(subscription.last_errors or [])][:LAST_ERRORS]
        subscription.consecutive_failures += 1
        failing_for = (now - datetime.fromisoformat(since.replace("Z", "+00:00"))).total_seconds()
        if (subscription.enabled and subscription.consecutive_failures >= self.limits.disable_after
                and failing_for >= self.limits.disable_after_seconds):
            subscription.enabled = False
            subscription.disabled_reason = (
                f"{subscription.consecutive_failures} failed attempts in a row since {since}")[:200]
            await self.audit.record(db, SYSTEM, "webhook.disabled", org_id=subscription.org_id,
                                    target_type="webhook", target_id=subscription.id,
                                    after={"enabled": False, "reason": subscription.disabled_reason})
            log.warning("webhook subscription disabled after failures", extra={"fields": {
                "subscription_id": subscription.id, "failures": subscription.consecutive_failures}})


def failing_since(subscription: WebhookSubscription) -> str | None:
    """When the subscription's current run of failed attempts began (ISO 8601), None if none."""
    if not subscription.consecutive_failures or not subscription.last_errors:
        return None
    return subscription.last_errors[0].get("since") or subscription.last_errors[-1].get("at")
