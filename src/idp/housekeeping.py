"""Housekeeping: deleting the sign-in and token rows nothing can use any more, so that the tables a
request reads stay the size of what is live, not of everything ever issued (a grant, a flow and
a code per sign-in add up to about a kilobyte).

A row goes a retention period (a day, or longer with longer token lifetimes) after it stopped
being usable, so that a late replay still meets its row and gets the answer it would have got:
- flows (sign-in, reset, registration), codes, one-time codes, browser sessions: expired;
- refresh tokens: expired (a used one is kept until then: presenting it again revokes its family);
- a client assertion's jti, an access token on the deny-list: expired (the JWT's exp refuses it);
- a grant (token family): revoked, or with no refresh token left and no access or ID token of
  it still within its lifetime; its refresh tokens go with it (ON DELETE CASCADE).

Every node runs it (`IDP_HOUSEKEEPING_SECONDS`; `idp purge` runs one round from the command
line): deletes are idempotent, and each batch is a transaction of its own, so neither the write
lock (SQLite) nor row locks are held for long.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, or_, select

from idp.db import Database, utcnow
from idp.db.polling import poll
from idp.flows.models import AuthorizationFlow
from idp.flows.recovery import PasswordResetFlow
from idp.flows.registration import RegistrationFlow
from idp.oauth.models import AuthorizationCode, Grant, RefreshToken, RevokedAccessToken, UsedClientAssertion
from idp.otp.models import OneTimeCode
from idp.sessions.models import BrowserSession

log = logging.getLogger("idp.housekeeping")

BATCH = 1000  # rows per delete: one short transaction each
MIN_RETENTION = timedelta(days=1)


class Housekeeping:
    def __init__(self, *, access_token_ttl: int, id_token_ttl: int) -> None:
        # Past the lifetime of any access or ID token, which carry their grant's id.
        self.retention = max(MIN_RETENTION, timedelta(seconds=max(access_token_ttl, id_token_ttl)) * 2)

    async def purge(self, database: Database, now: datetime | None = None) -> dict[str, int]:
        """One round: every kind of row, in batches until none is left. The count per table."""
        now = now or utcnow()
        horizon = now - self.retention
        deleted: dict[str, int] = {}
        for table, key, dead in self._dead_rows(now, horizon):
            total = 0
            # The condition again outside the batch's subquery: a key need not be the whole
            # primary key (a jti is unique per client only).
            statement = (delete(table).where(key.in_(select(key).where(dead).limit(BATCH)), dead)
                         .execution_options(synchronize_session=False))
            while True:
                async def batch(db, statement=statement) -> int:
                    return (await db.execute(statement)).rowcount
                count = await database.run(batch)
                total += count
                if count < BATCH:
                    break
            if total:
                deleted[table.__tablename__] = total
        if deleted:
            log.info("housekeeping", extra={"fields": {"deleted": deleted}})
        return deleted

    @staticmethod
    def _dead_rows(now: datetime, horizon: datetime) -> list[tuple[type, ColumnElement, ColumnElement]]:
        still_used = exists().where(RefreshToken.grant_id == Grant.id,
                                    or_(RefreshToken.expires_at > horizon, RefreshToken.created_at > horizon))
        return [
            (AuthorizationFlow, AuthorizationFlow.id, AuthorizationFlow.expires_at < horizon),
            (PasswordResetFlow, PasswordResetFlow.id, PasswordResetFlow.expires_at < horizon),
            (RegistrationFlow, RegistrationFlow.id, RegistrationFlow.expires_at < horizon),
            (AuthorizationCode, AuthorizationCode.code_hash, AuthorizationCode.expires_at < horizon),
            (OneTimeCode, OneTimeCode.id, OneTimeCode.expires_at < horizon),
            (BrowserSession, BrowserSession.id, BrowserSession.expires_at < horizon),
            (UsedClientAssertion, UsedClientAssertion.jti, UsedClientAssertion.expires_at < now),
            (RevokedAccessToken, RevokedAccessToken.jti, RevokedAccessToken.expires_at < now),
            (RefreshToken, RefreshToken.token_hash, RefreshToken.expires_at < horizon),
            # A revoked family a retention after its revocation; a live one once nothing of it
            # can be used: no refresh token left within the retention, no token minted since.
            (Grant, Grant.id, or_(Grant.revoked_at < horizon, (Grant.created_at < horizon) & ~still_used)),
        ]

    async def run_forever(self, database: Database, *, interval: float, stop: asyncio.Event) -> None:
        """The server's loop: a round every `interval` seconds (the first after one interval)."""
        async def round_() -> bool:
            await self.purge(database)
            return False

        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except asyncio.TimeoutError:
            await poll(round_, interval=interval, stop=stop, log=log, name="housekeeping")

