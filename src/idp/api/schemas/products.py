"""Products (platform objects: a group of clients with roles of its own) and organisations'
product access ("licences")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from idp.api.schemas.common import Name
from idp.orgs.models import Product, ProductAccess
from idp.orgs.products import MAX_ROLES

# The services' own rules, so that a body the schema accepts is one the service accepts.
ProductHandle = Annotated[str, StringConstraints(
    min_length=2, max_length=40, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
RoleName = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")]


class ProductOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "cHJvZHVjdF8x", "handle": "webshop", "name": "Web shop",
        "roles": ["owner", "admin", "editor", "viewer"], "clients": ["idpc_webshop_web"],
        "created_at": "2026-12-03T08:00:00Z"}]})

    id: str
    handle: str = Field(description="Unique, lower-case; usable instead of the id in paths")
    name: str
    roles: list[str] = Field(description="The product's own roles, highest first")
    clients: list[str] = Field(description="client_ids of the product's clients: their sign-in needs a licence. "
                                           "Always empty for an organisation-bound client")
    created_at: datetime

    @classmethod
    def of(cls, product: Product, clients: list[str]) -> ProductOut:
        return cls(id=product.id, handle=product.handle, name=product.name, roles=list(product.roles),
                   clients=clients, created_at=product.created_at)


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "handle": "webshop", "name": "Web shop", "roles": ["owner", "admin", "editor", "viewer"],
        "clients": ["idpc_webshop_web"]}]})

    handle: ProductHandle = Field(description="2-40 lower-case letters, digits and single hyphens; unique")
    name: Name
    roles: list[RoleName] = Field(min_length=1, max_length=MAX_ROLES,
                                  description="1 to 10 distinct role names, highest first")
    clients: list[ClientId] = Field(default_factory=list, max_length=50,
                                    description="client_ids to attach to the product now")


class ProductAccessOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "user_id": "dXNlcl8x", "product_id": "cHJvZHVjdF8x", "product_handle": "webshop",
        "role": "editor", "granted_at": "2026-12-03T08:00:00Z"}]})

    user_id: str = Field(description="The member holding the licence")
    product_id: str
    product_handle: str
    role: str = Field(description="One of the product's roles")
    granted_at: datetime = Field(description="When the member first got access (a role change keeps it)")

    @classmethod
    def of(cls, product: Product, row: ProductAccess) -> ProductAccessOut:
        return cls(user_id=row.user_id, product_id=product.id, product_handle=product.handle,
                   role=row.role, granted_at=row.created_at)


class ProductAccessIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "editor"}]})

    role: RoleName = Field(description="One of the product's roles; the member's current one is replaced")
