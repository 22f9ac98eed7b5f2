"""Password reset: a state machine persisted in `password_reset_flows`.

    start ──▶ AWAITING_CODE ──right code──▶ CODE_VERIFIED ──new password ok──▶ COMPLETED
    link (API) ──▶ LINK_SENT ──opened in a browser──▶ LINK_OPENED ──new password ok──▶ COMPLETED

The second line is a reset an integrator asked for (flows/reset_links.py): the person proved
nothing to a browser yet, so the emailed or texted link stands for the code, and the flow is bound
to the browser that opens it.

Any state but COMPLETED ends as VOIDED (`end_resets`) when a newer link is sent, a password is set
another way (another reset, a temporary password, the account page) or the account is disabled:
a flow opened by whoever intercepted a link must not overwrite the password just set.

`start` answers the same whether or not the typed email or phone number belongs to an account: a
flow is created either way, and only a known account gets a code. Every step loads the flow under
a row lock, checks its state, its lifetime and the browser that started it, then moves it on.
The last step sets the password, ends every browser session and token family of the account and
notifies the person; it never signs anyone in (the person signs in normally, second factor too).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, LargeBinary, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from idp.accounts.errors import AccountError
from idp.accounts.models import Identifier, User
from idp.accounts.phones import PhoneNumberError
from idp.audit.service import Actor
from idp.db import Base, new_id, utcnow
from idp.flows.bound import BoundFlowColumns, BoundFlows, login_flow_or_none
from idp.flows.password_check import PasswordCheck, Verdict
from idp.otp.service import CodeInvalid, Purpose, ResendTooSoon, TooManyAttempts
from idp.sessions.sign_out import end_everything
from idp.ui.i18n import N_

EXPIRED = N_("This password reset link has expired. Start again.")
ACCOUNT_DISABLED = N_("This account is disabled. Contact your administrator.")  # as the login page says
ALREADY_DONE = N_("This step is already done. Start again if you need to.")
FLOW_TTL = timedelta(minutes=15)


class ResetState(enum.StrEnum):
    AWAITING_CODE = "awaiting_code"
    CODE_VERIFIED = "code_verified"
    COMPLETED = "completed"
    LINK_SENT = "link_sent"  # bound to no browser yet: the row's id is HMAC(key, link token)
    LINK_OPENED = "link_opened"
    VOIDED = "voided"  # ended unfinished: a newer link, a password set another way, the account disabled


# The states in which a new password may be set: the person proved the code, or opened the link.
READY = (ResetState.CODE_VERIFIED, ResetState.LINK_OPENED)
UNFINISHED = (ResetState.AWAITING_CODE, ResetState.LINK_SENT, *READY)


class PasswordResetFlow(BoundFlowColumns, Base):
    __tablename__ = "password_reset_flows"

    # The normalised email or E.164 number, sealed with the flow id as associated data; NULL when
    # what was typed is neither (the flow still exists, so the answer is the same).
    destination_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


class RecoveryError(Exception):
    """Unknown, expired, spent, or another browser's flow. The message is shown on the page."""


async def end_resets(db: AsyncSession, user_id: str, now: datetime) -> None:
    """Every unfinished password reset of the account ends: VOIDED, and expired, so that the
    browser holding one hears "expired, start again" (sessions/sign_out.end_everything, and a
    newer link, call this). Callers hold the account row's lock, then take the flows'."""
    await db.execute(update(PasswordResetFlow).where(
        PasswordResetFlow.user_id == user_id,
        PasswordResetFlow.state.in_([state.value for state in UNFINISHED]),
    ).values(state=ResetState.VOIDED.value, completed_at=now, expires_at=now))


@dataclass
class ResetDone:
    login_flow_id: str | None


class RecoveryService(BoundFlows[PasswordResetFlow]):
    model, error, expired, already_done = PasswordResetFlow, RecoveryError, EXPIRED, ALREADY_DONE

    def __init__(self, services, key: bytes) -> None:
        super().__init__(services, key)
        from idp.flows.reset_links import ResetLinks
        self.links = ResetLinks(self)  # resets an integrator asks for, by link

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

    async def load(self, db: AsyncSession, flow_id: str | None, state: ResetState | tuple[ResetState, ...], *,
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

    async def _checked(self, db: AsyncSession, flow_id: str | None, new_password: str, *,
                       browser: str | None) -> tuple[PasswordResetFlow, User, str]:
        """The flow (locked, still ready), its account (locked, enabled) and the new password
        as the policy accepts it (PasswordRejected otherwise)."""
        # The account row is locked before the flow's, in the order disabling the account, a
        # temporary password and a newer link take (each ends this flow): never a deadlock, and
        # whichever commits first wins: the other finds the flow ended or the account disabled.
        found = await self.load(db, flow_id, READY, browser=browser)
        user = (await db.execute(select(User).where(User.id == found.user_id).with_for_update())
                ).scalar_one_or_none() if found.user_id else None
        db.expire(found)  # read again under the lock below: it may have ended meanwhile
        flow = await self.load(db, flow_id, READY, browser=browser, lock=True)
        if user is None:
            raise RecoveryError(EXPIRED)
        if user.disabled_at is not None:
            # Disabling ended every reset under way; this one began after. An administrator
            # enables the account first.
            raise RecoveryError(ACCOUNT_DISABLED)
        values = (await db.execute(select(Identifier.value).where(
            Identifier.user_id == user.id))).scalars().all()
        has_second_factor = await self.s.factors.has_second_factor(db, user.id)
        password = self.s.password_policy.check(
            new_password, has_second_factor=has_second_factor,
            # A phone-only account has no email: None is no identifier.
            identifiers=tuple(dict.fromkeys(v for v in [user.email, *values] if v)))
        return flow, user, password

    async def set_password(self, db: AsyncSession, flow_id: str | None, new_password: str, *,
                           browser: str | None) -> PasswordCheck:
        """CODE_VERIFIED or LINK_OPENED → COMPLETED: the new password's hash stored, every
        session and token family ended, the person notified, the audit event written. Raises
        PasswordRejected or RecoveryError (the flow stays where it was).

        This transaction checks and writes nothing; the hash is made with none open (argon2id
        held SQLite's write lock and the account's row lock for its whole time): the returned
        PasswordCheck's `resume` checks everything again under the locks (the flow may have
        ended or the account changed meanwhile) and stores it (flows/password_check.py)."""
        _, _, password = await self._checked(db, flow_id, new_password, browser=browser)

        async def resume(db: AsyncSession, verdict: Verdict) -> ResetDone:
            return await self._store(db, flow_id, new_password, browser=browser, new_hash=verdict.new_hash)

        return PasswordCheck(None, "", resume, new_password=password)

    async def _store(self, db: AsyncSession, flow_id: str | None, new_password: str, *,
                     browser: str | None, new_hash: str) -> ResetDone:
        flow, user, _ = await self._checked(db, flow_id, new_password, browser=browser)
        now = utcnow()
        via = "link" if flow.state == ResetState.LINK_OPENED else "code"
        moved = await db.execute(update(PasswordResetFlow).where(
            PasswordResetFlow.id == flow.id, PasswordResetFlow.state == flow.state,
        ).values(state=ResetState.COMPLETED.value, completed_at=now))
        if moved.rowcount != 1:
            raise RecoveryError(ALREADY_DONE)
        user.password_hash = new_hash
        # The person chose this password: a temporary one pending from an administrator is gone.
        user.password_must_change, user.password_expires_at = False, None
        # Whoever knew the old password is out: every browser session and every token family,
        # and every other reset of the account (a link sent or opened, a code sent or proved).
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
        await self.s.audit.record(db, Actor.user(user.id), "password.reset", target_type="user",
                                  target_id=user.id, after={"via": via})
        await db.flush()
        return ResetDone(flow.login_flow_id)
