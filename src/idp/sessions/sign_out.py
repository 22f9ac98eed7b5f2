"""Signing an account out everywhere: what a password reset, a temporary password set by an
administrator and disabling the account do, because whoever knew the old password must not stay
signed in anywhere, nor finish a sign-in or a password reset already under way."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from idp.db import utcnow
from idp.oauth.grants.base import revoke_grant
from idp.oauth.models import Grant
from idp.sessions.models import BrowserSession


async def end_everything(db: AsyncSession, user_id: str) -> None:
    """End every browser session of the account and revoke every grant (token family): its
    access tokens stop passing introspection and userinfo, its refresh tokens stop working. Sign-ins
    in progress that already passed a factor of the account end too: one parked at the "choose a
    new password" step with an intercepted temporary password must not outlive a new one. So do
    the account's unfinished password resets: a reset link opened by whoever intercepted it must
    not overwrite the password just set, nor reset a disabled account's."""
    from idp.flows.models import AuthorizationFlow, FlowState
    from idp.flows.recovery import end_resets

    now = utcnow()
    await end_resets(db, user_id, now)
    await db.execute(update(BrowserSession).where(
        BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None)).values(ended_at=now))
    await db.execute(update(AuthorizationFlow).where(
        AuthorizationFlow.user_id == user_id,
        AuthorizationFlow.state.not_in([FlowState.COMPLETE, FlowState.DENIED]),
    ).values(expires_at=now))
    grants = (await db.execute(select(Grant.id).where(
        Grant.user_id == user_id, Grant.revoked_at.is_(None)))).scalars().all()
    for grant_id in grants:
        await revoke_grant(db, grant_id)
