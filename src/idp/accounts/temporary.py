"""Temporary passwords: an administrator sets one (the CLI now, the REST API later), the person
receives it by email or SMS, and the next sign-in makes them choose their own before anything else.

    set ──▶ password_must_change, password_expires_at = now + ttl ──complete_change──▶ own password

- `set` ends every browser session and token family of the account (whoever knew the old
  password is out, as after a reset) and queues the password to a VERIFIED email or phone only:
  an unverified address may be anyone's.
- The password works until `password_expires_at`. The login step that checks the password MUST
  refuse it when `expired(user)` is true, with the same answer as a wrong password; then it
  MUST send the person to the forced change (`password_must_change`) before any consent,
  second-factor enrolment or redirect, and finish with `complete_change`.
- A generated password is 16 Crockford base32 symbols (80 bits) in four groups, read aloud or
  typed from a phone without confusing 0/O or 1/I/L.
"""

from __future__ import annotations

import math
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

import phonenumbers
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from idp.accounts.errors import AccountError
from idp.accounts.models import Identifier, User
from idp.accounts.password_policy import PasswordRejected
from idp.audit.service import SYSTEM, Actor
from idp.db import utcnow
from idp.sessions.sign_out import end_everything

if TYPE_CHECKING:
    from idp.flows.password_check import Verdict
    from idp.services import Services

Via = Literal["email", "sms"]

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # 32 symbols: no I, L, O, U
GROUPS, GROUP_LENGTH = 4, 4  # 16 symbols × 5 bits = 80 bits


class TemporaryPasswordError(AccountError):
    """A temporary password cannot be set or changed; `reason` is a stable code."""

    reason = "temporary_password"


class NoVerifiedDestination(TemporaryPasswordError):
    reason = "no_verified_destination"

    def __init__(self, via: str) -> None:
        super().__init__(f"the account has no verified {'email address' if via == 'email' else 'phone number'}")
        self.via = via


class NoChangePending(TemporaryPasswordError):
    reason = "no_change_pending"

    def __init__(self) -> None:
        super().__init__("the account has no temporary password to replace")


class TemporaryPasswordExpired(TemporaryPasswordError):
    reason = "expired"

    def __init__(self) -> None:
        super().__init__("the temporary password has expired; ask for a new one")


class SameAsTemporary(TemporaryPasswordError):
    reason = "same_as_temporary"

    def __init__(self) -> None:
        super().__init__("choose a password different from the temporary one")


def generate(groups: int = GROUPS) -> str:
    """`7K3M-Q9XD-2RFA-W8NP`: 80 random bits in 19 characters (more groups if asked)."""
    symbols = "".join(secrets.choice(CROCKFORD) for _ in range(groups * GROUP_LENGTH))
    return "-".join(symbols[i:i + GROUP_LENGTH] for i in range(0, len(symbols), GROUP_LENGTH))


def masked(destination: str) -> str:
    """What an operator may see of where the password went: `m***@example.com`,
    `+358 40 *** **67` (the country and network stay readable, the subscriber number does not)."""
    if "@" in destination:
        local, _, domain = destination.rpartition("@")
        return f"{local[:1]}***@{domain}"
    try:
        number = phonenumbers.parse(destination)
    except phonenumbers.NumberParseException:
        return "***"
    national = phonenumbers.national_significant_number(number)
    split = phonenumbers.length_of_national_destination_code(number)
    network, subscriber = national[:split], national[split:]
    hidden = "*" * max(0, len(subscriber) - 2) + subscriber[-2:]
    return " ".join(part for part in (f"+{number.country_code}", network, hidden[:3], hidden[3:]) if part)


class TemporaryPasswordService:
    def __init__(self, services: Services) -> None:
        self.s = services

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=self.s.settings.temporary_password_ttl)

    async def destination(self, db: AsyncSession, user: User, via: Via) -> str:
        """The oldest verified email (via=email) or phone number (via=sms) of the account."""
        if via not in ("email", "sms"):
            raise ValueError(f"unknown channel {via!r}")
        found = (await self.s.factors.verified_destinations(db, user.id)).get(via)
        if found is None:
            raise NoVerifiedDestination(via)
        return found

    async def set(self, db: AsyncSession, user: User, *, via: Via, password: str | None = None,
                  locale: str | None = None, to: str | None = None,
                  kind: str = "temporary_password", params: dict | None = None,
                  actor: Actor | None = None) -> str:
        """Give the account a temporary password (generated unless `password` is given, which must
        pass the policy) and send it; returns the password. Raises NoVerifiedDestination or
        PasswordRejected before anything is changed.

        `to` (an email address for via=email, an E.164 number for via=sms, normalised by the
        caller) sends it there instead of to a verified destination: only for a caller that
        vouches for the address, an organisation admin creating a username (orgs/usernames.py).
        `kind` and `params` pick another courier message that also carries the password.

        `actor`: who set it, for the `password.temporary_set` audit event (the CLI passes
        Actor.operator(), the API its client, an organisation admin themself). Without one the
        event says SYSTEM: an unnamed caller is recorded as such rather than as an operator."""
        destination = to if to is not None else await self.destination(db, user, via)
        identifiers = await self._identifiers(db, user)
        if password is None:
            password = self.new_password(identifiers)
        else:
            password = self.s.password_policy.check(
                password, identifiers=identifiers,
                has_second_factor=await self.s.factors.has_second_factor(db, user.id))
        user.password_hash = await self.s.hasher.hash(password)
        user.password_must_change = True
        user.password_expires_at = utcnow() + self.ttl
        await end_everything(db, user.id)
        await self.s.audit.record(db, actor or SYSTEM, "password.temporary_set", target_type="user", target_id=user.id,
                                  after={"via": via, "expires_at": user.password_expires_at.isoformat()})
        # Whole hours, rounded down (a TTL under an hour, only ever set for tests, says one hour).
        hours = max(1, math.floor(self.ttl.total_seconds() / 3600))
        await self.s.courier.enqueue(
            db, channel=via, recipient=destination, kind=kind,
            locale=locale or user.locale, params={**(params or {}), "password": password, "hours": hours})
        await db.flush()
        return password

    def expired(self, user: User) -> bool:
        """True when the account's password is a temporary one past its lifetime: the login step
        must then treat it as wrong. A person's own password never expires."""
        return user.password_expires_at is not None and user.password_expires_at <= utcnow()

    async def check_new(self, db: AsyncSession, user: User, new_password: str) -> str:
        """`new_password` as the policy accepts it for this account; raises PasswordRejected."""
        return self.s.password_policy.check(
            new_password, identifiers=await self._identifiers(db, user),
            has_second_factor=await self.s.factors.has_second_factor(db, user.id))

    async def complete_change(self, db: AsyncSession, user: User, new_password: str, *, verdict: Verdict,
                              actor: Actor | None = None) -> None:
        """The forced change at sign-in: the person's own password replaces the temporary one.
        Raises NoChangePending, TemporaryPasswordExpired, PasswordRejected or SameAsTemporary.
        `verdict`: check_new's answer checked against the temporary password and, when it is not
        that one, hashed, both outside the caller's transaction (a PasswordCheck with `replace`:
        flows/password_check.py). `actor`: the person (default) and the client they signed in
        for, for `password.changed`."""
        if not user.password_must_change:
            raise NoChangePending()
        if self.expired(user):
            raise TemporaryPasswordExpired()
        await self.check_new(db, user, new_password)  # an identifier added meanwhile counts too
        if verdict.ok:
            # The temporary one sat in a mailbox or on a phone screen: it cannot become permanent.
            raise SameAsTemporary()
        user.password_hash = verdict.new_hash
        user.password_must_change, user.password_expires_at = False, None
        await self.s.audit.record(db, actor or Actor.user(user.id), "password.changed", target_type="user",
                                  target_id=user.id, after={"reason": "temporary_replaced"})
        # Whoever intercepted the temporary password and used it first is found out: the person
        # hears of the change on their email, or on their phone when they have no email.
        destinations = await self.s.factors.verified_destinations(db, user.id)
        channel = "email" if "email" in destinations else "sms" if "sms" in destinations else None
        if channel is not None:
            await self.s.courier.enqueue(db, channel=channel, recipient=destinations[channel],
                                         kind="password_changed", locale=user.locale, params={})
        await db.flush()

    def new_password(self, identifiers: tuple[str, ...]) -> str:
        # Enough groups for a policy minimum above 19 characters (each group adds five).
        groups = max(GROUPS, math.ceil((self.s.password_policy.min_length + 1) / (GROUP_LENGTH + 1)))
        for _ in range(100):  # a random password containing the account's name is rare, not impossible
            try:
                return self.s.password_policy.check(generate(groups), identifiers=identifiers)
            except PasswordRejected:
                continue
        raise RuntimeError("cannot generate a temporary password that passes the password policy")

    async def _identifiers(self, db: AsyncSession, user: User) -> tuple[str, ...]:
        values = (await db.execute(select(Identifier.value).where(
            Identifier.user_id == user.id))).scalars().all()
        return tuple(dict.fromkeys(v for v in [user.email, *values] if v))
