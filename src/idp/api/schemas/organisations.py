"""Bodies of /api/v1/organisations and what hangs off it: members, invitations, the ownership
offer, usernames and the sign-in policy. Responses are built field by field from the services'
views: no link token or token hash ever leaves."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from idp.api.schemas.common import Email, Locale, Name, ShortText
from idp.orgs.invitations import InvitationView
from idp.orgs.members import MemberView
from idp.orgs.ownership import OfferView
from idp.orgs.policy import OrgPolicy, PolicyView
from idp.orgs.service import OrgView

# As orgs/service.py HANDLE says (it lower-cases): letters and digits, single hyphens between them.
Handle = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=40,
                                          pattern=r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")]
BusinessId = Annotated[str, StringConstraints(strip_whitespace=True, max_length=40, pattern=r"^[^\x00-\x1f\x7f]*$")]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
# A user id, or the email address of an existing account.
AccountRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320,
                                              pattern=r"^[^\s\x00-\x1f\x7f]+$")]
GivenRole = Literal["admin", "editor", "member"]
Role = Literal["owner", "admin", "editor", "member"]

ORG_EXAMPLE = {"id": "b3JnX2FjbWU", "handle": "acme", "name": "Acme Oy", "business_id": "1234567-8",
               "billing_contact_locked": False, "owner_id": "dXNlcl9vd25lcg",
               "created_at": "2026-12-03T08:00:00Z"}


# ---- organisations -------------------------------------------------------------------------------

class OrganisationOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ORG_EXAMPLE]})

    id: str
    handle: str = Field(description="Lower-case letters, digits and hyphens: the `acme` of `maija@acme`; never reused")
    name: str
    business_id: str | None = Field(description="e.g. a Finnish Y-tunnus")
    billing_contact_locked: bool = Field(description="Billing-contact changes are refused (e.g. unpaid invoices)")
    owner_id: str | None = Field(description="The owner's user id")
    created_at: datetime

    @classmethod
    def of(cls, view: OrgView) -> OrganisationOut:
        org = view.org
        return cls(id=org.id, handle=org.handle, name=org.name, business_id=org.business_id,
                   billing_contact_locked=bool(org.billing_contact_locked), owner_id=view.owner_id,
                   created_at=org.created_at)


class OrganisationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Acme Oy", "handle": "acme", "business_id": "1234567-8", "owner": "maija@example.com"}]})

    name: Name = Field(description="The organisation's name, 1-200 characters")
    handle: Handle = Field(description="2-40 lower-case letters, digits and single hyphens")
    business_id: BusinessId | None = Field(None, description="e.g. a Finnish Y-tunnus, at most 40 characters")
    owner: AccountRef = Field(description="The owner: an existing account's user id or email address")


class OrganisationPatch(BaseModel):
    """Only the fields named change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Acme Group Oy"}, {"business_id": None}, {"billing_contact_locked": True}]})

    name: Name | None = Field(None, description="The new name (not null)")
    business_id: BusinessId | None = Field(None, description="The new business ID; null or empty clears it")
    billing_contact_locked: bool | None = Field(
        None, description="Lock or unlock billing-contact changes (platform clients only; not null)")


# ---- members -------------------------------------------------------------------------------------

class MemberOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "user_id": "dXNlcl8x", "email": "maija@example.com", "name": "Maija Meikäläinen", "role": "admin",
        "joined_at": "2026-12-03T08:00:00Z"}]})

    user_id: str
    email: str | None = Field(description="The account's primary email, if it has one")
    name: str | None
    role: Role
    joined_at: datetime

    @classmethod
    def of(cls, view: MemberView) -> MemberOut:
        return cls(user_id=view.user_id, email=view.email, name=view.name, role=view.role,
                   joined_at=view.joined_at)


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"user_id": "dXNlcl8x", "role": "editor"}]})

    user_id: UserId = Field(description="An existing account (a person joins by invitation otherwise)")
    role: GivenRole = Field(description="Ownership is never given here: it is transferred")


class MemberPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "admin"}]})

    role: GivenRole = Field(description="The new role; the owner is never demoted here (transfer ownership first)")


# ---- invitations ---------------------------------------------------------------------------------

class InvitationOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "aW52XzE", "email": "pekka@example.com", "role": "member", "state": "pending",
        "invited_by": None, "created_at": "2026-12-03T08:00:00Z", "expires_at": "2026-12-10T08:00:00Z"}]})

    id: str
    email: str
    role: GivenRole
    state: Literal["pending", "expired", "accepted", "revoked"]
    invited_by: str | None = Field(description="The inviting person's user id; null for an operator or integrator")
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, view: InvitationView) -> InvitationOut:
        return cls(id=view.id, email=view.email, role=view.role, state=view.state, invited_by=view.invited_by,
                   created_at=view.created_at, expires_at=view.expires_at)


class InvitationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"email": "pekka@example.com", "role": "member", "locale": "fi"}]})

    email: Email = Field(description="Where the invitation goes; whoever holds this VERIFIED address may accept")
    role: GivenRole
    locale: Locale | None = Field(None, description="The email's language (en, fi, sv, hu); default: the platform's")


class ResendIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"locale": "sv"}]})

    locale: Locale | None = Field(None, description="The email's language")


# ---- ownership -----------------------------------------------------------------------------------

class OwnershipOfferOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "b2ZmZXJfMQ", "from_user_id": "dXNlcl9vd25lcg", "to_user_id": "dXNlcl8x", "state": "pending",
        "created_at": "2026-12-03T08:00:00Z", "expires_at": "2026-12-06T08:00:00Z"}]})

    id: str
    from_user_id: str = Field(description="The owner who offers")
    to_user_id: str = Field(description="The member who accepts, by the emailed link or in the UI")
    state: Literal["pending", "expired", "accepted", "withdrawn"]
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, view: OfferView) -> OwnershipOfferOut:
        return cls(id=view.id, from_user_id=view.from_user_id, to_user_id=view.to_user_id, state=view.state,
                   created_at=view.created_at, expires_at=view.expires_at)


class OwnershipOfferIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"to_user_id": "dXNlcl8x"}]})

    to_user_id: UserId = Field(description="A member of the organisation; a pending offer is replaced")


# ---- usernames -----------------------------------------------------------------------------------

class UsernameOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"username": "maija@acme", "user_id": "dXNlcl8x"}]})

    username: str = Field(description="`<local part>@<handle>`: a login identifier")
    user_id: str


class UsernameCreated(UsernameOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "username": "maija@acme", "user_id": "dXNlcl8x", "role": "member"}]})

    role: GivenRole


class UsernameIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "local_part": "maija", "name": "Maija Meikäläinen", "deliver_to": "+358401234567",
        "role": "member", "locale": "fi"}]})

    local_part: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = Field(
        description="Before the @: letters, digits, dots, hyphens and underscores (lower-cased)")
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")] = Field(
        description="The person's name")
    deliver_to: ShortText = Field(description="An email address or a mobile number: where the temporary password "
                                              "goes (stored unverified on the new account)")
    role: GivenRole = "member"
    locale: Locale | None = Field(None, description="The message's language")


# ---- sign-in policy ------------------------------------------------------------------------------

class Policy(BaseModel):
    """An organisation's sign-in policy (every setting; PUT replaces the whole policy)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "require_second_factor": True, "allowed_factors": ["totp", "sms"], "sms_after_password": False,
        "phone_code_sign_in": True, "phone_code_max_role": "member", "max_session_age": 86400}]})

    require_second_factor: bool = Field(False, description="Members complete a second factor")
    allowed_factors: list[Literal["totp", "sms", "email"]] = Field(
        default_factory=lambda: ["totp", "sms", "email"], max_length=6,
        description="The second factors accepted (recovery codes always are)")
    sms_after_password: bool = Field(False, description="After the password, an SMS code")
    phone_code_sign_in: bool = Field(True, description="Sign-in with a phone number and SMS code alone")
    phone_code_max_role: Role = Field("member", description="The highest role such a sign-in carries")
    max_session_age: int | None = Field(None, ge=300, le=365 * 24 * 3600,
                                        description="Seconds after sign-in before signing in again; null: no limit")

    @classmethod
    def of(cls, policy: OrgPolicy) -> Policy:
        return cls(**policy.model_dump())


class PolicyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "policy": Policy.model_config["json_schema_extra"]["examples"][0],
        "effective": Policy.model_config["json_schema_extra"]["examples"][0],
        "floor": {"require_second_factor": False, "allowed_factors": ["totp", "sms", "email"],
                  "sms_after_password": False, "phone_code_sign_in": True, "phone_code_max_role": "member",
                  "max_session_age": None}}]})

    policy: Policy = Field(description="The organisation's own settings")
    effective: Policy = Field(description="What is in force: the settings tightened by the platform floor")
    floor: Policy = Field(description="The platform's floor: the loosest policy allowed")

    @classmethod
    def of(cls, view: PolicyView) -> PolicyOut:
        return cls(policy=Policy.of(view.policy), effective=Policy.of(view.effective), floor=Policy.of(view.floor))
