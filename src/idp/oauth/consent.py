"""Remembered consent per user, client and scopes."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from idp.db import utcnow
from idp.oauth.models import Client, Consent

# Scopes that need no consent of their own: they only identify the person.
_IMPLIED = {"openid"}


async def covers(db: AsyncSession, user_id: str, client: Client, scopes: list[str]) -> bool:
    if client.first_party:
        return True
    consent = await db.get(Consent, (user_id, client.client_id))
    granted = set(consent.scopes) if consent else set()
    return set(scopes) - _IMPLIED <= granted


async def remember(db: AsyncSession, user_id: str, client_id: str, scopes: list[str]) -> None:
    consent = await db.get(Consent, (user_id, client_id))
    if consent is None:
        db.add(Consent(user_id=user_id, client_id=client_id, scopes=sorted(set(scopes))))
    else:
        consent.scopes = sorted(set(consent.scopes) | set(scopes))
        consent.granted_at = utcnow()
    await db.flush()
