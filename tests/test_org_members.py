"""Members of an organisation through the service: the list, operators adding people, role
changes within the rules, removal (with product access and token families) and leaving, each with
its audit event."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from idp.audit.service import Actor
from idp.db import utcnow
from idp.oauth.clients import ClientSpec
from idp.oauth.models import Grant, RefreshToken
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.members import NO_SUCH_ACCOUNT, ONLY_PEOPLE_LEAVE, OWNER_STAYS
from idp.orgs.models import Membership, OwnershipOffer, Product, ProductAccess
from idp.security import random_token, token_hash
from tests.org_support import organisation, person, refused, roles_of, team


@pytest.fixture
def s(services):
    return services


def as_user(user_id: str) -> Actor:
    return Actor.user(user_id)


async def call(s, method, *args):
    return await s.db.run(lambda db: method(db, *args))


async def events(s, org_id: str, action: str):
    return await s.db.run(lambda db: s.audit.events(db, org_id=org_id, action=action))


# ---- list and add --------------------------------------------------------------------------------

async def test_the_list_names_every_member_owner_first_and_only_managers_see_it(s):
    org, ids, emails = await team(s)
    listed = await call(s, s.orgs.members.list, as_user(ids["admin"]), org.handle)
    assert [m.role for m in listed] == ["owner", "admin", "editor", "member"]
    assert {m.user_id: m.email for m in listed} == {ids[r]: emails[r] for r in ("owner", "admin", "editor", "member")}
    assert listed[0].name == "Owner Person"
    with pytest.raises(Forbidden):
        await call(s, s.orgs.members.list, as_user(ids["editor"]), org.id)
    with pytest.raises(OrgNotFound):
        await call(s, s.orgs.members.list, as_user(ids["outsider"]), org.id)


async def test_an_operator_adds_a_member_but_never_an_owner_and_never_twice(s):
    _, owner = await person(s)
    _, newcomer = await person(s)
    org = await organisation(s, owner)
    operator = Actor.operator("ops")
    with pytest.raises(Forbidden):
        await call(s, s.orgs.members.add, operator, org.id, newcomer, "owner")
    for bad in ("boss", "", None, "admin\x00"):
        with pytest.raises(OrgError):
            await call(s, s.orgs.members.add, operator, org.id, newcomer, bad)
    with refused(OrgError, NO_SUCH_ACCOUNT):
        await call(s, s.orgs.members.add, operator, org.id, "no-such-user", "member")
    membership = await call(s, s.orgs.members.add, operator, org.handle, newcomer, "editor")
    assert membership.role == "editor"
    with pytest.raises(Conflict):
        await call(s, s.orgs.members.add, operator, org.id, newcomer, "member")
    with pytest.raises(OrgNotFound):
        await call(s, s.orgs.members.add, operator, "no-such-org", newcomer, "member")
    [event] = await events(s, org.id, "member.added")
    assert (event.actor_type, event.actor_id, event.target_id, event.after) == ("operator", "ops", newcomer, {"role": "editor"})
    assert (await roles_of(s, org.id)) == {owner: "owner", newcomer: "editor"}


# ---- change_role ---------------------------------------------------------------------------------

async def test_roles_change_within_the_rules_and_are_audited(s):
    org, ids, _ = await team(s)
    admin, owner = as_user(ids["admin"]), as_user(ids["owner"])
    changed = await call(s, s.orgs.members.change_role, admin, org.id, ids["member"], "admin")
    assert changed.role == "admin"
    [event] = await events(s, org.id, "member.role_changed")
    assert (event.actor_id, event.target_id, event.before, event.after) == (
        ids["admin"], ids["member"], {"role": "member"}, {"role": "admin"})
    # The same role again changes nothing and writes nothing.
    await call(s, s.orgs.members.change_role, admin, org.id, ids["member"], "admin")
    assert len(await events(s, org.id, "member.role_changed")) == 1
    # An admin may demote another admin; the owner may demote anyone but themselves.
    await call(s, s.orgs.members.change_role, admin, org.id, ids["member"], "member")
    await call(s, s.orgs.members.change_role, owner, org.id, ids["admin"], "editor")
    assert (await roles_of(s, org.id))[ids["admin"]] == "editor"


async def test_nobody_gives_ownership_touches_the_owner_or_gives_a_role_above_their_own(s):
    org, ids, _ = await team(s)
    before = await roles_of(s, org.id)
    refusals = [
        (ids["admin"], ids["member"], "owner", Forbidden),    # ownership only by transfer
        (ids["owner"], ids["admin"], "owner", Forbidden),     # not even the owner gives it
        (ids["admin"], ids["owner"], "member", Forbidden),    # an admin never touches the owner
        (ids["owner"], ids["owner"], "admin", Forbidden),     # the owner cannot demote themselves
        (ids["editor"], ids["member"], "editor", Forbidden),  # editors manage nothing
        (ids["member"], ids["member"], "admin", Forbidden),   # nor do members, even themselves
        (ids["outsider"], ids["member"], "editor", OrgNotFound),
        (ids["admin"], ids["outsider"], "editor", OrgNotFound),  # not a member: nothing to change
        (ids["admin"], "made-up", "editor", OrgNotFound),
    ]
    for actor, target, role, error in refusals:
        with pytest.raises(error):
            await call(s, s.orgs.members.change_role, as_user(actor), org.id, target, role)
    with refused(Forbidden, OWNER_STAYS):
        await call(s, s.orgs.members.change_role, Actor.operator(), org.id, ids["owner"], "admin")
    assert await roles_of(s, org.id) == before
    assert await events(s, org.id, "member.role_changed") == []


# ---- remove and leave ----------------------------------------------------------------------------

async def _product_access_and_grants(s, org_id: str, user_id: str) -> tuple[str, str, str]:
    """A licence in `org_id`, a token family for it with a live refresh token, and a token
    family of another organisation: (family of this org, its refresh token hash, other family)."""
    async def work(db):
        product = Product(handle=f"p-{random_token(nbytes=4).lower()}"[:40], name="Caller", roles=["user"])
        db.add(product)
        await db.flush()
        db.add(ProductAccess(org_id=org_id, product_id=product.id, user_id=user_id, role="user"))
        client, _ = await s.clients.create(db, ClientSpec(name="Caller", redirect_uris=["https://caller.example/cb"]))
        grants = []
        for org in (org_id, None):
            grant = Grant(client_id=client.client_id, user_id=user_id, scope="openid", auth_time=utcnow(),
                          amr=["pwd"], org_id=org)
            db.add(grant)
            await db.flush()
            grants.append(grant.id)
        refresh = token_hash(random_token("idprt_"))
        db.add(RefreshToken(token_hash=refresh, grant_id=grants[0], client_id=client.client_id, scope="openid",
                            expires_at=utcnow().replace(year=utcnow().year + 1)))
        await db.flush()
        return grants[0], refresh, grants[1]
    return await s.db.run(work)


async def test_removing_a_member_takes_their_product_access_and_their_tokens_for_the_org(s):
    org, ids, _ = await team(s)
    target = ids["editor"]
    family, refresh, other = await _product_access_and_grants(s, org.id, target)
    await call(s, s.orgs.ownership.offer, as_user(ids["owner"]), org.id, target)
    await call(s, s.orgs.members.remove, as_user(ids["admin"]), org.id, target)

    async def state(db):
        access = (await db.execute(select(ProductAccess).where(ProductAccess.user_id == target))).scalars().all()
        grants = {g.id: g.revoked_at for g in (await db.execute(select(Grant).where(Grant.user_id == target))).scalars()}
        used = (await db.get(RefreshToken, refresh)).used_at
        offers = (await db.execute(select(OwnershipOffer).where(OwnershipOffer.to_user_id == target))).scalars().all()
        return access, grants, used, offers
    access, grants, used, offers = await s.db.run(state)
    assert access == [] and used is not None
    assert grants[family] is not None and grants[other] is None  # another organisation's family lives on
    assert all(offer.withdrawn_at is not None for offer in offers)
    assert target not in await roles_of(s, org.id)
    [event] = await events(s, org.id, "member.removed")
    assert event.before == {"role": "editor"} and event.after == {"product_access_removed": 1, "grants_revoked": 1}
    with pytest.raises(OrgNotFound):  # gone: a second removal finds nobody
        await call(s, s.orgs.members.remove, as_user(ids["admin"]), org.id, target)


async def test_the_owner_is_never_removed_and_admins_do_not_remove_above_themselves(s):
    org, ids, _ = await team(s)
    for actor in (as_user(ids["admin"]), as_user(ids["owner"]), Actor.operator()):
        with pytest.raises(Forbidden):
            await call(s, s.orgs.members.remove, actor, org.id, ids["owner"])
    for actor in ("editor", "member"):
        with pytest.raises(Forbidden):
            await call(s, s.orgs.members.remove, as_user(ids[actor]), org.id, ids["member"])
    with pytest.raises(OrgNotFound):
        await call(s, s.orgs.members.remove, as_user(ids["outsider"]), org.id, ids["member"])
    assert len(await roles_of(s, org.id)) == 4
    # An admin may remove another admin (same rank), and the owner anyone else.
    await call(s, s.orgs.members.change_role, as_user(ids["owner"]), org.id, ids["editor"], "admin")
    await call(s, s.orgs.members.remove, as_user(ids["admin"]), org.id, ids["editor"])
    await call(s, s.orgs.members.remove, as_user(ids["owner"]), org.id, ids["admin"])
    assert await roles_of(s, org.id) == {ids["owner"]: "owner", ids["member"]: "member"}


async def test_a_member_leaves_but_the_owner_must_transfer_first(s):
    org, ids, _ = await team(s)
    family, _, _ = await _product_access_and_grants(s, org.id, ids["member"])
    await call(s, s.orgs.members.leave, as_user(ids["member"]), org.handle)
    assert ids["member"] not in await roles_of(s, org.id)
    revoked = await s.db.run(lambda db: db.get(Grant, family))
    assert revoked.revoked_at is not None
    [event] = await events(s, org.id, "member.left")
    assert event.actor_id == ids["member"] and event.target_id == ids["member"]
    with refused(Forbidden, OWNER_STAYS):
        await call(s, s.orgs.members.leave, as_user(ids["owner"]), org.id)
    for stranger in (ids["outsider"], ids["member"]):  # the one who left is a stranger now
        with pytest.raises(OrgNotFound):
            await call(s, s.orgs.members.leave, as_user(stranger), org.id)
    with refused(OrgError, ONLY_PEOPLE_LEAVE):
        await call(s, s.orgs.members.leave, Actor.operator(), org.id)
    assert (await roles_of(s, org.id))[ids["owner"]] == "owner"
    assert await s.db.run(lambda db: s.orgs.membership(db, org.id, ids["member"])) is None
    assert isinstance(await s.db.run(lambda db: s.orgs.membership(db, org.id, ids["admin"])), Membership)
