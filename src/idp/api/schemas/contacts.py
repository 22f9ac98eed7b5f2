"""An organisation's admin, technical and billing contacts, and the requests that change them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from idp.accounts.models import User
from idp.orgs.contacts import ContactRequestInfo, ContactSheet

ContactKind = Literal["admin", "technical", "billing"]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

_PERSON = {"id": "dXNlcl8x", "name": "Maija Meikäläinen", "email": "maija@example.com"}


class PersonOut(BaseModel):
    """Who holds (or is to hold) a contact role: a member of the organisation."""

    id: str
    name: str | None
    email: str | None

    @classmethod
    def of(cls, user: User | None) -> PersonOut | None:
        return None if user is None else cls(id=user.id, name=user.name, email=user.email)


class ContactsOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "admin": _PERSON, "technical": _PERSON, "billing": None, "billing_contact_locked": False}]})

    admin: PersonOut | None = Field(description="The administrative contact (null: none, or they left)")
    technical: PersonOut | None
    billing: PersonOut | None
    billing_contact_locked: bool = Field(description="True while billing-contact changes are locked "
                                                     "(e.g. unpaid invoices)")

    @classmethod
    def of(cls, sheet: ContactSheet) -> ContactsOut:
        return cls(**{kind: PersonOut.of(user) for kind, user in sheet.holders.items()},
                   billing_contact_locked=bool(sheet.org.billing_contact_locked))


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"user_id": "dXNlcl8x"}]})

    user_id: UserId = Field(description="The member who becomes the contact")


class ContactRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"kind": "technical", "to_user_id": "dXNlcl8y"}]})

    kind: ContactKind = Field(description="Which contact changes")
    to_user_id: UserId = Field(description="The member who is to become the contact")


class ContactRequestOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "cmVxdWVzdF8x", "org_id": "b3JnX2FjbWU", "kind": "technical", "status": "pending",
        "from_user": _PERSON, "to_user": {**_PERSON, "id": "dXNlcl8y", "name": "Matti",
                                         "email": "matti@example.com"},
        "requested_by": None, "old_confirmed": False, "new_confirmed": True,
        "created_at": "2026-12-03T08:00:00Z", "expires_at": "2026-12-10T08:00:00Z", "closed_at": None}]})

    id: str
    org_id: str
    kind: ContactKind
    status: Literal["pending", "expired", "completed", "refused", "withdrawn"]
    from_user: PersonOut | None = Field(description="The current contact (null: the slot is empty)")
    to_user: PersonOut = Field(description="The new contact")
    requested_by: str | None = Field(description="The person who asked; null when an integrator or "
                                                 "operator did")
    old_confirmed: bool = Field(description="The current contact has confirmed (always true for an empty slot)")
    new_confirmed: bool = Field(description="The new contact has confirmed")
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, info: ContactRequestInfo) -> ContactRequestOut:
        request = info.request
        return cls(id=request.id, org_id=request.org_id, kind=request.kind, status=info.status,
                   from_user=PersonOut.of(info.old), to_user=PersonOut.of(info.new),
                   requested_by=request.requested_by, old_confirmed=info.confirmed("old"),
                   new_confirmed=info.confirmed("new"), created_at=request.created_at,
                   expires_at=request.expires_at, closed_at=request.closed_at)
