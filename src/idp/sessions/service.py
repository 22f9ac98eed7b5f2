"""Browser sessions: a database row per signed-in browser, found by the hash of its cookie."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from idp.db import utcnow
from idp.oauth.grants.base import revoke_grant
from idp.oauth.models import Grant
from idp.security import random_token, token_hash
from idp.sessions.models import BrowserSession


class SessionService:
    def __init__(self, ttl_seconds: int) -> None:
        self.ttl = timedelta(seconds=ttl_seconds)

    async def start(self, db: AsyncSession, *, user_id: str, amr: list[str], acr: str | None,
                    auth_time: datetime | None = None, user_agent: str | None = None,
                    methods: list[str] | None = None) -> tuple[BrowserSession, str]:
        """A new session and the cookie value that finds it (returned once, stored hashed).
        `methods`: the sign-in methods by name, first factor first (BrowserSession.methods)."""
        cookie = random_token("idps_")
        now = utcnow()
        session = BrowserSession(
            token_hash=token_hash(cookie), user_id=user_id, amr=amr, acr=acr,
            methods=list(methods) if methods is not None else None,
            auth_time=auth_time or now, expires_at=now + self.ttl,
            user_agent=(user_agent or "")[:200] or None,
        )
        db.add(session)
        await db.flush()
        return session, cookie

    async def from_cookie(self, db: AsyncSession, cookie: str | None) -> BrowserSession | None:
        if not cookie:
            return None
        now = utcnow()
        return (await db.execute(select(BrowserSession).where(
            BrowserSession.token_hash == token_hash(cookie),
            BrowserSession.ended_at.is_(None), BrowserSession.expires_at > now,
        ))).scalar_one_or_none()

    async def get(self, db: AsyncSession, session_id: str) -> BrowserSession | None:
        return await db.get(BrowserSession, session_id)

    async def end(self, db: AsyncSession, session_id: str) -> None:
        await db.execute(update(BrowserSession).where(
            BrowserSession.id == session_id, BrowserSession.ended_at.is_(None)
        ).values(ended_at=utcnow()))

    async def live(self, db: AsyncSession, user_id: str) -> list[BrowserSession]:
        """The account's sessions that are neither ended nor expired, newest first."""
        return list((await db.execute(select(BrowserSession).where(
            BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None),
            BrowserSession.expires_at > utcnow(),
        ).order_by(BrowserSession.created_at.desc(), BrowserSession.id))).scalars())

    async def end_with_grants(self, db: AsyncSession, session_ids: list[str]) -> None:
        """End the sessions and revoke the token families signed in through them: an app that
        got its tokens from a session someone ended must not keep refreshing."""
        if not session_ids:
            return
        await db.execute(update(BrowserSession).where(
            BrowserSession.id.in_(session_ids), BrowserSession.ended_at.is_(None)).values(ended_at=utcnow()))
        grants = (await db.execute(select(Grant.id).where(
            Grant.session_id.in_(session_ids), Grant.revoked_at.is_(None)))).scalars().all()
        for grant_id in grants:
            await revoke_grant(db, grant_id)
