"""Password reset: a state machine persisted in `password_reset_flows`.

    start ──▶ AWAITING_CODE ──right code──▶ CODE_VERIFIED ──new password ok──▶ COMPLETED

`start` answers the same whether or not the typed email or phone number belongs to an account: a
flow is created either way, and only a known account gets a code. Every step loads the flow under
a row lock, checks its state, its lifetime and the browser that started it, then moves it on.
The last step sets the password, ends every browser session and token family of the account and
notifies the person; it never signs anyone in (the person signs in normally, second factor too).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ForeignKey, LargeBinary, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from idp.accounts.errors import AccountError
from idp.accounts.models import Identifier, User
from idp.accounts.phones import PhoneNumberError
from idp.db import Base, new_id, utcnow
from idp.flows.bound import BoundFlowColumns, BoundFlows, login_flow_or_none
from idp.otp.service import CodeInvalid, Purpose, ResendTooSoon, TooManyAttempts
from idp.sessions.sign_out import end_everything
from idp.ui.i18n import N_

EXPIRED = N_("This password reset link has expired. Start again.")
ALREADY_DONE = N_("This step is already done. Start again if you need to.")
FLOW_TTL = timedelta(minutes=15)


class ResetState(enum.StrEnum):
    AWAITING_CODE = "awaiting_code"
    CODE_VERIFIED = "code_verified"
    COMPLETED = "completed"


class PasswordResetFlow(BoundFlowColumns, Base):
    __tablename__ = "password_reset_flows"

    # The normalised email or E.164 number, sealed with the flow id as associated data; NULL when
    # what was typed is neither (the flow still exists, so the answer is the same).
    destination_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


class RecoveryError(Exception):
    """Unknown, expired, spent, or another browser's flow. The message is shown on the page."""


@dataclass
class ResetDone:
    login_flow_id: str | None


class RecoveryService(BoundFlows[PasswordResetFlow]):
    model, error, expired, already_done = PasswordResetFlow, RecoveryError, EXPIRED, ALREADY_DONE

    # ---- start ----------------------------------------------------------------------------------

    async def start(self, db: AsyncSession, typed_identifier: str, *, ip: str, locale: str,
                    browser: str, login_flow_id: str | None = None) -> PasswordResetFlow:
        """A new flow, whatever was typed. Raises only RateLimited (for any valid phone number,
        known or not, so a 429 says nothing about accounts either)."""
        typed = (typed_identifier or "").strip()
        if "\x00" in typed:
            typed = ""
        channel = "email" if "@" in typed else "sms"
        destination: str | None = None
        try:
            destination = self.s.accounts.normalise_identifier("email" if channel == "email" else "phone", typed)
        except AccountError:  # neither an email address nor a phone number
            destination = None
        user = await self.s.accounts.find_by_login(db, destination) if destination else None
        if channel == "sms" and destination is not None:
            # Every valid number is counted, known or not, so a 429 says nothing about accounts.
            try:
                await self.s.sms_guard.check_send(ip=ip, number_e164=destination,
                                                  account_id=user.id if user else None)
            except PhoneNumberError:
                destination, user = None, None  # a landline or a country we do not text

        now = utcnow()
        flow = PasswordResetFlow(
            id=new_id(), state=ResetState.AWAITING_CODE.value, channel=channel,
            user_id=user.id if user else None, browser_hash=self.browser_hash(browser),
            login_flow_id=login_flow_or_none(login_flow_id),
            locale=(locale or "en")[:16], created_at=now, expires_at=now + FLOW_TTL,
        )
        if destination is not None:
            flow.destination_sealed = self.seal(destination, flow.id)
        db.add(flow)
        await db.flush()
        if user is None:
            return flow

        try:
            issued = await self.s.otp.issue(db, Purpose.PASSWORD_RESET, destination)
        except (ResendTooSoon, TooManyAttempts):
            # The code sent a moment ago stays valid (and a locked destination refuses at the
            # code step): the page must not differ from an unknown account's.
            return flow
        await self.s.courier.enqueue(
            db, channel=channel, recipient=destination, kind="password_reset", locale=flow.locale,
            params={"code": issued.code, "minutes": max(1, issued.ttl_seconds // 60)})
        return flow

    # ---- steps ----------------------------------------------------------------------------------

    async def load(self, db: AsyncSession, flow_id: str | None, state: ResetState, *,
                   browser: str | None, lock: bool = False) -> PasswordResetFlow:
        return await self.load_bound(db, flow_id, state, browser=browser, lock=lock)

    def _destination(self, flow: PasswordResetFlow) -> str | None:
        if flow.destination_sealed is None:
            return None
        return self.unseal(flow.destination_sealed, flow.id)

    async def verify_code(self, db: AsyncSession, flow_id: str | None, code: str, *,
                          browser: str | None) -> PasswordResetFlow:
        """AWAITING_CODE → CODE_VERIFIED, or a CodeProblem (the same public message for all)."""
        flow = await self.load(db, flow_id, ResetState.AWAITING_CODE, browser=browser, lock=True)
        destination = self._destination(flow)
        if flow.user_id is None or destination is None:
            raise CodeInvalid("no account behind this flow")
        await self.s.otp.verify(db, Purpose.PASSWORD_RESET, destination, code or "")
        moved = await db.execute(update(PasswordResetFlow).where(
            PasswordResetFlow.id == flow.id, PasswordResetFlow.state == ResetState.AWAITING_CODE.value,
        ).values(state=ResetState.CODE_VERIFIED.value))
        if moved.rowcount != 1:
            raise RecoveryError(ALREADY_DONE)
        flow.state = ResetState.CODE_VERIFIED.value
        return flow

    async def set_password(self, db: AsyncSession, flow_id: str | None, new_password: str, *,
                           browser: str | None) -> ResetDone:
        """CODE_VERIFIED → COMPLETED: policy, new hash, every session and token family ended,
        the person notified. Raises PasswordRejected (the flow stays at CODE_VERIFIED)."""
        flow = await self.load(db, flow_id, ResetState.CODE_VERIFIED, browser=browser, lock=True)
        user = await db.get(User, flow.user_id) if flow.user_id else None
        if user is None:
            raise RecoveryError(EXPIRED)
        values = (await db.execute(select(Identifier.value).where(
            Identifier.user_id == user.id))).scalars().all()
        has_second_factor = await self.s.factors.has_second_factor(db, user.id)
        password = self.s.password_policy.check(
            new_password, has_second_factor=has_second_factor,
            # A phone-only account has no email: None is no identifier.
            identifiers=tuple(dict.fromkeys(v for v in [user.email, *values] if v)))
        now = utcnow()
        moved = await db.execute(update(PasswordResetFlow).where(
            PasswordResetFlow.id == flow.id, PasswordResetFlow.state == ResetState.CODE_VERIFIED.value,
        ).values(state=ResetState.COMPLETED.value, completed_at=now))
        if moved.rowcount != 1:
            raise RecoveryError(ALREADY_DONE)
        user.password_hash = await self.s.hasher.hash(password)
        # The person chose this password: a temporary one pending from an administrator is gone.
        user.password_must_change, user.password_expires_at = False, None
        # Whoever knew the old password is out: every browser session and every token family.
        await end_everything(db, user.id)
        # Tell the person, on the primary email (a phone-only account has none) and on the
        # channel the reset went through.
        recipients = [("email", user.email)] if user.email else []
        destination = self._destination(flow)
        if destination and (flow.channel, destination) not in recipients:
            recipients.append((flow.channel, destination))
        for channel, recipient in recipients:
            await self.s.courier.enqueue(db, channel=channel, recipient=recipient,
                                         kind="password_changed", locale=flow.locale, params={})
        await db.flush()
        return ResetDone(flow.login_flow_id)
