"""Writing audit events: `await audit.record(db, actor, "member.removed", org_id=..., ...)`.

The event joins the caller's transaction: a change that rolls back leaves no event, and an event
never exists without its change. The request's IP comes from the request context (observability),
so no service has to carry it. Listeners (the webhook outbox, events/) see every event in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from idp.audit.models import AuditEvent
from idp.db.paging import paginate
from idp.observability import client_ip_var

Listener = Callable[[AsyncSession, AuditEvent], Awaitable[None]]


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in person, an operator at the CLI, an integrator's client, the system.

    `client_id`: the client the actor came through (an integrator's own id for type "client").
    `org_id`: for a client bound to one organisation, that organisation; it may act on nothing
    else (orgs/service.py treats every other organisation as not found)."""

    type: str
    id: str | None = None
    client_id: str | None = None
    org_id: str | None = None

    @classmethod
    def user(cls, user_id: str, client_id: str | None = None) -> Actor:
        return cls("user", user_id, client_id)

    @classmethod
    def operator(cls, name: str | None = None) -> Actor:
        return cls("operator", name)

    @classmethod
    def client(cls, client_id: str, org_id: str | None = None) -> Actor:
        return cls("client", client_id, client_id, org_id)


SYSTEM = Actor("system")


class AuditLog:
    def __init__(self) -> None:
        self.listeners: list[Listener] = []

    async def record(self, db: AsyncSession, actor: Actor, action: str, *, org_id: str | None = None,
                     target_type: str | None = None, target_id: str | None = None,
                     before: dict | None = None, after: dict | None = None) -> AuditEvent:
        event = AuditEvent(actor_type=actor.type, actor_id=actor.id, client_id=actor.client_id,
                           ip=client_ip_var.get(), org_id=org_id, action=action,
                           target_type=target_type, target_id=target_id, before=before, after=after)
        db.add(event)
        await db.flush()
        for listener in self.listeners:
            await listener(db, event)
        return event

    async def events(self, db: AsyncSession, *, org_id: str | None = None, action: str | None = None,
                     limit: int = 100) -> list[AuditEvent]:
        query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id).limit(limit)
        if org_id is not None:
            query = query.where(AuditEvent.org_id == org_id)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        return list((await db.execute(query)).scalars())

    async def page(self, db: AsyncSession, *, limit: int, cursor: str | None, org_id: str | None = None,
                   action: str | None = None, target_id: str | None = None,
                   only_org: str | None = None) -> tuple[list[AuditEvent], str | None]:
        """Newest first. `only_org`: the caller sees this organisation's events and no others."""
        query = select(AuditEvent)
        if only_org is not None:
            query = query.where(AuditEvent.org_id == only_org)
        for column, value in ((AuditEvent.org_id, org_id), (AuditEvent.action, action),
                              (AuditEvent.target_id, target_id)):
            if value is not None:
                query = query.where(column == value)
        return await paginate(db, query, time_column=AuditEvent.at, id_column=AuditEvent.id,
                              limit=limit, cursor=cursor, newest_first=True)
