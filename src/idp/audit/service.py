"""Writing audit events: `await audit.record(db, actor, "member.removed", org_id=..., ...)`.

The event joins the caller's transaction: a change that rolls back leaves no event, and an event
never exists without its change.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from idp.audit.models import AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in person, an operator at the CLI, an integrator's client, the system."""

    type: str
    id: str | None = None

    @classmethod
    def user(cls, user_id: str) -> Actor:
        return cls("user", user_id)

    @classmethod
    def operator(cls, name: str | None = None) -> Actor:
        return cls("operator", name)

    @classmethod
    def client(cls, client_id: str) -> Actor:
        return cls("client", client_id)


SYSTEM = Actor("system")


class AuditLog:
    async def record(self, db: AsyncSession, actor: Actor, action: str, *, org_id: str | None = None,
                     target_type: str | None = None, target_id: str | None = None,
                     before: dict | None = None, after: dict | None = None) -> AuditEvent:
        event = AuditEvent(actor_type=actor.type, actor_id=actor.id, org_id=org_id, action=action,
                           target_type=target_type, target_id=target_id, before=before, after=after)
        db.add(event)
        await db.flush()
        return event

    async def events(self, db: AsyncSession, *, org_id: str | None = None, action: str | None = None,
                     limit: int = 100) -> list[AuditEvent]:
        query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id).limit(limit)
        if org_id is not None:
            query = query.where(AuditEvent.org_id == org_id)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        return list((await db.execute(query)).scalars())
