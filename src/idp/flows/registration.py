"""Self-registration: a state machine persisted in `registration_flows`.

    start ──▶ AWAITING_CODE ──right code──▶ COMPLETED (account created, signed in)
                  │  ▲
                  └──┘ send a new code

Two methods, each switched on or off by a setting: email + password (the email confirmed by a
code) and phone + SMS code (no password). Nothing is created until the code proves the person
holds the email address or number; until then the flow keeps what they typed, sealed: the
destination, and for email the argon2 hash of the password (hashed at the first step, so the
password itself is never stored, not even sealed).

No enumeration: when the email or number is already a verified identifier of some account, the
flow, the code (issued but never sent) and the pages are exactly those of a free one; the person
receives a "you already have an account" notice instead of the code, so any code typed fails
with the generic message. Every step loads the flow under a row lock, checks its state, its
lifetime and the browser that started it, then moves it on.
"""

from __future__ import annotations

import enum
import logging
import re
from datetime import timedelta

from sqlalchemy import LargeBinary, String, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from idp.accounts.errors import AccountError
from idp.accounts.phones import CountryNotAllowed, NotAMobileNumber, PhoneNumberError
from idp.accounts.service import IdentifierTaken
from idp.audit.service import Actor
from idp.db import Base, new_id, utcnow
from idp.flows.bound import BoundFlowColumns, BoundFlows, login_flow_or_none
from idp.flows.models import AuthorizationFlow
from idp.flows.service import Browser, FlowError, LoginResult
from idp.otp.service import Purpose, ResendTooSoon, TooManyAttempts
from idp.ui.i18n import N_

log = logging.getLogger("idp.registration")

EXPIRED = N_("This registration link has expired. Start again.")
ALREADY_DONE = N_("This step is already done. Start again if you need to.")
ALREADY_REGISTERED = N_("An account with this email address or phone number already exists. "
                        "Sign in, or reset your password if you have forgotten it.")
NOT_AN_EMAIL = N_("Type a valid email address.")
NOT_A_PHONE = N_("Type a valid mobile phone number.")
NOT_A_MOBILE = N_("This number cannot receive text messages. Type a mobile phone number.")
COUNTRY_NOT_ALLOWED = N_("We cannot send text messages to this country. Use another number.")
NAME_TOO_LONG = N_("The name must be at most 200 characters long.")

# Stricter than the login lookup: an address we will write to and store, one "@", a dotted
# domain, no spaces or control characters (PostgreSQL text cannot hold a NUL).
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FLOW_TTL = timedelta(minutes=15)
METHODS = {"email": "email", "phone": "sms"}  # form method → courier channel
_PURPOSES = {"email": Purpose.VERIFY_EMAIL, "sms": Purpose.VERIFY_PHONE}
_KINDS = {"email": "email", "sms": "phone"}  # channel → identifier kind
# What a completed registration proved, as the first factor of its sign-in (flows/service.py).
_FIRST_FACTOR = {"email": "pwd", "sms": "sms"}


class RegistrationState(enum.StrEnum):
    AWAITING_CODE = "awaiting_code"
    COMPLETED = "completed"


class RegistrationFlow(BoundFlowColumns, Base):
    __tablename__ = "registration_flows"

    # The normalised email or E.164 number, sealed with the flow id as associated data.
    destination_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # The argon2 hash of the chosen password (email method only), sealed likewise.
    password_hash_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    name: Mapped[str | None] = mapped_column(String(200))


class RegistrationError(Exception):
    """Unknown, expired, spent, or another browser's flow. The message is shown on a page."""


class AlreadyRegistered(RegistrationError):
    """The code was right, but the identifier became another account's meanwhile."""


class RegistrationClosed(Exception):
    """The operator has switched this registration method off."""


class RegistrationInvalid(Exception):
    """What was typed cannot be used (the message says why); nothing was created or sent."""


class RegistrationService(BoundFlows[RegistrationFlow]):
    model, error, expired, already_done = RegistrationFlow, RegistrationError, EXPIRED, ALREADY_DONE

    def methods(self) -> tuple[str, ...]:
        """The open methods, in page order: "email", "phone"."""
        settings = self.s.settings
        return tuple(m for m, on in (("email", settings.registration_email),
                                     ("phone", settings.registration_phone)) if on)

    def require_open(self, method: str) -> str:
        """The courier channel of an open method; else RegistrationClosed."""
        if method not in self.methods():
            raise RegistrationClosed(method)
        return METHODS[method]

    # ---- start ----------------------------------------------------------------------------------

    async def start(self, db: AsyncSession, method: str, identifier: str, *, password: str | None,
                    name: str | None, ip: str, locale: str, browser: str,
                    login_flow_id: str | None = None) -> RegistrationFlow:
        """A new flow and a message on its way. Raises RegistrationClosed, RegistrationInvalid,
        PasswordRejected or RateLimited, each before anything is written or queued."""
        channel = self.require_open(method)
        name = _clean_name(name)
        destination = self._destination(channel, identifier)
        password_hash = None
        if channel == "email":
            # The policy first, so a weak password costs no hash and sends nothing. A new account
            # has no second factor yet: the single-factor minimum applies.
            checked = self.s.password_policy.check(password or "", identifiers=(destination,))
            # Each attempt costs a password hash and a message: bounded per client address.
            await self.s.rate_limiter.hit("registration_per_ip", ip)
            password_hash = await self.s.hasher.hash(checked)
        else:
            await self._check_sms(ip, destination)

        now = utcnow()
        flow = RegistrationFlow(
            id=new_id(), state=RegistrationState.AWAITING_CODE.value, channel=channel, name=name,
            browser_hash=self.browser_hash(browser), login_flow_id=login_flow_or_none(login_flow_id),
            locale=(locale or "en")[:16], created_at=now, expires_at=now + FLOW_TTL,
        )
        flow.destination_sealed = self.seal(destination, _aad(flow.id, "destination"))
        if password_hash is not None:
            flow.password_hash_sealed = self.seal(password_hash, _aad(flow.id, "password"))
        db.add(flow)
        await db.flush()
        try:
            await self._send(db, flow, destination)
        except (ResendTooSoon, TooManyAttempts):
            # A code sent a moment ago stays valid (codes belong to the destination, not the flow),
            # and a locked destination refuses at the code step: the same page either way.
            pass
        return flow

    def _destination(self, channel: str, typed: str) -> str:
        typed = (typed or "").strip()
        if channel == "email":
            if not _EMAIL.fullmatch(typed):
                raise RegistrationInvalid(NOT_AN_EMAIL)
            try:
                return self.s.accounts.normalise_identifier("email", typed)
            except AccountError:
                raise RegistrationInvalid(NOT_AN_EMAIL) from None
        try:
            return self.s.accounts.normalise_identifier("phone", typed)
        except AccountError:
            raise RegistrationInvalid(NOT_A_PHONE) from None

    async def _check_sms(self, ip: str, number: str) -> None:
        """Every SMS limit, before anything is queued. No account is named: the number is not
        yet anyone's, and a known number must be counted exactly like an unknown one."""
        try:
            await self.s.sms_guard.check_send(ip=ip, number_e164=number, account_id=None)
        except CountryNotAllowed:
            raise RegistrationInvalid(COUNTRY_NOT_ALLOWED) from None
        except NotAMobileNumber:
            raise RegistrationInvalid(NOT_A_MOBILE) from None
        except PhoneNumberError:
            raise RegistrationInvalid(NOT_A_PHONE) from None

    async def _send(self, db: AsyncSession, flow: RegistrationFlow, destination: str) -> None:
        """Issue a code and queue it, or, when the destination already has an account, queue a
        notice instead. The code is issued in both cases, so the resend cooldown, the attempt
        count and the lockout behave alike: only its owner's mailbox could tell the two apart."""
        purpose = _PURPOSES[flow.channel]
        taken = await self.s.accounts.find_by_login(db, destination) is not None
        issued = await self.s.otp.issue(db, purpose, destination)
        if taken:
            kind, params = "registration_exists", {}
        else:
            kind = purpose.value  # the courier kinds verify_email / verify_phone
            params = {"code": issued.code, "minutes": max(1, issued.ttl_seconds // 60)}
        await self.s.courier.enqueue(db, channel=flow.channel, recipient=destination, kind=kind,
                                     locale=flow.locale, params=params)
        if not taken:  # no account yet, so no target; nor the destination (nobody's until proven)
            await self.s.audit.record(db, Actor("user", None, await self._client_of(db, flow)), "code.sent",
                                      after={"channel": flow.channel, "purpose": purpose.value})

    async def _client_of(self, db: AsyncSession, flow: RegistrationFlow) -> str | None:
        """The client of the sign-in that sent the person here, if any (for the audit log)."""
        login_flow = await db.get(AuthorizationFlow, flow.login_flow_id) if flow.login_flow_id else None
        return login_flow.client_id if login_flow is not None else None

    # ---- steps ----------------------------------------------------------------------------------

    async def load(self, db: AsyncSession, flow_id: str | None, *, browser: str | None,
                   lock: bool = False) -> RegistrationFlow:
        """The flow waiting for its code, if this browser started it and it is still alive."""
        return await self.load_bound(db, flow_id, RegistrationState.AWAITING_CODE, browser=browser, lock=lock)

    async def resend(self, db: AsyncSession, flow_id: str | None, *, ip: str,
                     browser: str | None) -> RegistrationFlow:
        """Send a new code (the old one is voided). Raises RateLimited, ResendTooSoon or
        TooManyAttempts (each with `retry_after`), or RegistrationClosed."""
        flow = await self.load(db, flow_id, browser=browser, lock=True)
        self.require_open(_method(flow.channel))
        destination = self.unseal(flow.destination_sealed, _aad(flow.id, "destination"))
        if flow.channel == "sms":
            await self._check_sms(ip, destination)
        await self._send(db, flow, destination)
        return flow

    async def complete(self, db: AsyncSession, flow_id: str | None, code: str, *,
                       browser: str | None, previous_cookie: str | None,
                       user_agent: str | None) -> LoginResult:
        """AWAITING_CODE → COMPLETED: the account is created with the proven identifier, then
        signed in on the login flow that sent the person here (or on a new one for the account
        pages). Raises a CodeProblem (one public message for all), RegistrationError or
        RegistrationClosed; on any of them nothing is created."""
        flow = await self.load(db, flow_id, browser=browser, lock=True)
        self.require_open(_method(flow.channel))
        destination = self.unseal(flow.destination_sealed, _aad(flow.id, "destination"))
        await self.s.otp.verify(db, _PURPOSES[flow.channel], destination, code or "")
        moved = await db.execute(update(RegistrationFlow).where(
            RegistrationFlow.id == flow.id,
            RegistrationFlow.state == RegistrationState.AWAITING_CODE.value,
        ).values(state=RegistrationState.COMPLETED.value, completed_at=utcnow()))
        if moved.rowcount != 1:
            raise RegistrationError(ALREADY_DONE)
        password_hash = (self.unseal(flow.password_hash_sealed, _aad(flow.id, "password"))
                         if flow.password_hash_sealed is not None else None)
        try:
            user = await self.s.accounts.create_registered_user(
                db, kind=_KINDS[flow.channel], value=destination, password_hash=password_hash,
                name=flow.name, locale=flow.locale)
        except IdentifierTaken:
            # Another registration (or an account page) verified the same value first: the
            # unique index decided. The transaction rolls back: the code, the flow, no rows.
            raise AlreadyRegistered(ALREADY_REGISTERED) from None
        log.info("account registered", extra={"fields": {
            "event": "account_registered", "user_id": user.id, "channel": flow.channel}})
        await self.s.audit.record(db, Actor.user(user.id, client_id=await self._client_of(db, flow)),
                                  "user.registered", target_type="user", target_id=user.id,
                                  after={"method": _method(flow.channel)})
        method = _FIRST_FACTOR[flow.channel]
        signing_in = Browser(previous_cookie=previous_cookie, user_agent=user_agent, cookie=browser,
                             locale=flow.locale)
        try:
            # Only a sign-in this browser started (FlowService.load checks the binding).
            return await self.s.flows.sign_in(db, flow.login_flow_id, user, method=method, browser=signing_in)
        except FlowError:
            # No login flow (registration opened on its own), or it expired or moved on while the
            # person read their mail: sign in for the account pages instead. From there, going
            # back to the application finds the session and needs no second login.
            account_flow = await self.s.flows.start_account_flow(db, return_to="/account", browser=browser,
                                                                  ui_locales=flow.locale)
            return await self.s.flows.sign_in(db, account_flow, user, method=method, browser=signing_in)


def _aad(flow_id: str, what: str) -> str:
    """Sealed values name their flow and their field: one cannot stand in for another."""
    return f"{flow_id}\x00{what}"


def _method(channel: str) -> str:
    return next(method for method, c in METHODS.items() if c == channel)


def _clean_name(name: str | None) -> str | None:
    """A display name, or None. Control characters are dropped (PostgreSQL text cannot hold a
    NUL, and a line break in a name is never meant)."""
    name = " ".join(_CONTROL.sub(" ", name or "").split())
    if len(name) > 200:
        raise RegistrationInvalid(NAME_TOO_LONG)
    return name or None
