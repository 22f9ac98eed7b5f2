"""Webhook subscriptions and delivery (stub: filled in by the webhooks work)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession

from idp.audit.models import AuditEvent
from idp.db import Database


class WebhookService:
    def __init__(self, key: bytes) -> None:
        self.key = key

    async def enqueue_for_event(self, db: AsyncSession, event: AuditEvent) -> None:
        """Queue a delivery of `event` for every subscription that wants it (caller's transaction)."""

    async def run_forever(self, database: Database, *, interval: float, stop: asyncio.Event) -> None:
        await stop.wait()
