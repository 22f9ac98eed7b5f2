"""What the self-service flows outside sign-in (registration, password reset) share: a row with a
state and a lifetime, bound to the browser that started it, holding what the person typed sealed.

Every step loads the flow under a row lock and checks, in this order, that its id could be one,
that it exists and is alive and that this browser started it (else "expired": the answer for a
leaked id is the same as for an old one), then that it is in the step's state (else "already done").
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import UTCDateTime, new_id, utcnow
from idp.keys.crypto import seal, unseal
from idp.security import keyed_hash, same

if TYPE_CHECKING:
    from idp.services import Services

_FLOW_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the alphabet of db.new_id()


class BoundFlowColumns:
    """The columns both flow tables have (each model adds its own)."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    state: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8))  # email | sms
    # HMAC of the browser's CSRF cookie: only the browser that started the flow can continue it.
    browser_hash: Mapped[str] = mapped_column(String(64))
    login_flow_id: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


F = TypeVar("F", bound=BoundFlowColumns)


def login_flow_or_none(login_flow_id: str | None) -> str | None:
    """The sign-in flow to go back to, if what the form carried could be a flow id at all."""
    return login_flow_id if login_flow_id and _FLOW_ID.fullmatch(login_flow_id) else None


class BoundFlows(Generic[F]):
    """Binding, loading and sealing for a service whose flows are `model` rows; a refused load
    raises `error` with `expired` or `already_done` as its (page) message."""

    model: type[F]
    error: type[Exception]
    expired: str
    already_done: str

    def __init__(self, services: Services, key: bytes) -> None:
        self.s = services
        self.key = key

    def browser_hash(self, browser: str) -> str:
        return keyed_hash(self.key, f"browser\x00{browser}")

    def seal(self, value: str, aad: str) -> bytes:
        """`value` sealed with `aad` (naming the flow) as associated data."""
        return seal(self.key, value.encode(), aad)

    def unseal(self, sealed: bytes, aad: str) -> str:
        return unseal(self.key, sealed, aad).decode()

    async def load_bound(self, db: AsyncSession, flow_id: str | None, state: str | tuple[str, ...], *,
                         browser: str | None, lock: bool) -> F:
        """The flow in `state` (or one of the states), if this browser started it and it is still alive."""
        if not isinstance(flow_id, str) or not _FLOW_ID.fullmatch(flow_id):
            raise self.error(self.expired)
        query = select(self.model).where(self.model.id == flow_id)
        if lock:
            query = query.with_for_update()
        flow = (await db.execute(query)).scalar_one_or_none()
        if (flow is None or flow.expires_at <= utcnow() or browser is None
                or not same(flow.browser_hash, self.browser_hash(browser))):
            raise self.error(self.expired)
        if flow.state not in ((state,) if isinstance(state, str) else state):
            raise self.error(self.already_done)
        return flow
