"""Ownership transfer and the "exactly one owner" invariant: offer, accept (link or UI), withdraw,
expire, the emailed link's page, and parallel attempts to remove, demote and transfer."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update

from idp.audit.service import Actor
from idp.db import utcnow
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.links import LinkGone, LinkNotFound
from idp.orgs.models import OwnershipOffer
from idp.orgs.ownership import NAME_ONE, NOT_A_MEMBER
from tests.org_support import link, organisation, owner_count, person, queued, refused, roles_of, team
from tests.rp import form_field


@pytest.fixture
def s(services):
    return services


def as_user(user_id: str) -> Actor:
    return Actor.user(user_id)


async def call(s, method, *args, **kwargs):
    return await s.db.run(lambda db: method(db, *args, **kwargs))


async def test_the_member_accepts_by_the_emailed_link_and_the_old_owner_becomes_admin(s):
    org, ids, emails = await team(s)
    offer = await call(s, s.orgs.ownership.offer, as_user(ids["owner"]), org.id, ids["editor"])
    [params] = await queued(s, emails["editor"], "ownership_offer")
    assert params["org"] == "Acme Oy" and params["url"].startswith("http://idp.test/orgs/ownership/idpown_")
    token = await link(s, emails["editor"], "ownership_offer")
    assert offer.token_hash != token and token not in offer.token_hash  # only its HMAC is stored
    view = await call(s, s.orgs.ownership.peek, token)
    assert (view.org_name, view.to_user_id, view.state) == ("Acme Oy", ids["editor"], "pending")

    with pytest.raises(Forbidden):  # the link in someone else's hands
        await call(s, s.orgs.ownership.accept, as_user(ids["admin"]), token=token)
    membership = await call(s, s.orgs.ownership.accept, as_user(ids["editor"]), token=token)
    assert membership.role == "owner"
    roles = await roles_of(s, org.id)
    assert roles[ids["owner"]] == "admin" and roles[ids["editor"]] == "owner"
    [event] = await s.db.run(lambda db: s.audit.events(db, org_id=org.id, action="ownership.transferred"))
    assert event.before["owner"] == ids["owner"] and event.after["owner"] == ids["editor"]
    for again in (lambda: call(s, s.orgs.ownership.accept, as_user(ids["editor"]), token=token),
                  lambda: call(s, s.orgs.ownership.peek, token)):
        with pytest.raises(LinkGone):
            await again()
    # The new owner may now transfer; the old one may not any more.
    with pytest.raises(Forbidden):
        await call(s, s.orgs.ownership.offer, as_user(ids["owner"]), org.id, ids["admin"])


async def test_accept_in_the_ui_by_offer_id_only_by_the_member_it_was_made_to(s):
    org, ids, _ = await team(s)
    offer = await call(s, s.orgs.ownership.offer, Actor.operator(), org.id, ids["member"])
    [mine] = await call(s, s.orgs.ownership.offers_for, as_user(ids["member"]))
    assert mine.id == offer.id and mine.org_name == "Acme Oy"
    assert await call(s, s.orgs.ownership.offers_for, as_user(ids["admin"])) == []
    for stranger in ("admin", "outsider"):
        with pytest.raises(OrgNotFound):
            await call(s, s.orgs.ownership.accept, as_user(ids[stranger]), offer_id=offer.id)
    with pytest.raises(OrgNotFound):
        await call(s, s.orgs.ownership.accept, as_user(ids["member"]), offer_id="made-up")
    with refused(OrgError, NAME_ONE):
        await call(s, s.orgs.ownership.accept, as_user(ids["member"]))
    await call(s, s.orgs.ownership.accept, as_user(ids["member"]), offer_id=offer.id)
    assert (await roles_of(s, org.id))[ids["member"]] == "owner"
    assert await owner_count(s, org.id) == 1


async def test_only_the_owner_offers_and_only_to_a_member(s):
    org, ids, _ = await team(s)
    for role in ("admin", "editor", "member"):
        with pytest.raises(Forbidden):
            await call(s, s.orgs.ownership.offer, as_user(ids[role]), org.id, ids["member"])
    with pytest.raises(OrgNotFound):
        await call(s, s.orgs.ownership.offer, as_user(ids["outsider"]), org.id, ids["member"])
    for target in (ids["outsider"], "made-up", None):
        with refused(OrgError, NOT_A_MEMBER):
            await call(s, s.orgs.ownership.offer, as_user(ids["owner"]), org.id, target)
    with pytest.raises(Conflict):
        await call(s, s.orgs.ownership.offer, as_user(ids["owner"]), org.id, ids["owner"])
    assert await call(s, s.orgs.ownership.pending, as_user(ids["owner"]), org.id) is None


async def test_a_new_offer_withdraws_the_old_and_withdraw_kills_the_link(s):
    org, ids, emails = await team(s)
    owner = as_user(ids["owner"])
    await call(s, s.orgs.ownership.offer, owner, org.id, ids["admin"])
    first = await link(s, emails["admin"], "ownership_offer")
    await call(s, s.orgs.ownership.offer, owner, org.id, ids["editor"])
    second = await link(s, emails["editor"], "ownership_offer")
    pending = await call(s, s.orgs.ownership.pending, owner, org.id)
    assert pending.to_user_id == ids["editor"]
    with pytest.raises(LinkGone):
        await call(s, s.orgs.ownership.accept, as_user(ids["admin"]), token=first)
    await call(s, s.orgs.ownership.withdraw, owner, org.id)
    with pytest.raises(LinkGone):
        await call(s, s.orgs.ownership.accept, as_user(ids["editor"]), token=second)
    with pytest.raises(Conflict):
        await call(s, s.orgs.ownership.withdraw, owner, org.id)
    with pytest.raises(Forbidden):
        await call(s, s.orgs.ownership.withdraw, as_user(ids["admin"]), org.id)
    assert (await roles_of(s, org.id))[ids["owner"]] == "owner"
    actions = [e.action for e in await s.db.run(lambda db: s.audit.events(db, org_id=org.id))]
    assert actions.count("ownership.offered") == 2 and "ownership.offer_withdrawn" in actions


async def test_an_expired_offer_or_a_departed_member_changes_nothing(s):
    org, ids, emails = await team(s)
    owner = as_user(ids["owner"])
    offer = await call(s, s.orgs.ownership.offer, owner, org.id, ids["admin"])
    token = await link(s, emails["admin"], "ownership_offer")
    await s.db.run(lambda db: db.execute(update(OwnershipOffer).where(OwnershipOffer.id == offer.id)
                                         .values(expires_at=utcnow() - timedelta(seconds=1))))
    with pytest.raises(LinkGone):
        await call(s, s.orgs.ownership.accept, as_user(ids["admin"]), token=token)
    with pytest.raises(LinkGone):
        await call(s, s.orgs.ownership.accept, as_user(ids["admin"]), offer_id=offer.id)
    # An offer to a member who then leaves is withdrawn with them.
    await call(s, s.orgs.ownership.offer, owner, org.id, ids["editor"])
    token = await link(s, emails["editor"], "ownership_offer")
    await call(s, s.orgs.members.leave, as_user(ids["editor"]), org.id)
    with pytest.raises(LinkGone):
        await call(s, s.orgs.ownership.accept, as_user(ids["editor"]), token=token)
    with pytest.raises(LinkNotFound):
        await call(s, s.orgs.ownership.accept, as_user(ids["editor"]), token="idpown_" + "x" * 43)
    roles = await roles_of(s, org.id)
    assert roles[ids["owner"]] == "owner" and await owner_count(s, org.id) == 1


async def test_ten_parallel_accepts_make_one_owner(s):
    org, ids, emails = await team(s)
    await call(s, s.orgs.ownership.offer, as_user(ids["owner"]), org.id, ids["admin"])
    token = await link(s, emails["admin"], "ownership_offer")
    results = await asyncio.gather(*(call(s, s.orgs.ownership.accept, as_user(ids["admin"]), token=token)
                                     for _ in range(10)), return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, LinkGone) for r in results if isinstance(r, Exception)), results
    assert await owner_count(s, org.id) == 1
    assert len(await s.db.run(lambda db: s.audit.events(db, org_id=org.id, action="ownership.transferred"))) == 1


async def test_exactly_one_owner_after_parallel_removals_demotions_and_transfers(s):
    """Each round: a pending offer to the admin, then ten attempts at once that remove, demote and
    transfer (whichever order the database picks, some succeed and some are refused). After every
    round there is exactly one owner, and every refusal is a clean OrgError."""
    operator = Actor.operator()
    for _ in range(3):
        org, ids, _ = await team(s)
        owner, admin = ids["owner"], ids["admin"]
        offer = await call(s, s.orgs.ownership.offer, as_user(owner), org.id, admin)
        attempts = [
            call(s, s.orgs.ownership.accept, as_user(admin), offer_id=offer.id),
            call(s, s.orgs.members.remove, operator, org.id, owner),
            call(s, s.orgs.members.change_role, operator, org.id, admin, "member"),
            call(s, s.orgs.ownership.accept, as_user(admin), offer_id=offer.id),
            call(s, s.orgs.members.leave, as_user(owner), org.id),
            call(s, s.orgs.members.remove, as_user(admin), org.id, owner),
            call(s, s.orgs.members.change_role, as_user(owner), org.id, owner, "admin"),
            call(s, s.orgs.members.change_role, operator, org.id, owner, "editor"),
            call(s, s.orgs.ownership.offer, as_user(owner), org.id, ids["editor"]),
            call(s, s.orgs.members.remove, operator, org.id, admin),
        ]
        results = await asyncio.gather(*attempts, return_exceptions=True)
        unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, OrgError)]
        assert unexpected == [], unexpected
        assert any(not isinstance(r, BaseException) for r in results)  # a real mixture: some win
        assert any(isinstance(r, OrgError) for r in results)  # and some are refused
        assert await owner_count(s, org.id) == 1, (results, await roles_of(s, org.id))


# ---- the link's page -----------------------------------------------------------------------------

async def test_the_offer_page_signs_in_then_accepts(s, rp):
    email, new_owner = await rp.user()
    _, old_owner = await person(s)
    org = await organisation(s, old_owner, name="Posti Oy")
    await call(s, s.orgs.members.add, Actor.operator(), org.id, new_owner, "admin")
    await call(s, s.orgs.ownership.offer, as_user(old_owner), org.id, new_owner)
    token = await link(s, email, "ownership_offer")
    path = f"/orgs/ownership/{token}"
    async with rp.browser() as browser:
        gate = await browser.get(path)
        assert gate.status_code == 303 and gate.headers["location"].startswith("/login?flow="), gate.text
        back = await rp.login(browser, gate.headers["location"], email)
        assert back.status_code == 303 and back.headers["location"] == path, back.text
        page = await browser.get(path)
        assert page.status_code == 200 and "Posti Oy" in page.text
        forged = await browser.post(path, data={"csrf_token": "forged"})
        assert forged.status_code == 403
        assert (await roles_of(s, org.id))[old_owner] == "owner"
        done = await browser.post(path, data={"csrf_token": form_field(page.text, "csrf_token")})
        assert done.status_code == 200 and "Posti Oy" in done.text, done.text
        assert (await roles_of(s, org.id)) == {new_owner: "owner", old_owner: "admin"}
        assert (await browser.get(path)).status_code == 410
        assert (await browser.get("/orgs/ownership/idpown_" + "y" * 43)).status_code == 404
        assert (await browser.get("/orgs/ownership/nonsense")).status_code == 404


async def test_the_offer_page_refuses_another_account(s, rp):
    email, owner = await rp.user()
    other_email, other = await rp.user()
    org = await organisation(s, owner)
    _, member = await person(s)
    await call(s, s.orgs.members.add, Actor.operator(), org.id, member, "member")
    await call(s, s.orgs.members.add, Actor.operator(), org.id, other, "member")
    await call(s, s.orgs.ownership.offer, as_user(owner), org.id, member)
    offers = await queued(s, (await s.db.run(lambda db: s.accounts.get(db, member))).email, "ownership_offer")
    token = offers[-1]["url"].rsplit("/", 1)[1]
    from tests import secrets_registry
    secrets_registry.remember(token)
    path = f"/orgs/ownership/{token}"
    async with rp.browser() as browser:
        gate = await browser.get(path)
        await rp.login(browser, gate.headers["location"], other_email)
        page = await browser.get(path)
        assert page.status_code == 200 and "another account" in page.text
        assert 'name="csrf_token"' not in page.text  # no Accept button for the wrong account
        refused = await browser.post(path, data={"csrf_token": ""})
        assert refused.status_code == 403
    assert (await roles_of(s, org.id))[owner] == "owner"
