"""The courier: a transactional outbox for email and SMS.

`enqueue` adds a row inside the caller's transaction, so a message exists exactly when the change
that caused it (a new code, a reset) commits. `deliver_due` sends what is due, outside any
transaction while it talks to the network:

1. claim: `UPDATE … SET attempts = attempts + 1, next_attempt_at = now + lease WHERE id = :id AND
   state = 'queued' AND next_attempt_at <= now` — of two workers only one updates the row, and a
   worker that dies mid-send leaves a lease that expires, so the message is retried (at least once).
   Each message is claimed just before its own send, not with the batch: behind a slow gateway
   (one that hangs until the provider's timeout) the later messages of a batch would otherwise see
   their leases run out before they were tried, and another worker would send them too;
2. send through the channel's provider;
3. mark: sent, or queued again with exponential backoff, or failed after the last attempt. The mark
   is fenced on the claimed `attempts`, so a worker whose lease ran out cannot overwrite the result
   of the worker that re-claimed the row.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from idp.courier.models import CourierMessage
from idp.courier.providers import DeliveryError, Outgoing, Provider, redact
from idp.courier.templates import pick_locale, render
from idp.db import Database, new_id, utcnow
from idp.db.polling import poll
from idp.keys.crypto import seal, unseal

log = logging.getLogger("idp.courier")

CHANNELS = ("email", "sms")


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0


class Courier:
    def __init__(self, key: bytes, providers: dict[str, Provider], *, max_attempts: int = 5,
                 backoff_seconds: float = 30.0, backoff_max_seconds: float = 3600.0,
                 lease_seconds: float = 120.0, batch_size: int = 50) -> None:
        self.key = key
        self.providers = providers
        self.max_attempts = max_attempts
        self.backoff = backoff_seconds
        self.backoff_max = backoff_max_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.batch_size = batch_size

    async def enqueue(self, db: AsyncSession, *, channel: str, recipient: str, kind: str,
                      locale: str | None, params: dict) -> str:
        """Queue a message in the caller's transaction; returns its id. Renders once now, so an
        unknown kind fails the caller's request and not, later, the worker."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        locale = pick_locale(locale)
        render(channel, kind, locale, params)
        message_id = new_id()
        payload = seal(self.key, json.dumps(params).encode(), f"courier:{message_id}")
        now = utcnow()
        db.add(CourierMessage(id=message_id, channel=channel, recipient=recipient, kind=kind,
                              locale=locale, payload=payload, state="queued", attempts=0,
                              next_attempt_at=now, created_at=now))
        await db.flush()
        log.info("message queued for %s", redact(recipient),
                 extra={"fields": {"channel": channel, "kind": kind, "message_id": message_id}})
        return message_id

    async def deliver_due(self, database: Database, *, now: datetime | None = None) -> DeliveryReport:
        """Send every message that is due now; returns what happened. Safe to run on many nodes."""
        due = await database.run(lambda db: self._due(db, now or utcnow()))
        sent = retried = failed = 0
        for message_id in due:
            claimed = await database.run(lambda db, message_id=message_id: self._claim(
                db, message_id, now or utcnow()))
            if claimed is None:
                continue  # another worker got it first, or it cannot be opened
            outcome = await self._send_one(database, *claimed)
            sent += outcome == "sent"
            retried += outcome == "queued"
            failed += outcome == "failed"
        return DeliveryReport(sent=sent, retried=retried, failed=failed)

    async def run_forever(self, database: Database, *, interval: float = 2.0,
                          stop: asyncio.Event | None = None) -> None:
        """A worker loop for the application's lifespan or a separate process. Runs until `stop`
        is set (it then returns after the round in progress) or the task is cancelled. A full
        batch is followed at once by the next round, so a backlog drains without waiting."""
        async def round_() -> bool:
            report = await self.deliver_due(database)
            return report.sent + report.retried + report.failed >= self.batch_size

        await poll(round_, interval=interval, stop=stop or asyncio.Event(), log=log, name="courier")

    async def counts(self, database: Database) -> dict[str, int]:
        """How many messages are in each state (never what they say or to whom)."""
        async def work(db: AsyncSession) -> dict[str, int]:
            rows = (await db.execute(select(CourierMessage.state, func.count())
                                     .group_by(CourierMessage.state))).all()
            return {"queued": 0, "sent": 0, "failed": 0} | {state: n for state, n in rows}
        return await database.run(work)

    # ---- steps ----------------------------------------------------------------------------------

    async def _due(self, db: AsyncSession, now: datetime) -> list[str]:
        return list((await db.execute(select(CourierMessage.id).where(
            CourierMessage.state == "queued", CourierMessage.next_attempt_at <= now,
        ).order_by(CourierMessage.next_attempt_at).limit(self.batch_size))).scalars().all())

    async def _claim(self, db: AsyncSession, message_id: str, now: datetime) -> tuple[Outgoing, int] | None:
        won = await db.execute(update(CourierMessage).where(
            CourierMessage.id == message_id, CourierMessage.state == "queued",
            CourierMessage.next_attempt_at <= now,
        ).values(attempts=CourierMessage.attempts + 1, next_attempt_at=now + self.lease))
        if won.rowcount != 1:
            return None
        row = (await db.execute(select(CourierMessage).where(
            CourierMessage.id == message_id))).scalar_one()
        try:
            params = json.loads(unseal(self.key, row.payload, f"courier:{row.id}"))
            rendered = render(row.channel, row.kind, row.locale, params)
        except Exception as exc:  # noqa: BLE001 - one unreadable message must not wedge the queue
            # Sealed under another key, or a kind/locale no longer shipped: no retry can help.
            await db.execute(update(CourierMessage).where(CourierMessage.id == message_id).values(
                state="failed", last_error=f"cannot open or render the message ({type(exc).__name__})"))
            log.error("message failed: cannot open or render it",
                      extra={"fields": {"message_id": message_id, "error": type(exc).__name__}})
            return None
        return (Outgoing(id=row.id, channel=row.channel, recipient=row.recipient, kind=row.kind,
                         subject=rendered.subject, body=rendered.body), row.attempts)

    async def _send_one(self, database: Database, message: Outgoing, attempts: int) -> str:
        provider = self.providers.get(message.channel)
        error: str | None = None
        permanent = False
        if provider is None:
            error, permanent = f"no provider for {message.channel}", True
        else:
            try:
                await provider.send(message)
            except DeliveryError as exc:
                error, permanent = str(exc), exc.permanent
            except Exception as exc:  # noqa: BLE001 - a provider bug must not stop the other messages
                error = f"unexpected {type(exc).__name__}"
        now = utcnow()
        if error is None:
            state, values = "sent", {"state": "sent", "sent_at": now, "last_error": None}
        elif permanent or attempts >= self.max_attempts:
            state, values = "failed", {"state": "failed", "last_error": error[:500]}
        else:
            delay = min(self.backoff * 2 ** (attempts - 1), self.backoff_max)
            state = "queued"
            values = {"last_error": error[:500], "next_attempt_at": now + timedelta(seconds=delay)}

        async def mark(db: AsyncSession) -> None:
            await db.execute(update(CourierMessage).where(
                CourierMessage.id == message.id, CourierMessage.attempts == attempts,
                CourierMessage.state == "queued",
            ).values(**values))

        await database.run(mark)
        log_method = log.info if state == "sent" else log.warning
        log_method("message %s to %s", state, redact(message.recipient),
                   extra={"fields": {"message_id": message.id, "attempt": attempts, "error": error}})
        return state
