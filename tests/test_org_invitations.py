"""Invitations by email: the rules on roles, the single-use link valid for a week, revoke and
resend, acceptance only by an account with the same VERIFIED email, parallel accepts, and the
link's page (sign in first, then accept)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from idp.accounts.models import Identifier
from idp.audit.service import Actor
from idp.db import utcnow
from idp.orgs.errors import Conflict, Forbidden, OrgError, OrgNotFound
from idp.orgs.invitations import EMAIL_MISMATCH, NOT_AN_EMAIL
from idp.orgs.links import LinkGone, LinkNotFound
from idp.orgs.models import Invitation
from tests.org_support import link, organisation, person, queued, refused, roles_of, team
from tests.rp import form_field


@pytest.fixture
def s(services):
    return services


def as_user(user_id: str) -> Actor:
    return Actor.user(user_id)


async def call(s, method, *args, **kwargs):
    return await s.db.run(lambda db: method(db, *args, **kwargs))


def address() -> str:
    import secrets
    return f"invitee-{secrets.token_hex(6)}@example.com"


async def test_an_invitation_is_emailed_and_accepted_by_the_verified_address(s):
    org, ids, _ = await team(s)
    invited = address()
    invitation = await call(s, s.orgs.invitations.invite, as_user(ids["admin"]), org.id, invited.upper(), "editor")
    assert invitation.email == invited and invitation.expires_at - utcnow() > timedelta(days=6, hours=23)
    [params] = await queued(s, invited, "org_invitation")
    assert params["org"] == "Acme Oy" and params["url"].startswith("http://idp.test/orgs/invitations/idpinv_")
    token = await link(s, invited, "org_invitation")
    view = await call(s, s.orgs.invitations.peek, token)
    assert (view.org_name, view.role, view.email, view.state) == ("Acme Oy", "editor", invited, "pending")
    [pending] = await call(s, s.orgs.invitations.list_pending, as_user(ids["owner"]), org.id)
    assert pending.id == invitation.id

    _, invitee = await person(s, email=invited)
    membership = await call(s, s.orgs.invitations.accept, as_user(invitee), token)
    assert membership.role == "editor" and (await roles_of(s, org.id))[invitee] == "editor"
    with pytest.raises(LinkGone):
        await call(s, s.orgs.invitations.accept, as_user(invitee), token)
    assert await call(s, s.orgs.invitations.list_pending, as_user(ids["owner"]), org.id) == []
    actions = [e.action for e in await s.db.run(lambda db: s.audit.events(db, org_id=org.id))]
    assert {"invitation.created", "invitation.accepted", "member.added"} <= set(actions)


async def test_a_mismatching_or_unverified_email_is_refused_and_nothing_changes(s):
    org, ids, _ = await team(s)
    invited = address()
    await call(s, s.orgs.invitations.invite, as_user(ids["owner"]), org.id, invited, "member")
    token = await link(s, invited, "org_invitation")
    _, stranger = await person(s)  # another address entirely
    _, unverified = await person(s)

    async def add_unverified(db):
        db.add(Identifier(user_id=unverified, kind="email", value=invited, verified=False))
    await s.db.run(add_unverified)
    for user_id in (stranger, unverified):
        with pytest.raises(Forbidden) as refused:
            await call(s, s.orgs.invitations.accept, as_user(user_id), token)
        assert refused.value.message == EMAIL_MISMATCH
    with pytest.raises(Forbidden):
        await call(s, s.orgs.invitations.accept, Actor.operator(), token)
    roles = await roles_of(s, org.id)
    assert stranger not in roles and unverified not in roles
    assert (await call(s, s.orgs.invitations.peek, token)).state == "pending"
    # Once the address is verified on that account, the same link works.
    await s.db.run(lambda db: db.execute(update(Identifier).where(
        Identifier.user_id == unverified, Identifier.value == invited).values(verified=True, verified_at=utcnow())))
    await call(s, s.orgs.invitations.accept, as_user(unverified), token)
    assert (await roles_of(s, org.id))[unverified] == "member"


async def test_roles_are_no_higher_than_the_inviters_and_never_owner(s):
    org, ids, _ = await team(s)
    refusals = [
        (ids["admin"], "owner", Forbidden), (ids["owner"], "owner", Forbidden),
        (ids["editor"], "member", Forbidden), (ids["member"], "member", Forbidden),
        (ids["outsider"], "member", OrgNotFound), (ids["admin"], "boss", OrgError),
    ]
    for actor, role, error in refusals:
        with pytest.raises(error):
            await call(s, s.orgs.invitations.invite, as_user(actor), org.id, address(), role)
    for bad in ("not-an-address", "a@b", "x\x00@example.com", "a" * 300 + "@example.com", None):
        with refused(OrgError, NOT_AN_EMAIL):
            await call(s, s.orgs.invitations.invite, as_user(ids["admin"]), org.id, bad, "member")
    # An admin may invite an admin; a member's verified address cannot be invited again.
    await call(s, s.orgs.invitations.invite, as_user(ids["admin"]), org.id, address(), "admin")
    member_email = (await s.db.run(lambda db: s.accounts.get(db, ids["member"]))).email
    with pytest.raises(Conflict):
        await call(s, s.orgs.invitations.invite, as_user(ids["admin"]), org.id, member_email, "editor")
    assert len(await call(s, s.orgs.invitations.list_pending, as_user(ids["admin"]), org.id)) == 1


async def test_revoke_resend_and_expiry(s):
    org, ids, _ = await team(s)
    admin = as_user(ids["admin"])
    invited = address()
    _, invitee = await person(s, email=invited)
    invitation = await call(s, s.orgs.invitations.invite, admin, org.id, invited, "member")
    old = await link(s, invited, "org_invitation")
    await call(s, s.orgs.invitations.resend, admin, org.id, invitation.id)
    new = await link(s, invited, "org_invitation")
    assert old != new
    with pytest.raises(LinkNotFound):  # the old link is dead
        await call(s, s.orgs.invitations.accept, as_user(invitee), old)
    # Expired: refused; a resend revives it with a new link and a new week.
    await s.db.run(lambda db: db.execute(update(Invitation).where(Invitation.id == invitation.id)
                                         .values(expires_at=utcnow() - timedelta(seconds=1))))
    with pytest.raises(LinkGone):
        await call(s, s.orgs.invitations.accept, as_user(invitee), new)
    [listed] = await call(s, s.orgs.invitations.list_pending, admin, org.id)
    assert listed.state == "expired"
    await call(s, s.orgs.invitations.resend, admin, org.id, invitation.id)
    fresh = await link(s, invited, "org_invitation")
    assert (await call(s, s.orgs.invitations.peek, fresh)).state == "pending"
    # Revoked: the link stops working; revoking twice is a conflict.
    await call(s, s.orgs.invitations.revoke, admin, org.id, invitation.id)
    with pytest.raises(LinkGone):
        await call(s, s.orgs.invitations.accept, as_user(invitee), fresh)
    with pytest.raises(Conflict):
        await call(s, s.orgs.invitations.revoke, admin, org.id, invitation.id)
    with pytest.raises(Conflict):
        await call(s, s.orgs.invitations.resend, admin, org.id, invitation.id)
    assert invitee not in await roles_of(s, org.id)
    # Inviting the same address again replaces a pending invitation.
    first = await call(s, s.orgs.invitations.invite, admin, org.id, invited, "member")
    await call(s, s.orgs.invitations.invite, admin, org.id, invited, "editor")
    [only] = await call(s, s.orgs.invitations.list_pending, admin, org.id)
    assert only.id != first.id and only.role == "editor"


async def test_an_existing_member_keeps_the_higher_role(s):
    org, ids, _ = await team(s)
    operator = Actor.operator()
    up, keep = address(), address()
    _, raised = await person(s, email=up)
    _, kept = await person(s, email=keep)
    await call(s, s.orgs.invitations.invite, as_user(ids["owner"]), org.id, up, "admin")
    await call(s, s.orgs.invitations.invite, as_user(ids["owner"]), org.id, keep, "member")
    await call(s, s.orgs.members.add, operator, org.id, raised, "editor")
    await call(s, s.orgs.members.add, operator, org.id, kept, "admin")
    assert (await call(s, s.orgs.invitations.accept, as_user(raised), await link(s, up, "org_invitation"))).role == "admin"
    assert (await call(s, s.orgs.invitations.accept, as_user(kept), await link(s, keep, "org_invitation"))).role == "admin"


async def test_ten_parallel_accepts_make_one_membership(s):
    org, ids, _ = await team(s)
    invited = address()
    _, invitee = await person(s, email=invited)
    await call(s, s.orgs.invitations.invite, as_user(ids["admin"]), org.id, invited, "member")
    token = await link(s, invited, "org_invitation")
    results = await asyncio.gather(*(call(s, s.orgs.invitations.accept, as_user(invitee), token)
                                     for _ in range(10)), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, LinkGone) for r in results if isinstance(r, BaseException)), results
    assert (await roles_of(s, org.id))[invitee] == "member"
    accepted = await s.db.run(lambda db: s.audit.events(db, org_id=org.id, action="invitation.accepted"))
    assert len(accepted) == 1


async def test_another_organisations_invitation_is_not_found(s):
    org, ids, _ = await team(s)
    other = await organisation(s, ids["outsider"], name="Other Oy")
    invitation = await call(s, s.orgs.invitations.invite, as_user(ids["owner"]), org.id, address(), "member")
    for method in (s.orgs.invitations.revoke, s.orgs.invitations.resend):
        with pytest.raises(OrgNotFound):  # through their own organisation
            await call(s, method, as_user(ids["outsider"]), other.id, invitation.id)
        with pytest.raises(OrgNotFound):  # or naming ours
            await call(s, method, as_user(ids["outsider"]), org.id, invitation.id)
    with pytest.raises(OrgNotFound):
        await call(s, s.orgs.invitations.list_pending, as_user(ids["outsider"]), org.id)


# ---- the link's page -----------------------------------------------------------------------------

async def test_the_invitation_page_signs_in_and_accepts(s, rp):
    email, invitee = await rp.user()
    _, owner = await person(s)
    org = await organisation(s, owner, name="Fonecta Oy")
    await call(s, s.orgs.invitations.invite, as_user(owner), org.id, email, "editor")
    token = await link(s, email, "org_invitation")
    path = f"/orgs/invitations/{token}"
    async with rp.browser() as browser:
        gate = await browser.get(path)
        assert gate.status_code == 303 and gate.headers["location"].startswith("/login?flow="), gate.text
        back = await rp.login(browser, gate.headers["location"], email)
        assert back.status_code == 303 and back.headers["location"] == path, back.text
        page = await browser.get(path)
        assert page.status_code == 200 and "Fonecta Oy" in page.text and "Editor" in page.text
        assert (await browser.post(path, data={"csrf_token": "forged"})).status_code == 403
        done = await browser.post(path, data={"csrf_token": form_field(page.text, "csrf_token")})
        assert done.status_code == 200 and "Fonecta Oy" in done.text, done.text
        assert (await roles_of(s, org.id))[invitee] == "editor"
        assert (await browser.get(path)).status_code == 410
        assert (await browser.post(path, data={"csrf_token": form_field(page.text, "csrf_token")})).status_code == 410
        for unknown in ("/orgs/invitations/idpinv_" + "z" * 43, "/orgs/invitations/%00", "/orgs/invitations/" + "a" * 5000):
            assert (await browser.get(unknown)).status_code == 404


async def test_the_invitation_page_refuses_a_mismatching_account(s, rp):
    email, _ = await rp.user()
    _, owner = await person(s)
    org = await organisation(s, owner)
    invited = address()
    await call(s, s.orgs.invitations.invite, as_user(owner), org.id, invited, "member")
    token = await link(s, invited, "org_invitation")
    path = f"/orgs/invitations/{token}"
    async with rp.browser() as browser:
        gate = await browser.get(path)
        await rp.login(browser, gate.headers["location"], email)
        page = await browser.get(path)
        assert page.status_code == 200 and invited in page.text and "/account/identifiers" in page.text
        refused = await browser.post(path, data={"csrf_token": form_field(page.text, "csrf_token")})
        assert refused.status_code == 403 and "another email address" in refused.text
    assert len(await roles_of(s, org.id)) == 1
    pending = await s.db.run(lambda db: db.execute(select(Invitation.accepted_at).where(Invitation.org_id == org.id)))
    assert pending.scalar_one() is None


# ---- invitations do not outlive their inviter's right to send them ------------------------------

async def _state(s, invitation_id: str) -> tuple:
    row = await s.db.run(lambda db: db.get(Invitation, invitation_id))
    return row.accepted_at, row.revoked_at


async def test_removing_the_inviter_revokes_their_invitations_so_they_cannot_come_back(s):
    """The attack: an admin about to be removed invites their own second address as admin, is
    removed, and accepts. The invitation dies with the membership; the others' stay."""
    org, ids, _ = await team(s)
    second, from_owner = address(), address()
    _, second_account = await person(s, email=second)  # the admin's other account
    theirs = await call(s, s.orgs.invitations.invite, as_user(ids["admin"]), org.id, second, "admin")
    owners = await call(s, s.orgs.invitations.invite, as_user(ids["owner"]), org.id, from_owner, "member")
    token = await link(s, second, "org_invitation")
    await call(s, s.orgs.members.remove, as_user(ids["owner"]), org.id, ids["admin"])
    with pytest.raises(LinkGone):
        await call(s, s.orgs.invitations.peek, token)
    with pytest.raises(LinkGone):
        await call(s, s.orgs.invitations.accept, as_user(second_account), token)
    roles = await roles_of(s, org.id)
    assert second_account not in roles and ids["admin"] not in roles
    assert (await _state(s, theirs.id))[1] is not None and await _state(s, owners.id) == (None, None)
    [event] = await s.db.run(lambda db: s.audit.events(db, org_id=org.id, action="invitation.revoked"))
    assert (event.target_id, event.before, event.after) == (
        theirs.id, {"email": second, "role": "admin"}, {"reason": "inviter_removed"})
    # Nobody can bring it back with a resend.
    with pytest.raises(Conflict):
        await call(s, s.orgs.invitations.resend, as_user(ids["owner"]), org.id, theirs.id)


async def test_leaving_revokes_the_invitations_one_sent(s):
    org, ids, _ = await team(s)
    invited = address()
    invitation = await call(s, s.orgs.invitations.invite, as_user(ids["admin"]), org.id, invited, "editor")
    await call(s, s.orgs.members.leave, as_user(ids["admin"]), org.id)
    assert (await _state(s, invitation.id))[1] is not None
    [event] = await s.db.run(lambda db: s.audit.events(db, org_id=org.id, action="invitation.revoked"))
    assert event.after == {"reason": "inviter_left"} and event.actor_id == ids["admin"]


async def test_a_demotion_revokes_the_invitations_the_new_role_may_not_give(s):
    org, ids, _ = await team(s)
    _, other_admin = await person(s)
    await call(s, s.orgs.members.add, Actor.operator(), org.id, other_admin, "admin")
    sent = [await call(s, s.orgs.invitations.invite, as_user(ids["admin"]), org.id, address(), role)
            for role in ("admin", "editor", "member")]
    kept = await call(s, s.orgs.invitations.invite, as_user(other_admin), org.id, address(), "admin")
    await call(s, s.orgs.members.change_role, as_user(ids["owner"]), org.id, ids["admin"], "editor")
    # An editor may give no role at all: every invitation they sent is dead; the other admin's lives.
    for invitation in sent:
        assert (await _state(s, invitation.id))[1] is not None
    assert await _state(s, kept.id) == (None, None)
    events = await s.db.run(lambda db: s.audit.events(db, org_id=org.id, action="invitation.revoked"))
    assert sorted(e.target_id for e in events) == sorted(i.id for i in sent)
    assert {e.after["reason"] for e in events} == {"inviter_demoted"}
    # A promotion revokes nothing.
    await call(s, s.orgs.members.change_role, as_user(ids["owner"]), org.id, other_admin, "admin")
    await call(s, s.orgs.members.change_role, as_user(ids["owner"]), org.id, ids["member"], "editor")
    assert await _state(s, kept.id) == (None, None)


async def test_accepting_checks_the_inviter_again_and_changes_nothing_when_they_may_not(s):
    """However the inviter lost the right (a path that skipped the revocation, a direct database
    change), the link is dead at acceptance with a clear message."""
    from idp.orgs.invitations import INVITER_GONE
    from idp.orgs.models import Membership
    org, ids, _ = await team(s)
    up_to_admin, gone = address(), address()
    _, first = await person(s, email=up_to_admin)
    _, second = await person(s, email=gone)
    await call(s, s.orgs.invitations.invite, as_user(ids["admin"]), org.id, up_to_admin, "admin")
    await call(s, s.orgs.invitations.invite, as_user(ids["owner"]), org.id, gone, "editor")
    demoted_token, gone_token = await link(s, up_to_admin, "org_invitation"), await link(s, gone, "org_invitation")
    # Behind the services' back: the admin is a member now, the owner's membership gone.
    await s.db.run(lambda db: db.execute(update(Membership).where(
        Membership.org_id == org.id, Membership.user_id == ids["admin"]).values(role="member")))
    await s.db.run(lambda db: db.execute(update(Membership).where(
        Membership.org_id == org.id, Membership.user_id == ids["owner"]).values(role="editor")))
    before = await roles_of(s, org.id)
    for token, account in ((demoted_token, first), (gone_token, second)):
        with pytest.raises(LinkGone) as refused:
            await call(s, s.orgs.invitations.peek, token)
        assert refused.value.message == INVITER_GONE
        with pytest.raises(LinkGone) as refused:
            await call(s, s.orgs.invitations.accept, as_user(account), token)
        assert refused.value.message == INVITER_GONE
    assert await roles_of(s, org.id) == before
    pending = await s.db.run(lambda db: db.execute(select(Invitation.accepted_at, Invitation.revoked_at).where(
        Invitation.org_id == org.id)))
    assert set(pending.all()) == {(None, None)}


async def test_an_operators_invitation_stands_but_one_whose_inviter_account_vanished_does_not(s):
    org, ids, _ = await team(s)
    by_operator, orphan = address(), address()
    _, first = await person(s, email=by_operator)
    _, second = await person(s, email=orphan)
    await call(s, s.orgs.invitations.invite, Actor.operator(), org.id, by_operator, "admin")
    invitation = await call(s, s.orgs.invitations.invite, as_user(ids["admin"]), org.id, orphan, "member")
    # The inviter's account deleted: the foreign key sets invited_by to NULL.
    await s.db.run(lambda db: db.execute(update(Invitation).where(Invitation.id == invitation.id)
                                         .values(invited_by=None)))
    with pytest.raises(LinkGone):
        await call(s, s.orgs.invitations.accept, as_user(second), await link(s, orphan, "org_invitation"))
    membership = await call(s, s.orgs.invitations.accept, as_user(first), await link(s, by_operator, "org_invitation"))
    assert membership.role == "admin"
