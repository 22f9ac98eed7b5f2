from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from idp.audit.models import AuditEvent


class AuditEventOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "Qm9sZEZhbGNvbjEyMzQ1Ng", "at": "2026-12-03T08:00:00Z", "action": "member.role_changed",
        "actor": {"type": "client", "id": "idpc_hr_system", "client_id": "idpc_hr_system"},
        "ip": "203.0.113.7", "org_id": "b3JnX2FjbWU", "target": {"type": "user", "id": "dXNlcl8x"},
        "before": {"role": "member"}, "after": {"role": "admin"}}]})

    id: str
    at: datetime
    action: str
    actor: dict[str, str | None]
    ip: str | None
    org_id: str | None
    target: dict[str, str | None] | None
    before: dict | None
    after: dict | None

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls(
            id=event.id, at=event.at, action=event.action, ip=event.ip, org_id=event.org_id,
            actor={"type": event.actor_type, "id": event.actor_id, "client_id": event.client_id},
            target={"type": event.target_type, "id": event.target_id} if event.target_type else None,
            before=event.before, after=event.after)
