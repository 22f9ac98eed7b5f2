"""Accounts on the API: what an integrator sends and reads. No hash, secret or code is ever part
of a representation: second factors are a summary, a password only "is set"."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from idp.accounts.admin import AccountView, TemporaryPasswordSent
from idp.accounts.models import Identifier
from idp.api.schemas.common import NO_CONTROLS, Email, Locale, Name, Phone

# users.given_name and users.family_name hold 100 characters.
NamePart = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100,
                                            pattern=NO_CONTROLS)]
# The policy decides what a password must be; this only bounds the request. A password is hashed,
# never stored, so any character may be part of it.
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]

USER_EXAMPLE = {
    "id": "dXNlcl8xMjM0NTY3ODkw", "email": "maija@example.com", "email_verified": True,
    "identifiers": [
        {"id": "aWRfMTIzNDU2Nzg5MDEy", "kind": "email", "value": "maija@example.com", "verified": True},
        {"id": "aWRfMjM0NTY3ODkwMTIz", "kind": "phone", "value": "+358401234567", "verified": True}],
    "name": "Maija Meikäläinen", "given_name": "Maija", "family_name": "Meikäläinen", "locale": "fi",
    "status": "active", "second_factors": {"totp": True, "recovery_codes": 10, "code": None},
    "password_set": True, "password_must_change": False,
    "created_at": "2026-12-03T08:00:00Z", "updated_at": "2026-12-03T08:00:00Z", "disabled_at": None,
    "memberships": [{"org_id": "b3JnX2FjbWVfMTIzNDU2", "role": "member"}]}


class IdentifierOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [USER_EXAMPLE["identifiers"][1]]})

    id: str
    kind: Literal["email", "phone", "username"] = Field(
        description="email (lower-cased), phone (E.164) or an organisation username (maija@acme)")
    value: str
    verified: bool = Field(description="Only a verified identifier signs in")

    @classmethod
    def of(cls, identifier: Identifier) -> IdentifierOut:
        return cls(id=identifier.id, kind=identifier.kind, value=identifier.value, verified=identifier.verified)


class SecondFactorsOut(BaseModel):
    totp: bool = Field(description="A confirmed authenticator app")
    recovery_codes: int = Field(description="Unused recovery codes")
    code: Literal["sms", "email"] | None = Field(description="A code by SMS or email chosen as second factor")


class MembershipOut(BaseModel):
    org_id: str
    role: Literal["owner", "admin", "editor", "member"]


class UserOut(BaseModel):
    """An account. An organisation's own integration (a client bound to one organisation) reads
    only its members, and of them only what concerns its organisation: `memberships` holds the
    membership in its organisation alone, `identifiers` no username of another organisation, and
    `second_factors`, `password_set` and `password_must_change` are null. The owner's pages show
    none of these, the organisation's sign-in policy enforces factors without the integration
    looking, and the state of someone's security is theirs and the platform's to know."""

    model_config = ConfigDict(json_schema_extra={"examples": [USER_EXAMPLE]})

    id: str = Field(description="The OpenID Connect `sub`")
    email: str | None = Field(description="The primary email; null for an account registered by phone")
    email_verified: bool
    identifiers: list[IdentifierOut]
    name: str | None
    given_name: str | None
    family_name: str | None
    locale: str | None
    status: Literal["active", "disabled"]
    second_factors: SecondFactorsOut | None = Field(
        description="null for an organisation-bound client")
    password_set: bool | None = Field(description="null for an organisation-bound client")
    password_must_change: bool | None = Field(
        description="A temporary password: the next sign-in sets a new one. null for an organisation-bound client")
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None
    memberships: list[MembershipOut] = Field(
        description="For an organisation-bound client, the membership in its organisation only")

    @classmethod
    def of(cls, view: AccountView) -> UserOut:
        """`view` is already cut to what its caller may see (AccountAdmin); an organisation-scoped
        one shows no second factors or password state."""
        user, scoped = view.user, view.org_scoped
        return cls(
            id=user.id, email=user.email, email_verified=bool(user.email and user.email_verified),
            identifiers=[IdentifierOut.of(i) for i in view.identifiers], name=user.name,
            given_name=user.given_name, family_name=user.family_name, locale=user.locale,
            status="disabled" if user.disabled_at else "active",
            second_factors=None if scoped else SecondFactorsOut(
                totp=view.totp, recovery_codes=view.recovery_codes, code=user.code_second_factor),
            password_set=None if scoped else user.password_hash is not None,
            password_must_change=None if scoped else bool(user.password_must_change),
            created_at=user.created_at, updated_at=user.updated_at, disabled_at=user.disabled_at,
            memberships=[MembershipOut(org_id=org_id, role=role) for org_id, role in view.memberships])


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "email": "maija@example.com", "email_verified": True, "phone": "0401234567", "phone_verified": True,
        "given_name": "Maija", "family_name": "Meikäläinen", "locale": "fi"}]})

    email: Email | None = Field(None, description="Becomes the primary email")
    email_verified: bool = Field(False, description="The integrator vouches for the email: it signs in at once")
    phone: Phone | None = Field(None, description="National (default region) or international form")
    phone_verified: bool = Field(False, description="The integrator vouches for the number")
    password: Password | None = Field(
        None, description="Checked by the password policy; without one the person signs in with codes "
                          "or gets a temporary password")
    name: Name | None = Field(None, description="The full name; by default given and family name")
    given_name: NamePart | None = None
    family_name: NamePart | None = None
    locale: Locale | None = Field(None, description="For messages to the person, e.g. fi, en, sv")


class UserPatch(BaseModel):
    """Only the fields sent change; null clears one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"family_name": "Virtanen"}]})

    name: Name | None = None
    given_name: NamePart | None = None
    family_name: NamePart | None = None
    locale: Locale | None = None


class IdentifierCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"kind": "phone", "value": "+358401234567", "verified": True}]})

    kind: Literal["email", "phone"]
    value: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320,
                                            pattern=NO_CONTROLS)] = Field(
        description="An email address, or a phone number in national (default region) or international form")
    verified: bool = Field(False, description="The integrator vouches for it: it signs in at once")


class TemporaryPasswordCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"via": "email"}]})

    via: Literal["email", "sms"] = Field(description="Send it to the account's verified email or phone number")


class TemporaryPasswordOut(BaseModel):
    """The password itself is never returned: only the person receives it."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"sent_to": "m***@example.com", "expires_at": "2026-12-10T08:00:00Z"}]})

    sent_to: str = Field(description="Where it was sent, masked")
    expires_at: datetime

    @classmethod
    def of(cls, sent: TemporaryPasswordSent) -> TemporaryPasswordOut:
        return cls(sent_to=sent.sent_to, expires_at=sent.expires_at)
