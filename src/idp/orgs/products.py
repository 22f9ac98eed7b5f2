"""Products and who may use them: `s.products`.

A product groups clients (a website and its app are one product) and declares its own roles,
highest first: four levels for one product, only ["owner", "admin"] for another. Per
organisation and product, the organisation's owner and admins grant members access ("a licence")
with one of the product's roles. A client that belongs to a product signs in only members who
hold such a licence in the organisation chosen at sign-in (flows/organisation.py).

Products themselves are platform objects: operators (the CLI) and integrators create them and
attach clients; people manage only the licences of their own organisation.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from idp.audit.service import Actor
from idp.db.paging import paginate
from idp.oauth.models import Client
from idp.orgs import permissions
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.models import Product, ProductAccess
from idp.orgs.service import HANDLE

if TYPE_CHECKING:
    from idp.services import Services

# A product role: a short lower-case name ("owner", "viewer", "billing-admin").
ROLE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
MAX_ROLES = 10
_REF = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _platform_actor(actor: Actor) -> None:
    """Products are the platform's: a person (even an organisation's owner) cannot make one."""
    if actor.type not in ("operator", "client", "system") or actor.org_id is not None:
        raise Forbidden("only an operator or an integrator can manage products")


def check_roles(roles: list[str]) -> list[str]:
    """1 to 10 distinct short names, highest first. Raises OrgError."""
    if not isinstance(roles, (list, tuple)) or not 1 <= len(roles) <= MAX_ROLES:
        raise OrgError(f"a product has 1 to {MAX_ROLES} roles")
    cleaned = [role.strip().lower() if isinstance(role, str) else "" for role in roles]
    if not all(ROLE_NAME.fullmatch(role) for role in cleaned):
        raise OrgError("a role is 1 to 40 lower-case letters, digits, hyphens or underscores, starting with a letter")
    if len(set(cleaned)) != len(cleaned):
        raise OrgError("the roles must be distinct")
    return cleaned


class ProductService:
    def __init__(self, services: Services) -> None:
        self.s = services

    # ---- products (operators) -------------------------------------------------------------------

    async def find(self, db: AsyncSession, ref: str | None) -> Product | None:
        """A product by id or handle."""
        if not isinstance(ref, str) or not _REF.fullmatch(ref):
            return None
        # The exact id first, then the handle: a handle never shadows another product's id.
        return await db.get(Product, ref) or (await db.execute(select(Product).where(
            Product.handle == ref.lower()))).scalar_one_or_none()

    async def get(self, db: AsyncSession, product_id: str | None) -> Product | None:
        return await db.get(Product, product_id) if product_id else None

    async def list(self, db: AsyncSession) -> list[Product]:
        return list((await db.execute(select(Product).order_by(Product.name, Product.id))).scalars())

    async def page(self, db: AsyncSession, *, limit: int, cursor: str | None,
                   handle: str | None = None) -> tuple[list[Product], str | None]:
        """Products oldest first, a page at a time (the REST API); `handle` filters to that one."""
        query = select(Product)
        if handle is not None:
            query = query.where(Product.handle == handle.strip().lower())
        return await paginate(db, query, time_column=Product.created_at, id_column=Product.id,
                              limit=limit, cursor=cursor)

    async def clients_of(self, db: AsyncSession, product_ids: list[str]) -> dict[str, list[str]]:
        """{product id: its client ids, sorted} for the given products."""
        found: dict[str, list[str]] = {product_id: [] for product_id in product_ids}
        if product_ids:
            rows = await db.execute(select(Client.product_id, Client.client_id).where(
                Client.product_id.in_(set(product_ids))).order_by(Client.client_id))
            for product_id, client_id in rows.all():
                found[product_id].append(client_id)
        return found

    async def create(self, db: AsyncSession, actor: Actor, handle: str, name: str, roles: list[str],
                     client_ids: list[str] | tuple[str, ...] = ()) -> Product:
        """A new product with its roles (highest first) and, optionally, its clients.
        Raises OrgError (bad input), Conflict (handle taken), OrgNotFound (unknown client)."""
        _platform_actor(actor)
        handle = (handle or "").strip().lower()
        if not HANDLE.fullmatch(handle):
            raise OrgError("the handle must be 2 to 40 lower-case letters, digits and single hyphens")
        name = " ".join((name or "").split())
        if not name or len(name) > 200 or "\x00" in name:
            raise OrgError("the name must be 1 to 200 characters")
        roles = check_roles(roles)
        product = Product(handle=handle, name=name, roles=roles)
        try:
            async with db.begin_nested():
                db.add(product)
                await db.flush()
        except IntegrityError:
            raise Conflict("this product handle is taken") from None
        await self.s.audit.record(db, actor, "product.created", target_type="product", target_id=product.id,
                                  after={"handle": handle, "name": name, "roles": roles})
        for client_id in client_ids:
            await self._attach(db, actor, product, client_id)
        return product

    async def attach_client(self, db: AsyncSession, actor: Actor, product_ref: str, client_id: str) -> Client:
        """Make `client_id` one of the product's clients (its sign-in then needs a licence)."""
        _platform_actor(actor)
        product = await self.find(db, product_ref)
        if product is None:
            raise OrgNotFound("no such product")
        return await self._attach(db, actor, product, client_id)

    async def detach_client(self, db: AsyncSession, actor: Actor, client_id: str, *,
                            product_ref: str | None = None) -> Client:
        """Take a client out of its product. With `product_ref`, only out of that product: a
        client of another product (or of none) is OrgNotFound, as for an unknown one."""
        _platform_actor(actor)
        client = await self.s.clients.get(db, client_id)
        if client is None:
            raise OrgNotFound("no such client")
        if product_ref is not None:
            product = await self.find(db, product_ref)
            if product is None:
                raise OrgNotFound("no such product")
            if client.product_id != product.id:
                raise OrgNotFound("the client is not one of the product's clients")
        before, client.product_id = client.product_id, None
        await db.flush()
        await self.s.audit.record(db, actor, "product.client_detached", target_type="client",
                                  target_id=client.client_id, before={"product": before}, after={"product": None})
        return client

    async def _attach(self, db: AsyncSession, actor: Actor, product: Product, client_id: str) -> Client:
        client = await self.s.clients.get(db, client_id)
        if client is None:
            raise OrgNotFound("no such client")
        before, client.product_id = client.product_id, product.id
        await db.flush()
        await self.s.audit.record(db, actor, "product.client_attached", target_type="client",
                                  target_id=client.client_id, before={"product": before},
                                  after={"product": product.id})
        return client

    # ---- licences (organisations' owners and admins) --------------------------------------------

    async def grant(self, db: AsyncSession, actor: Actor, org_ref: str, product_ref: str, user_id: str,
                    role: str) -> ProductAccess:
        """Give a member access to a product with one of its roles, or change the role they have.

        Holds the organisation's row lock (as removing a member does), so a licence is never
        given to someone whose removal commits in parallel. Nobody touches the licences of
        someone ranked above them (an admin never the owner's), and nobody gives, or replaces, a
        product role above their own level (`permissions.may_give_product_role`): a product's
        owner-level role is the organisation owner's to give. Operators and integrators act with
        the owner's powers. Raises OrgError (not a member, not one of the product's roles),
        Forbidden, OrgNotFound (strangers, unknown product)."""
        access, target = await self._member(db, actor, org_ref, user_id,
                                            missing=OrgError("the person is not a member of this organisation"))
        org = access.org
        product = await self.find(db, product_ref)
        if product is None:
            raise OrgNotFound("no such product")
        if not isinstance(role, str) or role not in product.roles:
            raise OrgError("the role is not one of the product's roles")
        row = await self._licence(db, org.id, product.id, target.user_id)
        self._may_give(access, product, role, row)
        before = {"role": row.role} if row else None
        if row is None:
            try:
                async with db.begin_nested():
                    row = ProductAccess(org_id=org.id, product_id=product.id, user_id=target.user_id, role=role)
                    db.add(row)
                    await db.flush()
            except IntegrityError:  # only without the lock's protection, e.g. a foreign writer
                row = await self._licence(db, org.id, product.id, target.user_id)
                self._may_give(access, product, role, row)
                before = {"role": row.role}
        row.role = role
        await db.flush()
        await self.s.audit.record(db, actor, "product.access_granted", org_id=org.id, target_type="user",
                                  target_id=target.user_id, before=before,
                                  after={"product": product.id, "role": role})
        return row

    async def revoke(self, db: AsyncSession, actor: Actor, org_ref: str, product_ref: str, user_id: str) -> None:
        """Take a member's access to a product away, under the same rules as `grant` (the
        organisation's lock; not the licence of someone ranked above the actor, nor one whose role
        is above the actor's level). OrgNotFound if they had none."""
        no_access = OrgNotFound("this person has no access to the product")
        access, target = await self._member(db, actor, org_ref, user_id, missing=no_access)
        product = await self.find(db, product_ref)
        if product is None:
            raise OrgNotFound("no such product")
        row = await self._licence(db, access.org.id, product.id, target.user_id)
        if row is None:
            raise no_access
        self._may_give(access, product, row.role, None)
        await db.delete(row)
        await db.flush()
        await self.s.audit.record(db, actor, "product.access_revoked", org_id=access.org.id, target_type="user",
                                  target_id=target.user_id, before={"product": product.id, "role": row.role})

    async def _member(self, db: AsyncSession, actor: Actor, org_ref: str, user_id: object, *,
                      missing: Exception):
        """The organisation (row-locked) and the member whose licences `actor` manages, after the
        permission table's rules (`products.manage_access` with the member's role). `missing` is
        raised for someone who is not a member, once the actor is known to have the right."""
        access = await self.s.orgs.require(db, actor, org_ref, "products.manage_access", lock=True)
        target = (await self.s.orgs.membership(db, access.org.id, user_id)
                  if isinstance(user_id, str) and _REF.fullmatch(user_id) else None)
        if target is None:
            raise missing
        if access.membership is not None:
            permissions.check(access.role, "products.manage_access", target_role=target.role)
        return access, target

    @staticmethod
    def _may_give(access, product: Product, role: str, row: ProductAccess | None) -> None:
        """A person may give `role` and replace the licence `row` only at or below their level."""
        if access.membership is None:  # operators and integrators: the owner's powers
            return
        for product_role in (role, row.role if row else None):
            if product_role is not None and not permissions.may_give_product_role(
                    access.role, list(product.roles), product_role):
                raise Forbidden("only the organisation's owner can give or change this product role")

    async def forget_member(self, db: AsyncSession, org_id: str, user_id: str) -> None:
        """Drop every licence a person held in an organisation (they left or were removed), so a
        later membership does not bring old access back."""
        await db.execute(delete(ProductAccess).where(ProductAccess.org_id == org_id,
                                                     ProductAccess.user_id == user_id))

    async def access_list(self, db: AsyncSession, actor: Actor, org_ref: str,
                          product_ref: str | None = None) -> list[tuple[Product, ProductAccess]]:
        """The organisation's licences (of one product, or all), for its owner and admins."""
        access = await self.s.orgs.require(db, actor, org_ref, "products.view")
        query = (select(Product, ProductAccess).join(ProductAccess, ProductAccess.product_id == Product.id)
                 .where(ProductAccess.org_id == access.org.id)
                 .order_by(Product.name, ProductAccess.created_at, ProductAccess.id))
        if product_ref is not None:
            product = await self.find(db, product_ref)
            if product is None:
                raise OrgNotFound("no such product")
            query = query.where(Product.id == product.id)
        return [(product, row) for product, row in (await db.execute(query)).all()]

    async def access_page(self, db: AsyncSession, actor: Actor, org_ref: str, *, limit: int,
                          cursor: str | None, product_ref: str | None = None, user_id: str | None = None,
                          ) -> tuple[list[tuple[Product, ProductAccess]], str | None]:
        """`access_list` a page at a time, oldest licence first, optionally of one product or one
        person (the REST API)."""
        access = await self.s.orgs.require(db, actor, org_ref, "products.view")
        query = select(ProductAccess).where(ProductAccess.org_id == access.org.id)
        if product_ref is not None:
            product = await self.find(db, product_ref)
            if product is None:
                raise OrgNotFound("no such product")
            query = query.where(ProductAccess.product_id == product.id)
        if user_id is not None:
            query = query.where(ProductAccess.user_id == user_id)
        rows, next_cursor = await paginate(db, query, time_column=ProductAccess.created_at,
                                           id_column=ProductAccess.id, limit=limit, cursor=cursor)
        products = {p.id: p for p in (await db.execute(select(Product).where(
            Product.id.in_({row.product_id for row in rows})))).scalars()} if rows else {}
        return [(products[row.product_id], row) for row in rows], next_cursor

    async def access_of(self, db: AsyncSession, org_id: str, user_id: str, product_id: str) -> str | None:
        """The person's role in the product in this organisation, or None (no licence)."""
        row = await self._licence(db, org_id, product_id, user_id)
        return row.role if row else None

    async def _licence(self, db: AsyncSession, org_id: str, product_id: str, user_id: str) -> ProductAccess | None:
        return (await db.execute(select(ProductAccess).where(
            ProductAccess.org_id == org_id, ProductAccess.product_id == product_id,
            ProductAccess.user_id == user_id))).scalar_one_or_none()
