"""Organisation sign-in policies (seed 004) and the platform floor no policy goes below.

An organisation's policy (Organisation.policy, JSON; {} = the defaults below) decides what a
session needs before tokens for that organisation are issued. The defaults suit a consumer-grade
platform where people bring their own accounts: nothing beyond the platform's own sign-in rules,
except that a phone number and SMS code alone (seed 004: "only that number's functions") carry
at most the member role.

The floor (settings `org_policy_floor_*`) is itself a policy, the loosest one allowed:
- an update that changes a setting to something looser than the floor is refused with a message
  saying the platform does not allow it (refused, not clamped: an admin must never believe a
  setting is in force when it is not);
- a stored policy the floor has since overtaken (an operator tightened it) is tightened when read:
  `effective(org)`. Everything that decides a sign-in reads the effective policy.

The sign-in flow asks `requirements(org, amr=session.amr, methods=session.methods)` and acts on
the answer (see `Requirements`, and `Requirements.problem` for what to do now). `evaluate` is the
same rule on a policy, pure, for tests and the admin pages.

`methods` are the sign-in methods by our own names, in the order they were done (pwd, sms, email,
totp, recovery; the first is the first factor), as sessions, codes and grants record them. RFC
8176's amr cannot tell an authenticator app's code from an emailed one ("otp"), so a policy that
allows only some second factors is judged on `methods`. Rows from before methods were recorded
(None) fall back to the amr, where a later "otp" counts only if every method it may stand for is
allowed: failing closed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from idp.audit.service import Actor
from idp.orgs.errors import OrgError
from idp.orgs.models import Organisation
from idp.orgs.permissions import rank

if TYPE_CHECKING:
    from idp.services import Services

log = logging.getLogger(__name__)

FACTORS = ("totp", "sms", "email")  # second factors a policy can allow; recovery codes always can
Factor = Literal["totp", "sms", "email"]
Role = Literal["owner", "admin", "editor", "member"]
MAX_SESSION_AGE = 365 * 24 * 3600


class OrgPolicy(BaseModel):
    """One organisation's sign-in policy. Validated on every write; unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Members must complete a second factor (one of `allowed_factors`, or a recovery code).
    require_second_factor: bool = False
    allowed_factors: list[Factor] = Field(default_factory=lambda: list(FACTORS))
    # Seed 004: after the password, an SMS code; the owner or an admin switches it off. Off by
    # default: not every member has a phone, and the organisation opts in.
    sms_after_password: bool = False
    # Sign-in with a phone number and SMS code alone, giving a restricted session whose tokens
    # carry at most `phone_code_max_role` in this organisation.
    phone_code_sign_in: bool = True
    phone_code_max_role: Role = "member"
    # Seconds since the sign-in after which the person signs in again (None: the session's own
    # lifetime, settings.session_ttl, decides).
    max_session_age: int | None = Field(None, ge=300, le=MAX_SESSION_AGE)

    @field_validator("allowed_factors", mode="before")
    @classmethod
    def _bounded_list(cls, value: object) -> object:
        if not isinstance(value, list | tuple) or len(value) > len(FACTORS) * 2:
            raise ValueError("not a short list")
        return list(value)

    @field_validator("allowed_factors")
    @classmethod
    def _canonical_order(cls, value: list[str]) -> list[str]:
        return [factor for factor in FACTORS if factor in value]

    @field_validator("max_session_age", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("not a number of seconds")
        return None if value == "" else value

    @model_validator(mode="after")
    def _coherent(self) -> OrgPolicy:
        if self.require_second_factor and not self.allowed_factors:
            raise ValueError("allowed_factors: choose at least one second factor when a second "
                             "factor is required")
        if self.require_second_factor and self.sms_after_password and "sms" not in self.allowed_factors:
            raise ValueError("allowed_factors: the SMS step after the password needs SMS among the "
                             "allowed second factors")
        return self


# What a bad value of each field is told (English source strings; pages translate them).
_FIELD_ERRORS = {
    "require_second_factor": "require_second_factor must be true or false",
    "allowed_factors": "allowed_factors must be a list of: totp, sms, email",
    "sms_after_password": "sms_after_password must be true or false",
    "phone_code_sign_in": "phone_code_sign_in must be true or false",
    "phone_code_max_role": "phone_code_max_role must be one of: owner, admin, editor, member",
    "max_session_age": "max_session_age must be empty or from 300 to 31536000 seconds",
}


class PolicyRejected(OrgError):
    """A policy that breaks a rule of its own or goes below the platform floor. Pages show the
    message like any refusal (status 400, as before); the REST API answers 422 policy-rejected."""


def parse(data: dict) -> OrgPolicy:
    """A policy from untrusted data, or an OrgError naming the first bad field."""
    try:
        return OrgPolicy.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = first["loc"][0] if first["loc"] else None
        if field in _FIELD_ERRORS:
            raise PolicyRejected(_FIELD_ERRORS[field]) from None
        reason = first.get("ctx", {}).get("error")  # a rule across fields, already worded
        raise PolicyRejected(str(reason) if reason else "the policy is not valid") from None


def lower_role(a: str, b: str) -> str:
    """The lower of two organisation roles ("admin", "member" → "member")."""
    return a if rank(a) > rank(b) else b


def tighten(policy: OrgPolicy, floor: OrgPolicy) -> OrgPolicy:
    """`policy` made no looser than `floor` in any respect."""
    factors = [f for f in policy.allowed_factors if f in floor.allowed_factors]
    require = policy.require_second_factor or floor.require_second_factor
    sms_step = policy.sms_after_password
    if sms_step and "sms" not in floor.allowed_factors:
        # The platform does not count SMS as a second factor: the step becomes a second factor
        # the platform accepts, never nothing.
        sms_step, require = False, True
    if not factors:
        # Nothing the organisation chose is allowed any more. The platform's factors, rather
        # than none: with a second factor required, none would lock every member out.
        factors = list(floor.allowed_factors)
    ages = [a for a in (policy.max_session_age, floor.max_session_age) if a is not None]
    return policy.model_copy(update={
        "require_second_factor": require,
        "allowed_factors": factors,
        "sms_after_password": sms_step,
        "phone_code_sign_in": policy.phone_code_sign_in and floor.phone_code_sign_in,
        "phone_code_max_role": lower_role(policy.phone_code_max_role, floor.phone_code_max_role),
        "max_session_age": min(ages) if ages else None,
    })


def _refuse_looser(before: OrgPolicy, after: OrgPolicy, floor: OrgPolicy) -> None:
    """Refuse a change that sets something looser than the floor. Settings left as they were
    are not refused (the page may post the whole form): `tighten` takes care of those."""
    changed = {name for name in OrgPolicy.model_fields if getattr(before, name) != getattr(after, name)}
    if "require_second_factor" in changed and floor.require_second_factor and not after.require_second_factor:
        raise PolicyRejected("the platform requires a second factor for every organisation")
    if "allowed_factors" in changed and not set(after.allowed_factors) <= set(floor.allowed_factors):
        raise PolicyRejected("the platform does not allow one of these second factors")
    if "sms_after_password" in changed and after.sms_after_password and "sms" not in floor.allowed_factors:
        raise PolicyRejected("the platform does not allow SMS as a second factor")
    if "phone_code_sign_in" in changed and after.phone_code_sign_in and not floor.phone_code_sign_in:
        raise PolicyRejected("the platform does not allow sign-in by phone number and SMS code alone")
    if ("phone_code_max_role" in changed
            and rank(after.phone_code_max_role) < rank(floor.phone_code_max_role)):
        raise PolicyRejected("the platform does not allow a phone-code sign-in to carry this role")
    if "max_session_age" in changed and floor.max_session_age is not None and (
            after.max_session_age is None or after.max_session_age > floor.max_session_age):
        raise PolicyRejected("the platform does not allow sessions this long")


# ---- what a session needs --------------------------------------------------------------------


@dataclass(frozen=True)
class Requirements:
    """What a session with a given amr needs before tokens for an organisation are issued.

    - `refused`: this session cannot be used for the organisation (a phone number and SMS code
      alone, which the policy does not allow); the person signs in another way. Nothing else
      applies then.
    - `second_factor`: ask for one of `allowed_factors` (those the account also has:
      `s.factors.methods`) before issuing, then ask `requirements` again with the new amr.
      Values: "totp", "sms", "email", "recovery", "pwd" (a password after a code sign-in).
    - `max_age`: the sign-in (auth_time) must be at most this many seconds old, else sign in
      again (as OIDC `max_age`; the lower of the two applies).
    - `max_role`: a restricted session: its tokens carry at most this organisation role (and
      only what that role may have). None: not restricted.
    """

    second_factor: bool = False
    allowed_factors: tuple[str, ...] = ()
    max_age: int | None = None
    refused: bool = False
    max_role: str | None = None

    def problem(self, auth_time: datetime | float) -> str | None:
        """What a session signed in at `auth_time` lacks, in the order to act on it: "refused"
        (sign in again another way), "max_age" (sign in again), "second_factor" (step up with one
        of `allowed_factors`), or None (it may be used; `max_role` still caps it)."""
        if self.refused:
            return "refused"
        when = auth_time.timestamp() if isinstance(auth_time, datetime) else float(auth_time)
        if self.max_age is not None and time.time() - when > self.max_age:
            return "max_age"
        if self.second_factor:
            return "second_factor"
        return None


_ORDER = ("totp", "sms", "email", "pwd", "recovery")


def _second_factors(policy: OrgPolicy, done: set[str]) -> tuple[str, ...]:
    """The factors that complete a second factor after `done` (RFC 8176 values, no "mfa")."""
    # Never the first factor's channel again: an SMS code after an SMS sign-in is one factor.
    # A first-factor "otp" is an emailed code (an authenticator app is never a first factor).
    used = {"sms"} & done | ({"email"} if "otp" in done else set())
    chosen = {f for f in policy.allowed_factors if f not in used}
    if "pwd" not in done and used & set(policy.allowed_factors):
        chosen.add("pwd")  # a code the policy allows, then the password: the same two factors
    chosen.add("recovery")  # the fallback of a lost factor, always
    return tuple(f for f in _ORDER if f in chosen)


# Our method names → RFC 8176 (flows/service.py AMR). A first-factor "otp" is an emailed code.
_AMR_OF = {"pwd": "pwd", "sms": "sms", "email": "otp", "totp": "otp", "recovery": "otp"}
# What an "otp" of a row without `methods` may have been, after the first factor.
_OTP_MEANINGS = frozenset({"email", "totp", "recovery"})


def _methods_of(amr: list[str], methods: list[str] | None) -> list[str]:
    """The methods done, first factor first: `methods`, or for older rows the amr's (a first
    "otp" is an emailed code; a later one stays "otp", unknown)."""
    if methods is not None:
        return [m for m in dict.fromkeys(methods) if isinstance(m, str)]
    names = [m for m in dict.fromkeys(amr) if m != "mfa"]
    if names and names[0] == "otp":
        names[0] = "email"
    return names


def _asked_after(policy: OrgPolicy, first: str) -> tuple[str, ...]:
    """The second factors `require_second_factor` accepts after the first factor `first`."""
    factors = _second_factors(policy, {_AMR_OF.get(first, first)})
    if policy.sms_after_password and "sms" in factors:
        factors = ("sms", "recovery")
    return factors


def _second_factor_done(policy: OrgPolicy, done: list[str]) -> tuple[bool, tuple[str, ...]]:
    """Whether a method after the first factor is one the policy accepts as the second factor,
    and if not, the ones still to ask for."""
    if len(done) < 2:
        return False, _asked_after(policy, done[0]) if done else _second_factors(policy, set())
    first, later = done[0], done[1:]
    accepted = _asked_after(policy, first)
    for method in later:
        if method == "otp":  # a row without methods: an app, an email or a recovery code
            if (_OTP_MEANINGS - {first}) <= set(accepted):
                return True, ()
        elif method != first and method in accepted:
            return True, ()
    return False, tuple(f for f in accepted if f not in later)


def evaluate(policy: OrgPolicy, amr: list[str], methods: list[str] | None = None) -> Requirements:
    """The rules, on an (effective) policy, a session's RFC 8176 amr, e.g. ["pwd"], ["sms"],
    ["otp"] (an emailed code), ["pwd", "otp", "mfa"], ["sms", "otp", "mfa"], and the methods
    behind it by name (["pwd", "totp"]; None for rows from before they were recorded).

    - Two factors done ("mfa"): the session is not restricted, and nothing more is asked unless
      `require_second_factor` and no method after the first factor is one the policy accepts
      (`allowed_factors` but never the first factor's channel again, the password after an
      allowed code, a recovery code; only the SMS code with `sms_after_password`): then that
      second factor is asked for. Without `methods`, a later "otp" counts only if the policy
      accepts all of an app's, an emailed and a recovery code.
    - A phone number and SMS code alone (["sms"]): refused unless `phone_code_sign_in`; else a
      restricted session (`max_role`), still asked for a second factor if the policy requires one.
    - `require_second_factor`: a second factor from `allowed_factors` (not the channel already
      used; a password after a code; a recovery code). With `sms_after_password` too, the one
      second factor is the SMS code (or a recovery code), which satisfies both.
    - `sms_after_password` alone: any single-factor sign-in that did not use SMS (the password,
      and also an emailed code, which would otherwise go round the step) needs the SMS code.
    """
    max_age = policy.max_session_age
    if "mfa" in amr:
        if not policy.require_second_factor:
            return Requirements(max_age=max_age)
        done, missing = _second_factor_done(policy, _methods_of(amr, methods))
        if done:
            return Requirements(max_age=max_age)
        return Requirements(second_factor=True, allowed_factors=missing or ("recovery",), max_age=max_age)
    done = {m for m in amr if m != "mfa"}
    phone_code = done == {"sms"}
    if phone_code and not policy.phone_code_sign_in:
        return Requirements(max_age=max_age, refused=True)
    factors: tuple[str, ...] = ()
    if policy.require_second_factor:
        factors = _second_factors(policy, done)
        if policy.sms_after_password and "sms" in factors:
            factors = ("sms", "recovery")
    elif policy.sms_after_password and "sms" not in done:
        factors = ("sms",)
    return Requirements(second_factor=bool(factors), allowed_factors=factors, max_age=max_age,
                        max_role=policy.phone_code_max_role if phone_code else None)


# ---- the service ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyView:
    """What the admin pages show: the organisation's own choices, what is in force, the floor."""

    policy: OrgPolicy
    effective: OrgPolicy
    floor: OrgPolicy


# A stored policy that no longer validates (edited by hand, or an older shape) is read as this,
# with a warning: failing closed, never a 500 at sign-in.
_STRICT = OrgPolicy(require_second_factor=True, phone_code_sign_in=False)


class OrgPolicyService:
    def __init__(self, services: Services) -> None:
        self.s = services

    def floor(self) -> OrgPolicy:
        """The platform floor (settings), as the loosest policy allowed."""
        settings = self.s.settings
        return OrgPolicy.model_construct(
            require_second_factor=settings.org_policy_floor_require_second_factor,
            allowed_factors=list(settings.org_policy_floor_allowed_factors),
            sms_after_password=False,
            phone_code_sign_in=settings.org_policy_floor_phone_code_sign_in,
            phone_code_max_role=settings.org_policy_floor_phone_code_max_role,
            max_session_age=settings.org_policy_floor_max_session_age,
        )

    def policy_of(self, org: Organisation) -> OrgPolicy:
        """The organisation's own policy as stored (unknown keys ignored)."""
        stored = org.policy if isinstance(org.policy, dict) else {}
        try:
            return OrgPolicy.model_validate({k: v for k, v in stored.items() if k in OrgPolicy.model_fields})
        except ValidationError:
            log.warning("organisation policy does not validate; applying the strict policy",
                        extra={"fields": {"org_id": org.id}})
            return _STRICT

    def effective(self, org: Organisation) -> OrgPolicy:
        """The policy in force: the organisation's, tightened by the platform floor."""
        return tighten(self.policy_of(org), self.floor())

    def requirements(self, org: Organisation | None, *, amr: list[str],
                     methods: list[str] | None = None) -> Requirements:
        """What a session with `amr` (and `methods`, by name: see `evaluate`) needs for tokens of
        `org` and for its admin pages (pure: no database). No organisation: no requirements of
        this kind."""
        if org is None:
            return Requirements()
        return evaluate(self.effective(org), list(amr or []), None if methods is None else list(methods))

    def requirements_of(self, org: Organisation | None, holder) -> Requirements:
        """`requirements` for a session, an authorization code or a grant (its amr and methods)."""
        return self.requirements(org, amr=holder.amr, methods=holder.methods)

    async def view(self, db: AsyncSession, actor: Actor, org_ref: str | None, *,
                   lock: bool = False) -> PolicyView:
        """`lock`: hold the organisation's row lock, for a caller that compares before it updates."""
        access = await self.s.orgs.require(db, actor, org_ref, "policies.view", lock=lock)
        return PolicyView(self.policy_of(access.org), self.effective(access.org), self.floor())

    async def update(self, db: AsyncSession, actor: Actor, org_ref: str | None,
                     changes: dict) -> OrgPolicy:
        """Change some settings of the policy (owner or admin). Bad values → OrgError naming the
        field; a change looser than the floor → OrgError saying the platform does not allow it;
        nothing is changed then. No lock: two admins saving at once, the last one wins."""
        access = await self.s.orgs.require(db, actor, org_ref, "policies.manage")
        if not isinstance(changes, dict) or not changes:
            raise OrgError("nothing to change")
        if any(name not in OrgPolicy.model_fields for name in changes):
            raise OrgError("unknown policy setting")
        before = self.policy_of(access.org)
        after = parse({**before.model_dump(), **changes})
        _refuse_looser(before, after, self.floor())
        if after == before:
            return after
        old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
        access.org.policy = new
        await db.flush()
        changed = [name for name in new if old[name] != new[name]]
        await self.s.audit.record(
            db, actor, "policy.updated", org_id=access.org.id, target_type="org",
            target_id=access.org.id, before={k: old[k] for k in changed},
            after={k: new[k] for k in changed})
        return after


__all__ = ["FACTORS", "OrgPolicy", "OrgPolicyService", "PolicyRejected", "PolicyView", "Requirements",
           "evaluate", "lower_role", "parse", "tighten"]
