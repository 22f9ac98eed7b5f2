"""Account self-service: the rules behind the /account pages (ui/account.py calls only this).

Every method takes the caller's live `BrowserSession` (the page found it from the cookie) and
acts on that session's account only. Sensitive changes first call `require_recent(session)`:
a sign-in older than `settings.reauth_seconds` raises ReauthRequired and nothing changes; the
page sends the browser to sign in again (max_age=0) and back (ASVS 7.5.1; 63B §3.1.3.3).

Needs a recent sign-in: adding, verifying or removing a verified email or phone number, setting a
first password, TOTP enrolment and removal, new recovery codes, switching the code second factor
on, off or between channels. Does not: the profile, changing a password (the current one proves
the person), cancelling a not yet verified address, ending sessions (that only protects).

Decisions (README design notes):
- The primary email (users.email, the `email` claim) can be removed only while another verified
  email exists: the oldest such becomes primary. An account is never left without a verified
  sign-in identifier, nor without the identifier its code second factor is sent to.
- "Sign out my other sessions" with a password change ends every other browser session and
  revokes every token family (grant) not signed in through this browser session: apps on other
  devices and offline tokens stop working, the apps used from this browser keep theirs.
  Ending a session on the sessions page ends it and the token families it signed in.
- Every change is an audit event in its transaction (actor: the person, target: their account;
  identifiers by kind and value, factors by name, never a code or a password). A disabled
  account's session opens no page: the person is asked to sign in, which refuses them.
- Notices ("identifier_added", "password_changed", ...) go to the primary email if verified,
  else to a verified phone; a removed verified address is told too (its owner may not be the one
  who removed it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.errors import AccountError
from idp.accounts.models import Identifier, User
from idp.accounts.phones import PhoneNumberError
from idp.accounts.password_policy import normalise_password
from idp.audit.service import Actor
from idp.db import utcnow
from idp.flows.password_check import PasswordCheck, Verdict
from idp.flows.recovery import end_resets
from idp.mfa.totp import TotpEnrolment
from idp.oauth.grants.base import revoke_grant
from idp.oauth.models import Grant
from idp.otp.service import Purpose, ResendTooSoon
from idp.ratelimit.errors import RateLimited
from idp.sessions.models import BrowserSession
from idp.ui.i18n import N_, available

if TYPE_CHECKING:
    from idp.services import Services

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the alphabet of db.new_id()
_LOCALE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
CODE_FACTOR_KINDS = {"sms": "phone", "email": "email"}

NOT_FOUND = N_("This email address or phone number is not on your account.")
NOT_AN_EMAIL = N_("Type a valid email address.")
NOT_A_PHONE = N_("Type a valid phone number.")
NO_SMS_TO_NUMBER = N_("We cannot send text messages to this number. Use a mobile number from a supported country.")
ALREADY_YOURS = N_("This is already on your account.")
EMAIL_TAKEN = N_("This email address is already in use by another account.")
PHONE_TAKEN = N_("This phone number is already in use by another account.")
LAST_IDENTIFIER = N_("You cannot remove the only email address or phone number you sign in with.")
PRIMARY_EMAIL = N_("This is your main email address. Add and confirm another email address first; it then becomes the main one.")
USED_BY_CODE_FACTOR = N_("Your sign-in codes are sent here. Switch the code second factor off or to another channel first.")
WRONG_PASSWORD = N_("The current password is not correct.")
BAD_TEXT = N_("Names must be at most %(maximum)s characters, without control characters.")
BAD_LOCALE = N_("Choose a language from the list.")
NO_SUCH_FACTOR = N_("This authenticator app is not on your account.")
TOTP_CODE_WRONG = N_("The code is not valid. Check the time on your phone and type the newest code.")
NEEDS_VERIFIED_PHONE = N_("Add and confirm a phone number first.")
NEEDS_VERIFIED_EMAIL = N_("Add and confirm an email address first.")
NEEDS_SECOND_FACTOR = N_("Recovery codes replace a lost second factor: set up a second factor first.")
NO_SUCH_SESSION = N_("This session has already ended.")


class SelfServiceError(Exception):
    """A refusal the page shows next to the form. `message` is an N_() text, `params` fill it."""

    def __init__(self, message: str, status: int = 400, **params) -> None:
        super().__init__(message)
        self.message, self.status, self.params = message, status, params


class SignInRequired(Exception):
    """No live session: the page asks for a sign-in and comes back."""

    max_age: int | None = None


class ReauthRequired(SignInRequired):
    """The sign-in is older than `settings.reauth_seconds`: sign in again before this change."""

    max_age = 0


@dataclass
class SecurityView:
    factors: list  # confirmed TotpFactor rows
    code_second_factor: str | None
    has_verified_email: bool
    has_verified_phone: bool
    recovery_codes_left: int
    has_second_factor: bool
    has_password: bool


@dataclass
class SessionView:
    id: str
    created_at: object
    auth_time: object
    user_agent: str | None
    current: bool


class SelfService:
    def __init__(self, services: Services) -> None:
        self.s = services

    # ---- the gates -----------------------------------------------------------------------------

    def require_session(self, session: BrowserSession | None) -> BrowserSession:
        if session is None:
            raise SignInRequired()
        return session

    def is_recent(self, session: BrowserSession) -> bool:
        return utcnow() - session.auth_time <= timedelta(seconds=self.s.settings.reauth_seconds)

    def require_recent(self, session: BrowserSession) -> None:
        if not self.is_recent(session):
            raise ReauthRequired()

    async def user(self, db: AsyncSession, session: BrowserSession) -> User:
        user = await db.get(User, session.user_id)
        if user is None or user.disabled_at is not None:  # deleted or disabled while the cookie lived
            raise SignInRequired()
        return user

    async def _audit(self, db: AsyncSession, user: User, action: str, *, before: dict | None = None,
                     after: dict | None = None) -> None:
        await self.s.audit.record(db, Actor.user(user.id), action, target_type="user", target_id=user.id,
                                  before=before, after=after)

    # ---- profile -------------------------------------------------------------------------------

    async def update_profile(self, db: AsyncSession, session: BrowserSession, *, given_name: str,
                             family_name: str, name: str, locale: str) -> User:
        user = await self.user(db, session)
        given = _text(given_name, 100)
        family = _text(family_name, 100)
        full = _text(name, 200)
        locale = locale.strip()
        if locale and (len(locale) > 16 or not _LOCALE.fullmatch(locale)
                       or locale not in self.locales()):
            raise SelfServiceError(BAD_LOCALE)
        user.given_name, user.family_name = given, family
        # The `name` claim is the full name as the person writes it; by default the two parts.
        user.name = full or " ".join(part for part in (given, family) if part) or None
        user.locale = locale or None
        await db.flush()
        return user

    def locales(self) -> tuple[str, ...]:
        return available()

    # ---- identifiers ---------------------------------------------------------------------------

    async def identifiers(self, db: AsyncSession, session: BrowserSession) -> list[Identifier]:
        return await self.s.accounts.identifiers(db, await self.user(db, session))

    async def add_identifier(self, db: AsyncSession, session: BrowserSession, kind: str, typed: str,
                             *, ip: str, locale: str | None) -> Identifier:
        """An unverified email or phone number on the account and a code sent to it. A value
        verified on another account is only refused when the code is confirmed: until then the
        page says nothing about other accounts."""
        self.require_recent(session)
        user = await self.user(db, session)
        if kind not in ("email", "phone"):
            raise SelfServiceError(NOT_AN_EMAIL)
        if "\x00" in typed:
            typed = ""
        try:
            value = self.s.accounts.normalise_identifier(kind, typed)
        except AccountError:
            raise SelfServiceError(NOT_AN_EMAIL if kind == "email" else NOT_A_PHONE) from None
        if kind == "phone":
            # The number must be able to read the code: refused before anything is stored or sent.
            try:
                self.s.phones.check_sms_destination(value)
            except PhoneNumberError:
                raise SelfServiceError(NO_SMS_TO_NUMBER) from None
        existing = (await db.execute(select(Identifier).where(
            Identifier.user_id == user.id, Identifier.kind == kind, Identifier.value == value))
        ).scalar_one_or_none()
        if existing is not None and existing.verified:
            raise SelfServiceError(ALREADY_YOURS)
        identifier = existing
        if identifier is None:
            identifier = await self.s.accounts.add_identifier(db, user, kind, value)
            await self._audit(db, user, "identifier.added", after=_described(identifier))
        await self._send_code(db, user, identifier, ip=ip, locale=locale, quiet_cooldown=True)
        return identifier

    async def pending_identifier(self, db: AsyncSession, session: BrowserSession,
                                 identifier_id: str | None) -> Identifier:
        user = await self.user(db, session)
        identifier = await self._own_identifier(db, user, identifier_id)
        if identifier.verified:
            raise SelfServiceError(ALREADY_YOURS)
        return identifier

    async def resend_code(self, db: AsyncSession, session: BrowserSession, identifier_id: str | None,
                          *, ip: str, locale: str | None) -> Identifier:
        """Raises ResendTooSoon (a CodeProblem with retry_after) within the cooldown."""
        self.require_recent(session)
        identifier = await self.pending_identifier(db, session, identifier_id)
        await self._send_code(db, await self.user(db, session), identifier, ip=ip, locale=locale,
                              quiet_cooldown=False)
        return identifier

    async def _send_code(self, db: AsyncSession, user: User, identifier: Identifier, *, ip: str,
                         locale: str | None, quiet_cooldown: bool) -> None:
        purpose = Purpose.VERIFY_EMAIL if identifier.kind == "email" else Purpose.VERIFY_PHONE
        try:
            issued = await self.s.otp.issue(db, purpose, identifier.value)
        except ResendTooSoon:
            if quiet_cooldown:  # the code sent a moment ago is still good
                return
            raise
        channel = "email"
        if identifier.kind == "phone":
            channel = "sms"
            try:
                # Every SMS passes the abuse limits first; RateLimited rolls this request back.
                await self.s.sms_guard.check_send(ip=ip, number_e164=identifier.value, account_id=user.id)
            except PhoneNumberError:
                raise SelfServiceError(NO_SMS_TO_NUMBER) from None
        await self.s.courier.enqueue(
            db, channel=channel, recipient=identifier.value, kind=purpose.value,
            locale=locale or user.locale,
            params={"code": issued.code, "minutes": max(1, issued.ttl_seconds // 60)})
        await self._audit(db, user, "code.sent", after={"channel": channel, "purpose": purpose.value})

    async def confirm_identifier(self, db: AsyncSession, session: BrowserSession,
                                 identifier_id: str | None, code: str, *,
                                 locale: str | None) -> Identifier:
        """The code makes the value a verified sign-in identifier. Raises a CodeProblem, or
        SelfServiceError (409) when another account verified the value first."""
        self.require_recent(session)
        user = await self.user(db, session)
        identifier = await self.pending_identifier(db, session, identifier_id)
        purpose = Purpose.VERIFY_EMAIL if identifier.kind == "email" else Purpose.VERIFY_PHONE
        await self.s.otp.verify(db, purpose, identifier.value, (code or "")[:32])
        now = utcnow()
        try:
            # The partial unique index on verified values is the judge (parallel confirmations
            # on two accounts cannot both win); a savepoint keeps the code consumed either way.
            async with db.begin_nested():
                await db.execute(update(Identifier).where(Identifier.id == identifier.id)
                                 .values(verified=True, verified_at=now))
        except IntegrityError:
            raise SelfServiceError(EMAIL_TAKEN if identifier.kind == "email" else PHONE_TAKEN,
                                   status=409) from None
        await db.refresh(identifier)
        if identifier.kind == "email" and (user.email is None or
                                           (user.email == identifier.value and not user.email_verified)):
            try:
                async with db.begin_nested():  # users.email is unique too
                    user.email, user.email_verified = identifier.value, True
                    await db.flush()
            except IntegrityError:
                await db.refresh(user)
        await self._audit(db, user, "identifier.verified", before={"verified": False}, after=_described(identifier))
        await self.notify(db, user, "identifier_added", locale=locale)
        return identifier

    async def remove_identifier(self, db: AsyncSession, session: BrowserSession,
                                identifier_id: str | None, *, locale: str | None) -> None:
        user = await self.user(db, session)
        identifier = await self._own_identifier(db, user, identifier_id)
        mine = await self.s.accounts.identifiers(db, user)
        others = [i for i in mine if i.verified and i.id != identifier.id]
        if not identifier.verified:  # cancelling an address never confirmed changes no sign-in
            if identifier.kind == "email" and identifier.value == user.email:
                # An unconfirmed main email (never the `email` claim): a confirmed one takes its
                # place, or the account has none, as one registered with a phone number.
                if not await self.s.accounts.move_primary(db, user, others):
                    user.email, user.email_verified = None, False
            before = _described(identifier)
            await db.delete(identifier)
            await db.flush()
            await self._audit(db, user, "identifier.removed", before=before)
            return
        self.require_recent(session)
        if not others:
            raise SelfServiceError(LAST_IDENTIFIER)
        needed = CODE_FACTOR_KINDS.get(user.code_second_factor or "")
        if needed == identifier.kind and not any(i.kind == needed for i in others):
            raise SelfServiceError(USED_BY_CODE_FACTOR)
        if identifier.kind == "email" and identifier.value == user.email:
            if not await self.s.accounts.move_primary(db, user, others):
                raise SelfServiceError(PRIMARY_EMAIL)
        removed, before = (identifier.kind, identifier.value), _described(identifier)
        await db.delete(identifier)
        await db.flush()
        await self._audit(db, user, "identifier.removed", before=before)
        await self.notify(db, user, "identifier_removed", locale=locale, also=removed)

    async def _own_identifier(self, db: AsyncSession, user: User, identifier_id: str | None) -> Identifier:
        if not _is_id(identifier_id):
            raise SelfServiceError(NOT_FOUND, status=404)
        identifier = await db.get(Identifier, identifier_id)
        if identifier is None or identifier.user_id != user.id:
            raise SelfServiceError(NOT_FOUND, status=404)
        return identifier

    # ---- password ------------------------------------------------------------------------------

    async def has_password(self, db: AsyncSession, session: BrowserSession) -> bool:
        return (await self.user(db, session)).password_hash is not None

    async def change_password(self, db: AsyncSession, session: BrowserSession, *, current: str,
                              new: str, end_other_sessions: bool, locale: str | None) -> PasswordCheck:
        """With a password: the current one is required (ASVS 6.2.3). Without one (an account
        registered with a phone number): a recent sign-in instead. Raises PasswordRejected,
        SelfServiceError or RateLimited (wrong current passwords are counted per account).

        The checks come first and nothing is written; the hashes (the current password checked,
        the new one made) run with no transaction open: this returns a PasswordCheck whose
        `resume`, in a second transaction, applies the change (the route runs both, as sign-in
        steps do: flows/password_check.py)."""
        user = await self.user(db, session)
        checked = await self._new_password(db, user, new)
        if user.password_hash is None:
            self.require_recent(session)
        else:
            # Someone at an unlocked browser must not be able to guess the password here freely.
            await self.s.rate_limiter.test("login_per_account", f"password-change:{user.id}")
        return self._password_change(session, user.password_hash, current, new, checked,
                                     end_other_sessions=end_other_sessions, locale=locale, retries=1)

    async def _new_password(self, db: AsyncSession, user: User, new: str) -> str:
        """`new` as the policy accepts it: every email and phone of the account, not only the
        primary, is off limits."""
        has_second_factor = await self.s.factors.has_second_factor(db, user.id)
        values = [i.value for i in await self.s.accounts.identifiers(db, user)]
        return self.s.password_policy.check(new, has_second_factor=has_second_factor,
                                            identifiers=tuple(dict.fromkeys(v for v in [user.email, *values] if v)))

    def _password_change(self, session: BrowserSession, seen_hash: str | None, current: str, new: str,
                         checked: str, *, end_other_sessions: bool, locale: str | None,
                         retries: int) -> PasswordCheck:
        async def resume(db: AsyncSession, verdict: Verdict) -> PasswordCheck | None:
            user = await self.user(db, session)
            live = await self.s.sessions.get(db, session.id)
            if live is None or live.ended_at is not None:  # signed out meanwhile
                raise SignInRequired()
            if user.password_hash != seen_hash:
                # Changed while the hash ran (another tab, a reset): the current password is
                # checked again, against the new hash, once.
                if retries <= 0 or user.password_hash is None:
                    raise SelfServiceError(WRONG_PASSWORD)
                return self._password_change(session, user.password_hash, current, new, checked,
                                             end_other_sessions=end_other_sessions, locale=locale,
                                             retries=retries - 1)
            if not verdict.ok:
                try:
                    await self.s.rate_limiter.hit("login_per_account", f"password-change:{user.id}")
                except RateLimited:
                    pass
                raise SelfServiceError(WRONG_PASSWORD)
            await self._new_password(db, user, new)  # an identifier added meanwhile counts too
            await self._apply_password(db, session, user, verdict.new_hash, first=seen_hash is None,
                                       end_other_sessions=end_other_sessions, locale=locale)
            return None

        return PasswordCheck(seen_hash, normalise_password(current), resume, new_password=checked)

    async def _apply_password(self, db: AsyncSession, session: BrowserSession, user: User, new_hash: str, *,
                              first: bool, end_other_sessions: bool, locale: str | None) -> None:
        user.password_hash = new_hash
        user.password_must_change, user.password_expires_at = False, None
        # A password reset under way (a link someone intercepted and opened) must not overwrite it.
        await end_resets(db, user.id, utcnow())
        if end_other_sessions:
            await self._end_other_sessions(db, session, revoke_all_other_grants=True)
        await db.flush()
        await self._audit(db, user, "password.changed", after={
            "reason": "first_password" if first else "self_service",
            "other_sessions_ended": end_other_sessions})
        await self.notify(db, user, "password_changed", locale=locale)

    # ---- second factors ------------------------------------------------------------------------

    async def security(self, db: AsyncSession, session: BrowserSession) -> SecurityView:
        user = await self.user(db, session)
        mine = await self.s.accounts.identifiers(db, user)
        return SecurityView(
            factors=await self.s.factors.totp.confirmed(db, user.id),
            code_second_factor=user.code_second_factor,
            has_verified_email=any(i.kind == "email" and i.verified for i in mine),
            has_verified_phone=any(i.kind == "phone" and i.verified for i in mine),
            recovery_codes_left=await self.s.factors.recovery.remaining(db, user.id),
            has_second_factor=await self.s.factors.has_second_factor(db, user.id),
            has_password=user.password_hash is not None,
        )

    async def start_totp(self, db: AsyncSession, session: BrowserSession) -> TotpEnrolment:
        """A new, unconfirmed authenticator (an earlier unconfirmed one is dropped)."""
        self.require_recent(session)
        user = await self.user(db, session)
        return await self.s.factors.totp.enrol(db, user_id=user.id,
                                               account_name=await self._account_name(db, user))

    async def pending_totp(self, db: AsyncSession, session: BrowserSession,
                           factor_id: str | None) -> TotpEnrolment:
        user = await self.user(db, session)
        enrolment = None
        if _is_id(factor_id):
            enrolment = await self.s.factors.totp.pending(
                db, user_id=user.id, factor_id=factor_id, account_name=await self._account_name(db, user))
        if enrolment is None:
            raise SelfServiceError(NO_SUCH_FACTOR, status=404)
        return enrolment

    async def confirm_totp(self, db: AsyncSession, session: BrowserSession, factor_id: str | None,
                           code: str, *, locale: str | None) -> list[str] | None:
        """The first code turns the enrolment into a factor. Returns recovery codes to show once
        when the account had none (its first factor), else None."""
        self.require_recent(session)
        user = await self.user(db, session)
        await self.pending_totp(db, session, factor_id)
        if not await self.s.factors.totp.confirm(db, user_id=user.id, factor_id=factor_id,
                                                 code=(code or "")[:32]):
            raise SelfServiceError(TOTP_CODE_WRONG)
        await self._audit(db, user, "factor.added", after={"factor": "totp"})
        codes = None
        if await self.s.factors.recovery.remaining(db, user.id) == 0:
            codes = await self.s.factors.recovery.generate(db, user.id)
            await self._audit(db, user, "factor.added", after={"factor": "recovery_codes"})
        await self.notify(db, user, "factor_added", locale=locale)
        return codes

    async def remove_totp(self, db: AsyncSession, session: BrowserSession, factor_id: str | None,
                          *, locale: str | None) -> None:
        self.require_recent(session)
        user = await self.user(db, session)
        had_codes = await self.s.factors.recovery.remaining(db, user.id) > 0
        if not _is_id(factor_id) or not await self.s.factors.remove_totp(db, user_id=user.id, factor_id=factor_id):
            raise SelfServiceError(NO_SUCH_FACTOR, status=404)
        await self._audit(db, user, "factor.removed", before={"factor": "totp"})
        await self._audit_codes_gone(db, user, had_codes)
        await self.notify(db, user, "factor_removed", locale=locale)

    async def _audit_codes_gone(self, db: AsyncSession, user: User, had_codes: bool) -> None:
        """The recovery codes went with the last second factor (mfa/service.py)."""
        if had_codes and not await self.s.factors.recovery.remaining(db, user.id):
            await self._audit(db, user, "factor.removed", before={"factor": "recovery_codes"})

    async def new_recovery_codes(self, db: AsyncSession, session: BrowserSession) -> list[str]:
        """A new set replacing the old one; shown once, stored as keyed hashes."""
        self.require_recent(session)
        user = await self.user(db, session)
        if not await self.s.factors.has_second_factor(db, user.id):
            raise SelfServiceError(NEEDS_SECOND_FACTOR)
        codes = await self.s.factors.recovery.generate(db, user.id)
        await self._audit(db, user, "recovery_codes.regenerated")
        return codes

    async def set_code_second_factor(self, db: AsyncSession, session: BrowserSession,
                                     channel: str | None, *, locale: str | None) -> None:
        """"sms", "email" or None (off). The channel needs a verified identifier of its kind."""
        self.require_recent(session)
        user = await self.user(db, session)
        if channel not in (None, *CODE_FACTOR_KINDS):
            channel = None
        if channel == user.code_second_factor:
            return
        if channel is not None:
            kind = CODE_FACTOR_KINDS[channel]
            mine = await self.s.accounts.identifiers(db, user)
            if not any(i.kind == kind and i.verified for i in mine):
                raise SelfServiceError(NEEDS_VERIFIED_PHONE if kind == "phone" else NEEDS_VERIFIED_EMAIL)
        previous, user.code_second_factor = user.code_second_factor, channel
        await db.flush()
        # A switch between channels is one factor removed and another added.
        if previous is not None:
            await self._audit(db, user, "factor.removed", before={"factor": previous})
        if channel is not None:
            await self._audit(db, user, "factor.added", after={"factor": channel})
        if channel is None and not await self.s.factors.has_second_factor(db, user.id):
            # Recovery codes alone would be a second factor of their own (mfa/service.py).
            had_codes = await self.s.factors.recovery.remaining(db, user.id) > 0
            await self.s.factors.recovery.remove_all(db, user.id)
            await self._audit_codes_gone(db, user, had_codes)
        await self.notify(db, user, "factor_removed" if channel is None else "factor_added", locale=locale)

    async def _account_name(self, db: AsyncSession, user: User) -> str:
        """What the authenticator app shows under the issuer's name."""
        if user.email:
            return user.email
        phones = [i.value for i in await self.s.accounts.identifiers(db, user) if i.verified]
        return phones[0] if phones else user.id

    # ---- sessions ------------------------------------------------------------------------------

    async def sessions(self, db: AsyncSession, session: BrowserSession) -> list[SessionView]:
        rows = (await db.execute(select(BrowserSession).where(
            BrowserSession.user_id == session.user_id, BrowserSession.ended_at.is_(None),
            BrowserSession.expires_at > utcnow(),
        ).order_by(BrowserSession.created_at.desc()))).scalars()
        return [SessionView(r.id, r.created_at, r.auth_time, r.user_agent, r.id == session.id) for r in rows]

    async def end_session(self, db: AsyncSession, session: BrowserSession, session_id: str | None) -> bool:
        """End one of the account's sessions and the token families it signed in. True when it
        was the caller's own session (the page then drops the cookie)."""
        if not _is_id(session_id):
            raise SelfServiceError(NO_SUCH_SESSION, status=404)
        target = await self.s.sessions.get(db, session_id)
        if target is None or target.user_id != session.user_id or target.ended_at is not None:
            raise SelfServiceError(NO_SUCH_SESSION, status=404)
        await self.s.sessions.end_with_grants(db, [target.id])
        return target.id == session.id

    async def end_other_sessions(self, db: AsyncSession, session: BrowserSession) -> int:
        return await self._end_other_sessions(db, session, revoke_all_other_grants=False)

    async def _end_other_sessions(self, db: AsyncSession, session: BrowserSession, *,
                                  revoke_all_other_grants: bool) -> int:
        others = list((await db.execute(select(BrowserSession.id).where(
            BrowserSession.user_id == session.user_id, BrowserSession.id != session.id,
            BrowserSession.ended_at.is_(None)))).scalars())
        await self.s.sessions.end_with_grants(db, others)
        if revoke_all_other_grants:
            # Also token families without a session, or of sessions ended earlier: whoever knew
            # the old password may hold them.
            grants = (await db.execute(select(Grant.id).where(
                Grant.user_id == session.user_id, Grant.revoked_at.is_(None),
                (Grant.session_id.is_(None)) | (Grant.session_id != session.id)))).scalars().all()
            for grant_id in grants:
                await revoke_grant(db, grant_id)
        return len(others)

    # ---- notices -------------------------------------------------------------------------------

    async def notify(self, db: AsyncSession, user: User, kind: str, *, locale: str | None,
                     also: tuple[str, str] | None = None) -> None:
        """A notice without a code: to the primary email if verified, else a verified phone;
        `also` (kind, value) is a just removed address that hears about it too."""
        recipients: list[tuple[str, str]] = []
        if user.email and user.email_verified:
            recipients.append(("email", user.email))
        else:
            phones = [i.value for i in await self.s.accounts.identifiers(db, user)
                      if i.kind == "phone" and i.verified]
            if phones:
                recipients.append(("sms", phones[0]))
        if also is not None:
            pair = ("email" if also[0] == "email" else "sms", also[1])
            if pair not in recipients:
                recipients.append(pair)
        for channel, recipient in recipients:
            await self.s.courier.enqueue(db, channel=channel, recipient=recipient, kind=kind,
                                         locale=user.locale or locale, params={})


def _described(identifier: Identifier) -> dict:
    """An identifier as audit events show it (the same fields as the API's, accounts/admin.py)."""
    return {"identifier_id": identifier.id, "kind": identifier.kind, "value": identifier.value,
            "verified": identifier.verified}


def _is_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID.fullmatch(value))


def _text(value: str, maximum: int) -> str | None:
    value = (value or "").strip()
    if len(value) > maximum or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise SelfServiceError(BAD_TEXT, maximum=maximum)
    return value or None
