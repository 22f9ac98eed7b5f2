"""ProductService: products with their own roles, clients attached, licences granted and revoked
by the organisation's owner and admins, with audit events."""

from __future__ import annotations

import secrets

import pytest

from idp.audit.service import Actor
from idp.oauth.clients import ClientError, ClientSpec
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from tests.org_support import refused
from tests.test_org_sign_in import add_member, new_org, person


@pytest.fixture
def s(services):
    return services


def handle() -> str:
    return f"p-{secrets.token_hex(4)}"


async def run(s, work):
    return await s.db.run(work)


async def test_products_with_four_levels_and_with_two_and_their_clients(s, rp):
    client = await rp.register()
    four = await run(s, lambda db: s.products.create(db, Actor.operator(), handle(), "Caller",
                                                     ["owner", "admin", "editor", "viewer"], [client.client_id]))
    two = await run(s, lambda db: s.products.create(db, Actor.operator(), handle(), "Billing", ["owner", "admin"]))
    assert four.roles == ["owner", "admin", "editor", "viewer"] and two.roles == ["owner", "admin"]
    assert (await run(s, lambda db: s.clients.get(db, client.client_id))).product_id == four.id
    other = await rp.register()
    await run(s, lambda db: s.products.attach_client(db, Actor.operator(), two.handle, other.client_id))
    assert (await run(s, lambda db: s.clients.get(db, other.client_id))).product_id == two.id
    events = await run(s, lambda db: s.audit.events(db, action="product.client_attached", limit=500))
    assert {e.target_id for e in events} >= {client.client_id, other.client_id}
    # A client registered with its product (id or handle).
    spec = ClientSpec(name="With product", redirect_uris=["https://rp.example/cb"], product=two.handle)
    created, _ = await run(s, lambda db: s.clients.create(db, spec))
    assert created.product_id == two.id
    with pytest.raises(ClientError):
        await run(s, lambda db: s.clients.create(db, ClientSpec(name="x", redirect_uris=["https://rp.example/cb"],
                                                                product="no-such-product")))


@pytest.mark.parametrize("roles", [[], ["a"] * 2, [f"r{i}" for i in range(11)], ["Bad Role"], ["ok", "\x00"], "owner"])
async def test_bad_role_sets_are_refused(s, roles):
    with pytest.raises(OrgError):
        await run(s, lambda db: s.products.create(db, Actor.operator(), handle(), "Bad", roles))


async def test_bad_handles_names_taken_handles_and_people_creating_products_are_refused(s):
    taken = handle()
    await run(s, lambda db: s.products.create(db, Actor.operator(), taken, "First", ["user"]))
    with pytest.raises(Conflict):
        await run(s, lambda db: s.products.create(db, Actor.operator(), taken, "Second", ["user"]))
    for bad_handle, name in (("Bad Handle", "x"), ("ok-handle", ""), ("ok-handle2", "x" * 201)):
        with pytest.raises(OrgError):
            await run(s, lambda db: s.products.create(db, Actor.operator(), bad_handle, name, ["user"]))
    with pytest.raises(Forbidden):
        await run(s, lambda db: s.products.create(db, Actor.user("someone"), handle(), "Mine", ["user"]))


async def test_licences_by_role_with_audit_events(s, rp):
    product = await run(s, lambda db: s.products.create(db, Actor.operator(), handle(), "Caller",
                                                        ["owner", "admin", "editor", "viewer"]))
    ids = {}
    for role in ("owner", "admin", "editor", "member", "outsider"):
        ids[role] = (await person(rp))[1]
    org = await new_org(s, ids["owner"])
    for role in ("admin", "editor", "member"):
        await add_member(s, org.id, ids[role], role)

    def grant(actor_role, user_role, role="viewer"):
        return run(s, lambda db: s.products.grant(db, Actor.user(ids[actor_role]), org.handle, product.id,
                                                  ids[user_role], role))

    await grant("admin", "member")
    await grant("owner", "admin", "owner")
    assert await run(s, lambda db: s.products.access_of(db, org.id, ids["member"], product.id)) == "viewer"
    await grant("admin", "member", "editor")  # a new role for the same licence
    assert await run(s, lambda db: s.products.access_of(db, org.id, ids["member"], product.id)) == "editor"
    with pytest.raises(Forbidden):
        await grant("editor", "member")
    with pytest.raises(Forbidden):
        await grant("member", "member")
    with pytest.raises(OrgNotFound):  # a stranger learns nothing
        await grant("outsider", "member")
    with refused(OrgError, "the person is not a member of this organisation"):
        await grant("admin", "outsider")
    with refused(OrgError, "the role is not one of the product's roles"):
        await grant("admin", "member", "superuser")

    listed = await run(s, lambda db: s.products.access_list(db, Actor.user(ids["admin"]), org.id))
    assert {row.user_id: row.role for _, row in listed} == {ids["member"]: "editor", ids["admin"]: "owner"}
    with pytest.raises(Forbidden):
        await run(s, lambda db: s.products.access_list(db, Actor.user(ids["member"]), org.id))

    await run(s, lambda db: s.products.revoke(db, Actor.user(ids["admin"]), org.id, product.handle, ids["member"]))
    assert await run(s, lambda db: s.products.access_of(db, org.id, ids["member"], product.id)) is None
    with pytest.raises(OrgNotFound):
        await run(s, lambda db: s.products.revoke(db, Actor.user(ids["admin"]), org.id, product.id, ids["member"]))

    events = await run(s, lambda db: s.audit.events(db, org_id=org.id, limit=50))
    actions = [(e.action, e.target_id, e.before, e.after) for e in reversed(events) if e.action.startswith("product.")]
    assert actions == [
        ("product.access_granted", ids["member"], None, {"product": product.id, "role": "viewer"}),
        ("product.access_granted", ids["admin"], None, {"product": product.id, "role": "owner"}),
        ("product.access_granted", ids["member"], {"role": "viewer"}, {"product": product.id, "role": "editor"}),
        ("product.access_revoked", ids["member"], {"product": product.id, "role": "editor"}, None),
    ]


async def _team_and_product(s, rp, roles=("owner", "admin", "editor", "viewer")):
    ids = {}
    for role in ("owner", "admin", "admin2", "editor", "member"):
        ids[role] = (await person(rp))[1]
    org = await new_org(s, ids["owner"])
    for role in ("admin", "admin2", "editor", "member"):
        await add_member(s, org.id, ids[role], "admin" if role == "admin2" else role)
    product = await run(s, lambda db: s.products.create(db, Actor.operator(), handle(), "Caller", list(roles)))
    return org, product, ids


async def test_an_admin_never_touches_the_owners_licences_nor_gives_the_products_top_role(s, rp):
    from idp.orgs.models import ProductAccess
    from sqlalchemy import select
    org, product, ids = await _team_and_product(s, rp)
    admin, owner = Actor.user(ids["admin"]), Actor.user(ids["owner"])

    def grant(actor, user, role):
        return run(s, lambda db: s.products.grant(db, actor, org.id, product.id, ids[user], role))

    def revoke(actor, user):
        return run(s, lambda db: s.products.revoke(db, actor, org.id, product.id, ids[user]))

    async def licences():
        rows = await run(s, lambda db: db.execute(select(ProductAccess.user_id, ProductAccess.role).where(
            ProductAccess.org_id == org.id)))
        return dict(rows.all())

    await grant(owner, "owner", "owner")  # the owner manages their own licence
    await grant(owner, "admin2", "owner")  # and gives the top role to whoever they like
    before = await licences()
    refusals = [
        lambda: grant(admin, "owner", "viewer"),  # the owner's licence: not an admin's business
        lambda: revoke(admin, "owner"),
        lambda: grant(admin, "admin", "owner"),  # the top role, to themselves
        lambda: grant(admin, "member", "owner"),  # or to anyone
        lambda: grant(admin, "admin2", "viewer"),  # nor replace a top-role licence the owner gave
        lambda: revoke(admin, "admin2"),
    ]
    for attempt in refusals:
        with pytest.raises(Forbidden):
            await attempt()
    assert await licences() == before
    # Up to their own level an admin manages anyone up to their own rank, themselves included.
    await grant(admin, "admin", "admin")
    await grant(admin, "member", "editor")
    await revoke(admin, "member")
    # Operators act with the owner's powers.
    await run(s, lambda db: s.products.grant(db, Actor.operator(), org.id, product.id, ids["member"], "owner"))
    await run(s, lambda db: s.products.revoke(db, Actor.operator(), org.id, product.id, ids["owner"]))
    assert await licences() == {ids["admin"]: "admin", ids["admin2"]: "owner", ids["member"]: "owner"}
    with pytest.raises(OrgNotFound):  # revoking what someone does not have
        await revoke(owner, "editor")


async def test_product_roles_of_their_own_are_judged_by_position_from_the_lowest(s, rp):
    """["lead", "staff", "guest"]: guest is at member's level, staff at editor's, lead at admin's:
    an admin gives them all. With five roles the top two are at or above owner's level: only the
    owner gives them."""
    org, product, ids = await _team_and_product(s, rp, roles=("lead", "staff", "guest"))
    await run(s, lambda db: s.products.grant(db, Actor.user(ids["admin"]), org.id, product.id, ids["admin"], "lead"))
    five = await run(s, lambda db: s.products.create(db, Actor.operator(), handle(), "Five",
                                                     ["chief", "lead", "staff", "helper", "guest"]))
    for top in ("chief", "lead"):
        with pytest.raises(Forbidden):
            await run(s, lambda db: s.products.grant(db, Actor.user(ids["admin"]), org.id, five.id, ids["member"], top))
    await run(s, lambda db: s.products.grant(db, Actor.user(ids["admin"]), org.id, five.id, ids["member"], "staff"))
    await run(s, lambda db: s.products.grant(db, Actor.user(ids["owner"]), org.id, five.id, ids["member"], "chief"))


async def test_a_licence_granted_while_the_member_is_removed_does_not_survive(s, rp):
    """A grant and a removal of the same member in parallel, ten times: afterwards nobody who is
    not a member holds a licence (the grant holds the organisation's lock, as the removal does)."""
    from idp.orgs.models import Membership, ProductAccess
    from sqlalchemy import select
    import asyncio
    org, product, ids = await _team_and_product(s, rp)
    people = [(await person(rp))[1] for _ in range(10)]
    for user_id in people:
        await add_member(s, org.id, user_id, "member")
    owner = Actor.user(ids["owner"])

    async def grant(user_id):
        return await run(s, lambda db: s.products.grant(db, owner, org.id, product.id, user_id, "viewer"))

    async def remove(user_id):
        return await run(s, lambda db: s.orgs.members.remove(db, owner, org.id, user_id))

    results = await asyncio.gather(*(work(user_id) for user_id in people for work in (grant, remove)),
                                   return_exceptions=True)
    assert all(not isinstance(r, BaseException) or isinstance(r, OrgError) for r in results), results
    members = await run(s, lambda db: db.execute(select(Membership.user_id).where(Membership.org_id == org.id)))
    holders = await run(s, lambda db: db.execute(select(ProductAccess.user_id).where(ProductAccess.org_id == org.id)))
    assert not set(people) & set(members.scalars().all())
    assert not set(people) & set(holders.scalars().all())
