"""Password reset links: a reset an integrator starts for a person (POST /api/v1/users/{id}/password-reset,
e.g. a help desk), the way Keycloak's execute-actions-email does it.

No browser exists when the request comes, so the flow cannot be bound to one up front. The person
gets a single-use link by email (or SMS to a verified phone); opening it (GET) only shows a page,
so a mail scanner that fetches links spends nothing; its button (POST) binds the flow to that
browser in the state LINK_OPENED, where the ordinary set-password step of flows/recovery.py takes
over (it ends every session and token family, notifies the person and writes `password.reset`).

The link lives in `password_reset_flows` itself:

    request ──▶ LINK_SENT ──open (POST, once)──▶ LINK_OPENED ──new password──▶ COMPLETED
                    │                                  │
                    └──────────────┬───────────────────┘
                                   ▼
                                VOIDED  a newer request; a password set another way (another
                                        reset, a temporary password); the account disabled

An unopened link also stops working when it expires or its account is disabled.

A token is `idprst_` + 256 random bits (the access log redacts it, observability.py). The row's id
is HMAC(key, token), so the database holds no token, the lookup is by primary key, and the id the
browser carries after opening says nothing about the token. Until it is opened the row is bound to
no browser (`browser_hash` is empty, which no browser's hash equals).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, NoReturn

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.errors import AccountDisabled
from idp.accounts.models import User
from idp.accounts.temporary import NoVerifiedDestination, masked
from idp.audit.service import Actor
from idp.db import utcnow
from idp.flows.recovery import FLOW_TTL, PasswordResetFlow, RecoveryError, ResetState, end_resets
from idp.orgs.links import LINK_NOT_VALID, expiry_text
from idp.security import keyed_hash, random_token
from idp.ui.i18n import N_

if TYPE_CHECKING:
    from idp.flows.recovery import RecoveryService

PREFIX = "idprst_"
_TOKEN = re.compile(r"idprst_[A-Za-z0-9_-]{20,80}")  # anything else is refused before any query
LINK_GONE = N_("This password reset link no longer works: it was used already, a newer one was "
               "sent, or it expired. Ask for a new link, or reset your password yourself.")

Channel = Literal["email", "sms"]


class ResetLinkNotFound(RecoveryError):
    """No link has this token (mistyped, cut short, or never made)."""

    status = 404

    def __init__(self) -> None:
        super().__init__(LINK_NOT_VALID)


class ResetLinkGone(RecoveryError):
    """The link existed: it was opened already, replaced, or it expired (or its account was disabled)."""

    status = 410

    def __init__(self) -> None:
        super().__init__(LINK_GONE)


@dataclass(frozen=True)
class LinkSent:
    sent_to: str  # masked: `m***@example.com`, `+358 40 *** **67`
    channel: Channel
    expires_at: datetime


class ResetLinks:
    def __init__(self, recovery: RecoveryService) -> None:
        self.recovery = recovery  # its key seals the destination and binds the browser
        self.s = recovery.s

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=self.s.settings.password_reset_link_ttl)

    def _row_id(self, token: object) -> str | None:
        """The id of the row a token names, or None when it cannot be one of ours."""
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            return None
        return keyed_hash(self.recovery.key, f"link\x00{token}")  # apart from browser hashes

    async def request(self, db: AsyncSession, actor: Actor, user_id: str, channel: Channel) -> LinkSent:
        """Send the person a new link and void any older unused one. Raises AccountNotFound,
        AccountDisabled or NoVerifiedDestination before anything is changed."""
        # The account row is locked so that of two requests at once, one voids the other's link.
        user = await self.s.account_admin.user(db, user_id, lock=True)
        if user.disabled_at is not None:
            raise AccountDisabled()
        # Only a verified address or number: an unverified one may be anyone's.
        destination = (await self.s.factors.verified_destinations(db, user.id)).get(channel)
        if destination is None:
            raise NoVerifiedDestination(channel)

        now = utcnow()
        await self.void_unused(db, user.id, now)
        token = random_token(PREFIX)
        flow = PasswordResetFlow(
            id=self._row_id(token), state=ResetState.LINK_SENT.value, channel=channel, user_id=user.id,
            browser_hash="", login_flow_id=None, locale=(user.locale or self.s.settings.default_locale)[:16],
            created_at=now, expires_at=now + self.ttl,
        )
        # Sealed like a typed destination: set_password tells the person on this channel too.
        flow.destination_sealed = self.recovery.seal(destination, flow.id)
        db.add(flow)
        await db.flush()
        await self.s.courier.enqueue(
            db, channel=channel, recipient=destination, kind="password_reset_link", locale=flow.locale,
            params={"url": f"{self.s.settings.issuer}/reset/link/{token}", "expires": expiry_text(flow.expires_at)})
        await self.s.audit.record(db, actor, "password.reset_requested", target_type="user", target_id=user.id,
                                  after={"channel": channel})
        return LinkSent(masked(destination), channel, flow.expires_at)

    async def void_unused(self, db: AsyncSession, user_id: str, now: datetime) -> None:
        """Every unfinished reset of the person ends before a newer link goes out: an older link,
        sent or already opened (perhaps by whoever intercepted it), and a reset by code under way."""
        await end_resets(db, user_id, now)

    async def check(self, db: AsyncSession, token: object) -> None:
        """Nothing when the link still works; ResetLinkNotFound or ResetLinkGone. Changes nothing."""
        row_id = self._row_id(token)
        if row_id is None:
            raise ResetLinkNotFound()
        if (await db.execute(select(PasswordResetFlow.id).where(*_live(row_id, utcnow())))).first() is None:
            await self._refuse(db, row_id)

    async def open(self, db: AsyncSession, token: object, *, browser: str) -> str:
        """LINK_SENT → LINK_OPENED, bound to `browser`, once: of parallel opens exactly one wins
        (a conditional UPDATE). Returns the flow id for the set-password step."""
        row_id = self._row_id(token)
        if row_id is None:
            raise ResetLinkNotFound()
        now = utcnow()
        opened = await db.execute(update(PasswordResetFlow).where(*_live(row_id, now)).values(
            state=ResetState.LINK_OPENED.value, browser_hash=self.recovery.browser_hash(browser),
            # From here on the flow lives as long as one that started with a code.
            expires_at=now + FLOW_TTL,
        ).execution_options(synchronize_session=False))
        if opened.rowcount != 1:
            await self._refuse(db, row_id)
        return row_id

    @staticmethod
    async def _refuse(db: AsyncSession, row_id: str) -> NoReturn:
        """Why a link does not work: there is no such link, or it is spent (opened, replaced,
        expired, or its account was disabled since)."""
        known = (await db.execute(select(PasswordResetFlow.id).where(PasswordResetFlow.id == row_id))).first()
        raise ResetLinkGone() if known else ResetLinkNotFound()


def _live(row_id: str, now: datetime) -> tuple:
    """The conditions of a link that still works."""
    return (PasswordResetFlow.id == row_id, PasswordResetFlow.state == ResetState.LINK_SENT.value,
            PasswordResetFlow.expires_at > now,
            PasswordResetFlow.user_id.in_(select(User.id).where(User.disabled_at.is_(None))))
